"""``scrapy crawl packages``: download the model packages of models already stored.

The spider only parses its arguments, selects the models and hands each to its hub's flow
(:mod:`ptmspiders.packages.crawler` and the ``crawl_*`` mixins beside it). Each package ends
as one ``packages`` document (:class:`ptmspiders.items.PackageItem`). See docs/packages.md.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import AfterValidator, BeforeValidator, Field, field_serializer
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.settings import BaseSettings

from ptmspiders.args import Count, Names, SpiderParams, Text, blank_is, one_of
from ptmspiders.config import ptm_settings
from ptmspiders.frontier import SCHEDULER, WORK, FrontierWorker
from ptmspiders.hubs import HUBS
from ptmspiders.items import ModelItem, field_names
from ptmspiders.middlewares.origin import FLOW_META
from ptmspiders.packages import archive as archives
from ptmspiders.packages.blobs import check_location
from ptmspiders.packages.crawl_github import GithubPackages
from ptmspiders.packages.crawl_huggingface import HuggingFacePackages
from ptmspiders.packages.crawl_kaggle import KagglePackages
from ptmspiders.packages.crawl_onnx import OnnxPackages
from ptmspiders.packages.crawl_tfhub import TfhubPackages
from ptmspiders.packages.crawler import FILE, FLOW_URL, JOB, Job, PackageCrawler, guarded
from ptmspiders.packages.selection import (
    MODEL_FIELDS,
    REVISION_MODES,
    WEIGHT_MODES,
    FileFilter,
    Selection,
    parse_size,
)
from ptmspiders.query import check_filter, check_json_depth, parse_sort
from ptmspiders.spiders.base import PtmSpider
from ptmspiders.stores import Store, crawler_store

__all__ = ["FILE", "JOB", "Job", "PackageCrawler", "PackagesSpider", "guarded"]

logger = logging.getLogger(__name__)

ALL_HUBS = tuple(HUBS)
# Hubs whose packages run as one flow (a callback making its own hub calls): the method.
FLOWS = {"onnx_zoo": "onnx_package", "kaggle": "kaggle_package", "tfhub": "tfhub_package",
         **dict.fromkeys(archives.GITHUB_HUBS, "github_package")}


def _hubs(hubs: list[str]) -> list[str]:
    unknown = [h for h in hubs if h not in ALL_HUBS]
    if unknown:
        raise ValueError(f"unknown hub {', '.join(unknown)}; expected {', '.join(ALL_HUBS)}")
    return hubs


def _json_object(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if not value.strip():
        return {}
    check_json_depth(value)  # before json.loads recurses
    try:
        where = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(where, dict):
        raise ValueError("a JSON object, e.g. '{\"library\": \"onnx\"}'")
    # An operator the stores refuse (or NaN, a 70-bit integer) is an argument error now, not
    # a traceback when the crawl first queries its models.
    return check_filter(where)


MODEL_FIELDS_TOP = frozenset(field_names(ModelItem))


def _sort(value: str | None) -> str | None:
    """Sort keys over models: a typo (``-downlods``) sorted by nothing, and ``limit`` then
    took arbitrary models, so a key's first part must be a field of a model document."""
    for key, _ in parse_sort(value):  # a QueryError (a ValueError) names what is wrong
        top = key.split(".", 1)[0]
        if top not in MODEL_FIELDS_TOP:
            close = difflib.get_close_matches(top, sorted(MODEL_FIELDS_TOP), n=1)
            raise ValueError(f"models have no field {top!r}"
                             + (f" (did you mean {close[0]}?)" if close else ""))
    return value


def _size(value: Any) -> int | None:
    try:
        return parse_size(value.strip() if isinstance(value, str) else value, "size")
    except (ValueError, OverflowError):  # OverflowError: more digits than a float holds
        raise ValueError("a size such as 500G, 20M or 1024") from None


Size = Annotated[Count | None, BeforeValidator(_size)]


class PackagesParams(SpiderParams):
    """``packages`` arguments: which stored models, which of their files, what budget."""

    # Packages of models already stored, never a hub's listing: no removals are inferred.
    lists_whole_hub: ClassVar[bool] = False

    hub: Annotated[Names, AfterValidator(_hubs)] = Field(
        default_factory=list, description="comma-separated hubs (default: every hub)")
    filter: Annotated[dict[str, Any], BeforeValidator(_json_object)] = Field(
        default_factory=dict, description="a MongoDB filter over models, as ptm query takes")
    sort: Annotated[Text, AfterValidator(_sort)] = Field(
        None, description="sort keys over models, e.g. -downloads")
    limit: Annotated[Count | None, blank_is(None)] = Field(
        None, description="at most this many models")
    top: Annotated[Annotated[float, Field(gt=0, le=1)] | None, blank_is(None)] = Field(
        None, description="a share in (0, 1]: the top of each hub by downloads")
    include: Names = Field(default_factory=list,
                           description="comma-separated globs of package paths to fetch")
    exclude: Names = Field(default_factory=list,
                           description="comma-separated globs of package paths to skip")
    weights: Annotated[str, blank_is("all"), AfterValidator(one_of(WEIGHT_MODES))] = Field(
        "all", description="all, safe (no pickle-based or HDF5 weights) or none")
    max_bytes: Size = Field(None, description="budget of new bytes for this run (500G, 20M)")
    max_file_bytes: Size = Field(None, description="skip single files above this size")
    revision: Annotated[str, blank_is("pinned"), AfterValidator(one_of(REVISION_MODES))] = Field(
        "pinned", description="pinned (the stored commit or ref) or latest")
    dest: Annotated[Text, AfterValidator(check_location)] = Field(
        None, description="where packages go: a folder or s3://bucket/prefix "
                          "(default: PTM_PACKAGES_DIR)")

    @field_serializer("filter")
    def _filter_as_json(self, where: dict[str, Any]) -> str:
        """Recorded as given: a store may refuse field names such as ``$gt``."""
        return json.dumps(where)


class PackagesSpider(HuggingFacePackages, OnnxPackages, GithubPackages, TfhubPackages,
                     KagglePackages, PtmSpider[PackagesParams]):
    name = "packages"
    hub = "packages"  # reads every hub: its crawl records go under its own name
    # Scrapy starts CONCURRENT_ITEMS tasks for every callback's output (100 by default);
    # a callback here yields one package record or one page's requests, and with thousands
    # of small files those idle tasks took a third of the crawl's thread.
    custom_settings = {
        "CONCURRENT_ITEMS": 4,
        # data: URIs carry the packages that run as one flow (PackageCrawler.flow_request);
        # the project switches that handler off for the other spiders.
        "DOWNLOAD_HANDLERS": {"file": None, "s3": None, "ftp": None},
        # With PTM_FRONTIER: scrapy-redis's scheduler for the work items (ptmspiders/frontier.py).
        "SCHEDULER": SCHEDULER,
        # Each resolve call is one request through every middleware: those that do nothing
        # for hub API calls (no cookies, HTML refreshes, crawl depth) are left out (the referer
        # middleware stays: without it Scrapy's redirect middleware warns on every crawl).
        # The throttle, retries, credentials, user agent, compression, redirect guard and
        # downloader stats stay (docs/packages.md).
        "COOKIES_ENABLED": False,
        "METAREFRESH_ENABLED": False,
    }
    # Spider middlewares with no switch of their own, off for this spider only.
    spider_middlewares_off = ("scrapy.spidermiddlewares.depth.DepthMiddleware",
                              "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware")
    frontier: FrontierWorker | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        params = self.args
        self.selection = Selection(hubs=params.hub or list(ALL_HUBS), filter=params.filter,
                                   sort=params.sort, limit=params.limit, top=params.top)
        self.max_bytes = params.max_bytes
        self.files = FileFilter(include=tuple(params.include), exclude=tuple(params.exclude),
                                weights=params.weights, max_file_bytes=params.max_file_bytes)
        self.revision_mode = params.revision
        self.dest_arg = params.dest

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        middlewares = settings.getdict("SPIDER_MIDDLEWARES")
        middlewares.update(dict.fromkeys(cls.spider_middlewares_off))
        settings.set("SPIDER_MIDDLEWARES", middlewares, "spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> PackagesSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        assert isinstance(spider, PackagesSpider)
        spider.setup(crawler)
        # PTM_FRONTIER: work items from Redis, shared by every worker run with these arguments
        # (where the packages go may be mounted elsewhere on each machine: not part of them).
        spider.frontier = FrontierWorker.from_settings(
            crawler, spider.name, spider.args.model_dump(mode="json", exclude={"dest"}),
            limit=ptm_settings(crawler).packages_concurrent_packages)
        return spider

    # -- selection ---------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[Any]:
        store = crawler_store(self.crawler)
        if self.frontier is not None:
            if self.frontier.adding:
                self.seed(store, self.frontier)
            return
        async for model in self.stored_models(store):  # each with a package slot held
            for out in await self.begin(model):  # (released in finish())
                yield out

    async def stored_models(self, store: Store) -> AsyncIterator[dict[str, Any]]:
        """The selected models, from the store, a batch at a time."""
        ids = self.selection.ids(store)
        self.progress.selected = len(ids)
        logger.info("Packages: %d models selected from %s in %s", len(ids),
                    ", ".join(self.selection.hubs), self.blobs.location)
        for first in range(0, len(ids), 100):
            batch = ids[first:first + 100]
            docs = store.get_many("models", batch, fields=MODEL_FIELDS)
            for model in (docs[i] for i in batch if i in docs):
                await self.package_slots.acquire()
                yield model

    # -- the shared frontier (docs/scaling-out.md) -------------------------------------------
    def seed(self, store: Store, frontier: FrontierWorker) -> None:
        """The first worker: one work item per selected model whose package is not complete,
        into the frontier's queue, all at once (every worker takes from it as it has room)."""
        ids = not_complete(store, self.selection.ids(store), self.revision_mode)
        logger.info("Packages: %d models selected from %s whose package is not complete",
                    len(ids), ", ".join(self.selection.hubs))
        scheduler = frontier.scheduler
        assert scheduler is not None  # PTM_FRONTIER set: the crawl runs FrontierScheduler
        seeded = 0
        for n, _id in enumerate(ids):
            if frontier.failed:  # Redis went away: the crawl ends incomplete, a rerun seeds
                break
            if n % 1000 == 0:
                frontier.beat()  # a long seeding keeps this worker alive to the others
            seeded += scheduler.enqueue_request(self.work_request(_id))
        frontier.count("seeded", seeded)
        frontier.adding_done()

    def work_request(self, _id: str) -> Request:
        """The work item of model ``_id``: a ``data:`` URI answered in-process, whose callback
        starts the package; scrapy-redis queues it and filters it by its URL."""
        return Request(f"{FLOW_URL}{quote(_id, safe='')}", callback=self.take_work,
                       meta={WORK: _id, FLOW_META: True})

    async def take_work(self, response: Response) -> AsyncIterator[Any]:
        """A work item this worker took from the frontier: its package, unless the store has
        it complete already (a worker stopped before the frontier heard it was done)."""
        _id = str(response.meta[WORK])
        await self.package_slots.acquire()
        store = crawler_store(self.crawler)
        model = store.get_many("models", [_id], fields=MODEL_FIELDS).get(_id)
        if model is None or not not_complete(store, [_id], self.revision_mode):
            self.count("frontier/already_complete" if model else "frontier/not_found")
            self.slot_free()
            if self.frontier is not None:
                self.frontier.done(_id)
            return
        self.progress.selected += 1
        for out in await self.begin(model):
            yield out

    async def begin(self, model: dict[str, Any]) -> list[Any]:
        """Start one package: its first requests (to yield), or its record when it has none."""
        job = Job(model=model, hub=str(model.get("hub")))
        self.started += 1
        if job.hub == "huggingface":
            return list(self.hf_start(job))
        if job.hub in FLOWS:
            return [self.flow_request(job, FLOWS[job.hub])]
        self.count(f"packages/unsupported_hub/{job.hub}")
        job.reason = "hub_not_supported"
        return [await self.finish(job)]

def not_complete(store: Store, ids: list[str], revision_mode: str) -> list[str]:
    """``ids`` without the models whose package is stored complete (at the model's pinned
    commit, with ``revision=pinned``): the work a frontier is seeded with."""
    out: list[str] = []
    for first in range(0, len(ids), 500):
        batch = ids[first:first + 500]
        done = store.get_many("packages", batch, fields=["_id", "complete", "revision"])
        pins = store.get_many("models", batch, fields=["_id", "latest_commit_sha"]) \
            if revision_mode == "pinned" else {}
        for i in batch:
            package = done.get(i)
            pin = pins.get(i, {}).get("latest_commit_sha")
            if package is None or not package.get("complete") or (
                    isinstance(pin, str) and pin and package.get("revision") != pin):
                out.append(i)
    return out
