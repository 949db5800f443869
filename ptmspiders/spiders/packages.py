"""``scrapy crawl packages``: download the model packages of models already stored.

The spider only parses its arguments, selects the models and hands each to its hub's flow
(:mod:`ptmspiders.packages.crawler` and the ``crawl_*`` mixins beside it). Each package ends
as one ``packages`` document (:class:`ptmspiders.items.PackageItem`). See docs/packages.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from scrapy.crawler import Crawler

from ptmspiders.args import ArgumentError, choice_arg, int_arg, list_arg
from ptmspiders.packages import archive as archives
from ptmspiders.packages.crawl_github import GithubPackages
from ptmspiders.packages.crawl_huggingface import HuggingFacePackages
from ptmspiders.packages.crawl_kaggle import KagglePackages
from ptmspiders.packages.crawl_onnx import OnnxPackages
from ptmspiders.packages.crawler import FILE, JOB, Job, PackageCrawler, guarded
from ptmspiders.packages.selection import (
    MODEL_FIELDS,
    REVISION_MODES,
    WEIGHT_MODES,
    FileFilter,
    Selection,
    check_top,
    parse_size,
)
from ptmspiders.stores import crawler_store

__all__ = ["FILE", "JOB", "Job", "PackageCrawler", "PackagesSpider", "guarded"]

logger = logging.getLogger(__name__)

ALL_HUBS = ("huggingface", "pytorch_hub", "onnx_zoo", "tfhub", "kaggle", "modelzoo", "modelhub")


class PackagesSpider(HuggingFacePackages, OnnxPackages, GithubPackages, KagglePackages):
    name = "packages"
    hub = "packages"
    # Only some models of some hubs: history never infers removals from this crawl.
    restricted = True
    # Scrapy starts CONCURRENT_ITEMS tasks for every callback's output (100 by default);
    # a callback here yields one package record or one page's requests, and with thousands
    # of small files those idle tasks took a third of the crawl's thread.
    custom_settings = {"CONCURRENT_ITEMS": 4}

    def __init__(self, *args: Any, hub: str | None = None, filter: str | None = None,
                 sort: str | None = None, limit: Any = None, top: str | None = None,
                 include: str | None = None, exclude: str | None = None,
                 weights: str | None = None, max_bytes: str | None = None,
                 max_file_bytes: str | None = None, revision: str | None = None,
                 dest: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hubs = list_arg(hub) or list(ALL_HUBS)
        unknown = [h for h in hubs if h not in ALL_HUBS]
        if unknown:
            raise ArgumentError(f"-a hub={hub!r}: unknown hub {', '.join(unknown)}; expected "
                                f"{', '.join(ALL_HUBS)}")
        where: dict[str, Any] = {}
        if filter:
            try:
                where = json.loads(filter)
            except json.JSONDecodeError as exc:
                raise ArgumentError(f"-a filter: not JSON ({exc})") from None
            if not isinstance(where, dict):
                raise ArgumentError("-a filter: a JSON object, e.g. '{\"library\": \"onnx\"}'")
        try:
            self.selection = Selection(hubs=hubs, filter=where, sort=sort,
                                       limit=int_arg("limit", limit), top=check_top(top))
            self.max_bytes = parse_size(max_bytes, "max_bytes")
            self.files = FileFilter(
                include=tuple(list_arg(include)), exclude=tuple(list_arg(exclude)),
                weights=choice_arg("weights", weights, WEIGHT_MODES) or "all",
                max_file_bytes=parse_size(max_file_bytes, "max_file_bytes"))
        except ValueError as exc:
            raise ArgumentError(f"-a {exc}") from None
        self.revision_mode = choice_arg("revision", revision, REVISION_MODES) or "pinned"
        self.dest_arg = dest
        self.args = {k: v for k, v in dict(
            hub=hub, filter=filter, sort=sort, limit=limit, top=top, include=include,
            exclude=exclude, weights=weights, max_bytes=max_bytes,
            max_file_bytes=max_file_bytes, revision=revision, dest=dest).items() if v}

    def crawl_arguments(self) -> dict[str, Any]:
        return dict(self.args)

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> PackagesSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        assert isinstance(spider, PackagesSpider)
        spider.setup(crawler)
        return spider

    # -- selection ---------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[Any]:
        store = crawler_store(self.crawler)
        ids = self.selection.ids(store)
        self.progress.selected = len(ids)
        logger.info("Packages: %d models selected from %s in %s", len(ids),
                    ", ".join(self.selection.hubs), self.dest)
        for first in range(0, len(ids), 100):
            batch = ids[first:first + 100]
            docs = store.get_many("models", batch, fields=MODEL_FIELDS)
            for model in (docs[i] for i in batch if i in docs):
                # At most PTM_PACKAGES_CONCURRENT_PACKAGES in progress (released in finish()).
                await self.package_slots.acquire()
                job = Job(model=model, hub=str(model.get("hub")))
                if job.hub == "huggingface":
                    for request in self.hf_start(job):
                        yield request
                elif job.hub == "onnx_zoo":
                    self.spawn(job, self.onnx_package)
                elif job.hub in archives.GITHUB_HUBS:
                    self.spawn(job, self.github_package)
                elif job.hub == "kaggle":
                    self.spawn(job, self.kaggle_package)
                else:
                    self.count(f"packages/unsupported_hub/{job.hub}")
                    job.reason = "hub_not_supported"
                    yield await self.finish(job)
                for item in self.finished_records():
                    yield item
        # The records of packages that run as tasks come out here, as they finish.
        async for item in self.remaining_records():
            yield item
