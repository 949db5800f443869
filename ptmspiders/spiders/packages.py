"""``scrapy crawl packages``: download the model packages of models already stored.

Scrapy makes the API calls (Hugging Face tree listings, resolve calls, GitHub trees): they go
through the throttle (the ``resolvers`` bucket for resolve calls), retries, auth and stats.
File bytes take a streaming path (:mod:`ptmspiders.packages.fetch`) in worker threads, at most
``PTM_PACKAGES_CONCURRENCY`` at a time, so neither memory nor the reactor depends on file size.
Each package ends as one ``packages`` document (:class:`ptmspiders.items.PackageItem`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
import tarfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.http import Response
from twisted.internet import task

from ptmspiders import github
from ptmspiders.args import ArgumentError, choice_arg, int_arg, list_arg
from ptmspiders.github import RepoRef, TreeEntry
from ptmspiders.items import PackageItem
from ptmspiders.middlewares.auth import credentials_from, origin
from ptmspiders.packages import archive as archives
from ptmspiders.packages import hf, onnx
from ptmspiders.packages.blobs import BlobStore, git_blob_sha1
from ptmspiders.packages.fetch import REDIRECTS, Expect, Fetched, Streamer
from ptmspiders.packages.layout import UnsafePath, link_file, package_dir
from ptmspiders.packages.paths import safe_relpath, safe_segment
from ptmspiders.packages.plan import FileSpec
from ptmspiders.packages.progress import Progress
from ptmspiders.packages.scanning import load_scanner, summary
from ptmspiders.packages.selection import (
    MODEL_FIELDS,
    REVISION_MODES,
    WEIGHT_MODES,
    FileFilter,
    Selection,
    check_top,
    parse_size,
)
from ptmspiders.spiders.base import PtmSpider, now_iso
from ptmspiders.stores import crawler_store

logger = logging.getLogger(__name__)

ALL_HUBS = ("huggingface", "pytorch_hub", "onnx_zoo", "tfhub", "kaggle", "modelzoo", "modelhub")
JOB = "ptm_package"
FILE = "ptm_file"


Callback = Callable[["PackagesSpider", Response], AsyncIterator[Any]]


def guarded(callback: Callback) -> Callback:
    """A callback whose unexpected exception fails its file (or its package) on the record
    instead of losing it: a lost package would hold its slot forever and stall the run."""
    @functools.wraps(callback)
    async def wrapper(spider: PackagesSpider, response: Response) -> AsyncIterator[Any]:
        try:
            async for out in callback(spider, response):
                yield out
        except Exception as exc:
            job: Job = response.meta[JOB]
            reason = f"error: {type(exc).__name__}"
            logger.exception("Package %s: %s failed", job.id, callback.__name__)
            spider.count("packages/errors")
            i = response.meta.get(FILE)
            if job.finished:
                return
            if i is not None and job.records and job.records[i] is None:
                async for out in spider.file_done(job, i, job.specs[i].record(
                        "failed", reason=reason)):
                    yield out
            elif i is None:
                job.reason = reason
                yield await spider.finish(job)
    return wrapper


@dataclass
class ArchiveResult:
    reason: str | None = None  # why the archive could not be used
    verified: bool | None = True
    size: int = 0
    commit: str | None = None
    members: list[archives.Member] = field(default_factory=list)


@dataclass
class Job:
    """One package being fetched."""

    model: dict[str, Any]
    hub: str
    revision: str | None = None
    source_url: str | None = None
    root: Path | None = None
    specs: list[FileSpec] = field(default_factory=list)
    records: list[dict[str, Any] | None] = field(default_factory=list)
    pending: int = 0
    listed: int = 0  # specs from the hub's listing; archive extras come after
    new_bytes: int = 0
    reason: str | None = None
    finished: bool = False

    @property
    def id(self) -> str:
        return str(self.model["_id"])

    def __reduce__(self) -> Any:
        # Requests carrying a job stay in Scrapy's memory queue, never in JOBDIR: a resumed
        # run plans every package again, and the blob store makes that cost no transfer.
        raise TypeError("a package job is not persisted")


class PackagesSpider(PtmSpider):
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
        self.progress = Progress()
        self.planned = 0  # new bytes reserved against max_bytes
        self.stop_event = threading.Event()
        self.inflight: dict[str, asyncio.Lock] = {}

    def crawl_arguments(self) -> dict[str, Any]:
        return dict(self.args)

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> PackagesSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        assert isinstance(spider, PackagesSpider)
        spider.setup(crawler)
        return spider

    def setup(self, crawler: Crawler) -> None:
        s = crawler.settings
        self.dest = Path(self.dest_arg or s.get("PTM_PACKAGES_DIR") or "data/packages")
        self.blobs = BlobStore(self.dest)
        self.endpoint = str(s.get("HF_ENDPOINT")).rstrip("/")
        self.hub_origin = origin(self.endpoint)
        self.media_url = str(s.get("GITHUB_MEDIA_URL")).rstrip("/")
        self.github_api = str(s.get("GITHUB_API_URL")).rstrip("/")
        self.raw_url = str(s.get("GITHUB_RAW_URL")).rstrip("/")
        self.kaggle_api = str(s.get("KAGGLE_API_URL")).rstrip("/")
        self.trees: dict[tuple[str, str], asyncio.Future[dict[str, TreeEntry] | None]] = {}
        concurrency = s.getint("PTM_PACKAGES_CONCURRENCY", 8)
        packages_at_once = s.getint("PTM_PACKAGES_CONCURRENT_PACKAGES", 16)
        self.inline_max = s.getint("PTM_PACKAGES_INLINE_MAX_BYTES", 16 << 20)
        self.interval = s.getfloat("PTM_PACKAGES_PROGRESS_INTERVAL", 60.0)
        if concurrency < 1 or packages_at_once < 1 or self.inline_max < 1:
            raise ArgumentError("PTM_PACKAGES_CONCURRENCY, PTM_PACKAGES_CONCURRENT_PACKAGES "
                                "and PTM_PACKAGES_INLINE_MAX_BYTES must be >= 1")
        self.file_slots = asyncio.Semaphore(concurrency)
        self.package_slots = asyncio.Semaphore(packages_at_once)
        urls = {k: str(s.get(k)) for k in ("HF_ENDPOINT", "GITHUB_API_URL", "KAGGLE_API_URL")}
        creds = credentials_from(urls, os.environ) if s.getbool("PTM_AUTH_ENABLED", True) else []
        self.streamer = Streamer(
            self.blobs, user_agent=str(s.get("USER_AGENT")),
            timeout=s.getfloat("DOWNLOAD_TIMEOUT", 60.0),
            credentials={c.origin: c.header for c in creds},
            retry_wait=s.getfloat("PTM_PACKAGES_RETRY_WAIT", 1.0),
            progress=self.progress.add_bytes, stop=self.stop_event)
        self.scanner = load_scanner()
        self.ticker: task.LoopingCall | None = None
        crawler.signals.connect(self.opened, signal=signals.spider_opened)
        crawler.signals.connect(self.closed_, signal=signals.spider_closed)

    # -- progress ----------------------------------------------------------------------------
    def opened(self) -> None:
        if self.interval > 0:
            self.ticker = task.LoopingCall(self.log_progress)
            self.ticker.start(self.interval, now=False)

    def log_progress(self) -> None:
        logger.info("%s", self.progress.line())
        self.record_progress()

    def record_progress(self) -> None:
        if self.crawler.stats is not None:
            for key, value in self.progress.figures().items():
                if value is not None:
                    self.crawler.stats.set_value(f"ptm/packages/progress/{key}", value)

    def closed_(self, reason: str) -> None:
        self.stop_event.set()  # worker threads leave their partial files for the next run
        if self.ticker is not None and self.ticker.running:
            self.ticker.stop()
        logger.info("%s", self.progress.line())
        self.record_progress()

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
                    yield self.onnx_start(job)
                elif job.hub in archives.GITHUB_HUBS:
                    yield self.github_start(job)
                elif job.hub == "kaggle":
                    yield self.kaggle_start(job)
                else:
                    self.count(f"packages/unsupported_hub/{job.hub}")
                    job.reason = "hub_not_supported"
                    yield await self.finish(job)

    def slot_free(self) -> None:
        self.package_slots.release()

    # -- Hugging Face ------------------------------------------------------------------------
    def hf_start(self, job: Job) -> Iterator[Request]:
        repo_id = str(job.model.get("hub_id"))
        pinned = job.model.get("latest_commit_sha")
        if self.revision_mode == "pinned" and isinstance(pinned, str) and pinned:
            yield self.tree_request(job, pinned)
            return
        if self.revision_mode == "pinned":
            self.count("packages/unpinned")  # no stored commit: this run pins the latest
        url = f"{self.endpoint}/api/models/{hf.quote_id(repo_id)}/revision/main?expand=sha"
        yield self.json_request(url, expect="object", callback=self.parse_revision,
                                errback=self.job_failed, meta={JOB: job}, dont_filter=True)

    @guarded
    async def parse_revision(self, response: Response) -> AsyncIterator[Any]:
        job: Job = response.meta[JOB]
        data = self.decode(response, dict, what="model revision")
        sha = data.get("sha") if isinstance(data, dict) else None
        if not isinstance(sha, str) or not sha:
            job.reason = "no_revision"
            yield await self.finish(job)
            return
        yield self.tree_request(job, sha)

    def tree_request(self, job: Job, revision: str) -> Request:
        job.revision = revision
        repo_id = str(job.model.get("hub_id"))
        job.source_url = f"{self.endpoint}/{repo_id}/tree/{revision}"
        return self.json_request(hf.tree_url(self.endpoint, repo_id, revision), expect="list",
                                 callback=self.parse_tree, errback=self.job_failed,
                                 meta={JOB: job}, dont_filter=True)

    @guarded
    async def parse_tree(self, response: Response) -> AsyncIterator[Any]:
        job: Job = response.meta[JOB]
        entries = self.decode(response, list, what="file tree")
        if entries is None:
            job.reason = "bad_tree"
            yield await self.finish(job)
            return
        specs, bad = hf.tree_files(entries)
        if bad:
            self.count("packages/bad_tree_entries", bad)
        job.specs += specs
        next_url = hf.next_link(response)
        if next_url and origin(next_url) != self.hub_origin:
            # A next page on another host: not followed (it would get the listing, and the
            # package would be planned from a list that host made up).
            self.count("packages/foreign_link")
            job.reason = "foreign_next_link"
            yield await self.finish(job)
            return
        if next_url:
            yield response.follow(next_url, callback=self.parse_tree, errback=self.job_failed,
                                  meta={JOB: job, "ptm_expect": "list"}, dont_filter=True)
            return
        repo_id = str(job.model.get("hub_id"))
        for spec in job.specs:
            spec.url = hf.resolve_url(self.endpoint, repo_id, str(job.revision), spec.path)
        owner, name = hf.split_repo(repo_id)
        fetch = self.plan(job, owner, name)
        if not fetch:
            yield await self.finish(job)
            return
        for i in fetch:
            yield self.resolve_request(job, i)

    def resolve_request(self, job: Job, i: int, attempt: int = 1) -> Request:
        """The resolve call of file ``i``: a GET for small git files (the body is the file,
        verified in memory), a HEAD for LFS files (the answer is the CDN redirect; the bytes
        are then streamed from there, without the hub's credential)."""
        spec = job.specs[i]
        inline = not spec.lfs and spec.size is not None and spec.size <= self.inline_max
        assert spec.url is not None
        return Request(spec.url, method="GET" if inline else "HEAD",
                       callback=self.parse_resolve, errback=self.resolve_failed,
                       dont_filter=True, priority=1,
                       meta={JOB: job, FILE: i, "ptm_attempt": attempt, "dont_redirect": True,
                             "handle_httpstatus_all": True,
                             "download_maxsize": self.inline_max + 1})

    @guarded
    async def parse_resolve(self, response: Response) -> AsyncIterator[Any]:
        job: Job = response.meta[JOB]
        i: int = response.meta[FILE]
        spec = job.specs[i]
        status = response.status
        self.count("packages/resolve_calls")
        location_header = response.headers.get("Location")
        if status in REDIRECTS and location_header:
            location = urljoin(response.url, location_header.decode("latin-1"))
            linked = (response.headers.get("X-Linked-Etag") or b"").decode("latin-1")
            linked = linked.strip('"').removeprefix("W/").strip('"').lower()
            if spec.sha256 is None and len(linked) == 64:
                spec.sha256 = linked  # an LFS file the tree gave without its oid
            elif spec.sha256 and len(linked) == 64 and linked != spec.sha256:
                self.count("packages/linked_etag_mismatch")
            fetched = await self.stream(location, spec, self.hub_origin)
            if (fetched.status == "failed" and fetched.reason in ("http_403", "http_410")
                    and response.meta["ptm_attempt"] == 1):
                # A signed CDN URL that expired while the file waited for a slot: ask again.
                self.count("packages/resolve_again")
                yield self.resolve_request(job, i, attempt=2)
                return
            async for item in self.file_fetched(job, i, fetched):
                yield item
        elif status == 200 and response.request is not None \
                and response.request.method == "GET":
            async for item in self.inline_file(job, i, response):
                yield item
        elif status == 200:
            # Served by the hub itself (no CDN): stream it from there, credential attached.
            assert spec.url is not None
            fetched = await self.stream(spec.url, spec, self.hub_origin)
            async for item in self.file_fetched(job, i, fetched):
                yield item
        else:
            async for item in self.file_done(job, i, spec.record("failed",
                                                                reason=f"http_{status}")):
                yield item

    async def inline_file(self, job: Job, i: int, response: Response) -> AsyncIterator[Any]:
        spec = job.specs[i]
        body = response.body
        sha = hashlib.sha256(body).hexdigest()
        if not self.matches(spec, body, sha):
            if response.meta["ptm_attempt"] == 1:
                self.count("packages/hash_mismatch_retries")
                yield self.resolve_request(job, i, attempt=2)
                return
            async for item in self.file_done(job, i, spec.record("failed",
                                                                reason="hash_mismatch")):
                yield item
            return
        try:
            await asyncio.to_thread(self.blobs.put_bytes, body, sha)
        except OSError as exc:
            logger.error("Cannot store %s: %s", spec.path, exc)
            async for item in self.file_done(job, i, spec.record(
                    "failed", reason=f"os_error: {exc.strerror or exc}")):
                yield item
            return
        if spec.git_oid:
            self.blobs.note_git(spec.git_oid, sha)
        self.progress.add_bytes(len(body))
        job.new_bytes += len(body)
        self.count("packages/files/downloaded")
        self.count("packages/bytes_downloaded", len(body))
        async for item in self.file_done(job, i, spec.record(
                "downloaded", sha256=sha, blob=self.blobs.relpath(sha), size=len(body))):
            yield item

    async def resolve_failed(self, failure: Any) -> AsyncIterator[Any]:
        request = failure.request
        job: Job = request.meta[JOB]
        i: int = request.meta[FILE]
        self.count("packages/resolve_failed")
        logger.error("Resolve failed for good: %s (%s)", request.url, failure.getErrorMessage())
        async for item in self.file_done(job, i, job.specs[i].record("failed",
                                                                    reason="resolve_failed")):
            yield item

    async def job_failed(self, failure: Any) -> AsyncIterator[Any]:
        request = failure.request
        job: Job = request.meta[JOB]
        self.count("packages/listing_failed")
        logger.error("Package listing failed for good: %s (%s)", request.url,
                     failure.getErrorMessage())
        job.reason = "listing_failed"
        yield await self.finish(job)

    # -- ONNX Model Zoo ----------------------------------------------------------------------
    def onnx_start(self, job: Job) -> Request:
        # A local data: request gives each package a callback of its own, so ONNX packages
        # run side by side like Hugging Face ones (nothing goes over the network for it).
        return Request("data:,", callback=self.onnx_package, errback=self.job_failed,
                       meta={JOB: job}, dont_filter=True)

    @guarded
    async def onnx_package(self, response: Response) -> AsyncIterator[Any]:
        job: Job = response.meta[JOB]
        plan = onnx.package_plan(job.model, self.media_url)
        if plan is None:
            self.count("packages/onnx/unusable_record")
            job.reason = "no_manifest_facts"
            yield await self.finish(job)
            return
        job.revision, job.source_url, job.specs = plan.revision, plan.source_url, plan.files
        readme = onnx.readme_path(str(job.model["hub_id"]))
        tree = await self.github_tree(plan.repo, plan.revision)
        entry = tree.get(readme) if tree is not None else None
        if tree is None or entry is not None:
            ref = RepoRef.parse(plan.repo, plan.revision)
            job.specs.append(FileSpec(
                readme, entry.size if entry else None, git_oid=entry.sha if entry else None,
                url=github.raw_url(self.raw_url, ref, readme)))
        fetch = self.plan(job, plan.owner, plan.name)
        if not fetch:
            yield await self.finish(job)
            return
        results = await asyncio.gather(*(
            self.stream(str(job.specs[i].url), job.specs[i]) if job.specs[i].lfs
            else self.fetch_small(str(job.specs[i].url), job.specs[i]) for i in fetch))
        for i, fetched in zip(fetch, results, strict=True):
            async for item in self.file_fetched(job, i, fetched):
                yield item

    async def github_tree(self, repo: str, ref: str) -> dict[str, TreeEntry] | None:
        """The blobs of a repository at a ref (one API call per run and ref), or ``None``."""
        key = (repo, ref)
        if key not in self.trees:
            self.trees[key] = asyncio.ensure_future(self._github_tree(repo, ref))
        return await self.trees[key]

    async def _github_tree(self, repo: str, ref: str) -> dict[str, TreeEntry] | None:
        url = github.trees_url(self.github_api, RepoRef.parse(repo, ref))
        try:
            response = await self.crawler.engine.download_async(Request(
                url, meta={"ptm_expect": "object", "handle_httpstatus_all": True},
                dont_filter=True))
            tree = github.parse_tree(response.body) if response.status == 200 else None
        except Exception as exc:  # after the retries: the READMEs stay unverifiable
            logger.error("GitHub tree %s@%s failed: %s", repo, ref, exc)
            tree = None
        if tree is None:
            self.count("packages/github_tree_failed")
            return None
        if tree.truncated:
            self.count("packages/github_tree_truncated")
        return {e.path: e for e in tree.blobs()}

    async def fetch_small(self, url: str, spec: FileSpec) -> Fetched:
        """A small file through Scrapy's downloader (throttle, retries), verified in memory
        by its git blob id; a mismatch is fetched once more."""
        if spec.git_oid is None and spec.sha256 is None:
            return Fetched("failed", reason="no_hash")
        result = Fetched("failed")
        for _ in (1, 2):
            try:
                response = await self.crawler.engine.download_async(Request(
                    url, dont_filter=True, meta={"handle_httpstatus_all": True,
                                                 "download_maxsize": self.inline_max + 1}))
            except Exception as exc:
                logger.error("Fetching %s failed: %s", url, exc)
                return Fetched("failed", reason="request_failed", requests=result.requests)
            result.requests += 1
            if response.status != 200:
                result.reason = f"http_{response.status}"
                return result
            body = response.body
            sha = hashlib.sha256(body).hexdigest()
            if self.matches(spec, body, sha):
                try:
                    await asyncio.to_thread(self.blobs.put_bytes, body, sha)
                except OSError as exc:
                    return Fetched("failed", reason=f"os_error: {exc.strerror or exc}")
                if spec.git_oid:
                    self.blobs.note_git(spec.git_oid, sha)
                self.progress.add_bytes(len(body))
                return Fetched("downloaded", sha256=sha, size=len(body),
                               requests=result.requests, transferred=len(body))
            result.reason = "hash_mismatch"
        return result

    @staticmethod
    def matches(spec: FileSpec, body: bytes, sha: str) -> bool:
        return ((spec.size is None or len(body) == spec.size)
                and (spec.git_oid is None or git_blob_sha1(body) == spec.git_oid)
                and (spec.sha256 is None or sha == spec.sha256)
                and (spec.git_oid is not None or spec.sha256 is not None))

    # -- GitHub repositories (PyTorch Hub, modelhub, modelzoo) --------------------------------
    def github_start(self, job: Job) -> Request:
        return Request("data:,", callback=self.github_package, errback=self.job_failed,
                       meta={JOB: job}, dont_filter=True)

    @guarded
    async def github_package(self, response: Response) -> AsyncIterator[Any]:
        """The linked repository at the recorded ref: its file list (and git blob ids) from
        the git trees API, its bytes from one tarball, each member checked against its id."""
        job: Job = response.meta[JOB]
        target = archives.github_target(job.model, latest=self.revision_mode == "latest")
        if target is None:
            self.count("packages/github/no_repository")
            job.reason = "no_github_repository"
            yield await self.finish(job)
            return
        repo, ref = target
        ref = await self.github_commit(repo, ref)
        tree = await self.github_tree(repo, ref)
        if tree is None:
            job.reason = "tree_failed"
            yield await self.finish(job)
            return
        job.revision = ref
        job.source_url = f"https://github.com/{repo}/tree/{ref}"
        job.specs = [FileSpec(e.path, e.size, git_oid=e.sha) for e in tree.values()]
        owner, name = repo.split("/", 1)
        fetch = self.plan(job, owner, name)
        if fetch:
            await self.github_unpack(job, repo, ref, fetch)
        yield await self.finish(job)

    async def github_commit(self, repo: str, ref: str) -> str:
        """The commit a ref points to now (one API call; a commit id is kept as it is), so
        the tree, the tarball and the package folder all name the same commit."""
        if re.fullmatch(r"[0-9a-f]{40}", ref):
            return ref
        url = f"{self.github_api}/repos/{repo}/commits/{quote(ref, safe='')}"
        try:
            response = await self.crawler.engine.download_async(Request(
                url, headers={"Accept": "application/vnd.github.sha"}, dont_filter=True,
                meta={"handle_httpstatus_all": True}))
        except Exception as exc:
            logger.error("Commit of %s@%s failed: %s", repo, ref, exc)
            response = None
        sha = response.text.strip() if response is not None and response.status == 200 else ""
        if re.fullmatch(r"[0-9a-f]{40}", sha):
            return sha
        self.count("packages/github/unresolved_ref")
        return ref

    async def github_unpack(self, job: Job, repo: str, ref: str, fetch: list[int]) -> None:
        """One tarball for the files still missing; the rest of its members only listed."""
        wanted = {job.specs[i].path: i for i in fetch}
        api = f"{self.github_api}/repos/{repo}/tarball/{quote(ref, safe='')}"
        got = await self.archive(job, api, lambda p: (
            job.specs[wanted[p]].git_oid or False) if p in wanted else False)
        if got.reason is not None:
            for i in fetch:
                job.records[i] = job.specs[i].record("failed", reason=got.reason)
            return
        seen: set[str] = set()
        for m in got.members:
            index = wanted.get(m.path)
            if m.path in seen and m.status != "unwanted":
                # A second member of one name: the first that verified stays, the rest is
                # recorded (tar lets a later member overwrite an earlier one on extraction).
                m.status, m.reason = "refused", "duplicate_member"
            if index is not None and m.status in ("stored", "mismatch"):
                if m.status == "stored":
                    seen.add(m.path)
                self.archive_record(job, index, m)
            elif m.status == "refused":
                self.count("packages/files/refused")
                spec = FileSpec(m.path, m.size)
                job.specs.append(spec)
                job.records.append(spec.record("refused", reason=m.reason))
        for path, i in wanted.items():
            if path not in seen:
                job.records[i] = job.specs[i].record("failed", reason="missing_from_archive")

    async def archive(self, job: Job, url: str, wanted: Callable[[str], str | bool], *,
                      md5: bool = False, strip: int = 1) -> ArchiveResult:
        """What the archive ``url`` answers holds: the API call through Scrapy (throttle,
        credential), the redirect target streamed to a temporary file without any
        credential, then unpacked in a worker thread. With ``md5``, the archive must match
        the MD5 its storage host publishes (fetched once more, then ``hash_mismatch``);
        ``verified`` is ``None`` when the host published none."""
        result = ArchiveResult()
        for attempt in (1, 2):
            try:
                response = await self.crawler.engine.download_async(Request(
                    url, dont_filter=True, meta={"dont_redirect": True,
                                                 "handle_httpstatus_all": True,
                                                 "download_maxsize": self.inline_max + 1}))
            except Exception as exc:
                logger.error("Archive request %s failed: %s", url, exc)
                result.reason = "request_failed"
                return result
            location = response.headers.get("Location")
            if response.status not in REDIRECTS or not location:
                result.reason = f"http_{response.status}"
                return result
            source = urljoin(response.url, location.decode("latin-1"))
            self.blobs.tmp.mkdir(parents=True, exist_ok=True)
            tmp = self.blobs.tmp / f"archive.{uuid.uuid4().hex}.part"
            try:
                async with self.file_slots:
                    got = await asyncio.to_thread(self.streamer.fetch_to, source, tmp, None)
                    self.count("packages/transfer_requests", got.requests)
                    if got.status != "downloaded":
                        result.reason = got.reason or "transfer_failed"
                        return result
                    self.count("packages/archives")
                    result.size = got.size
                    if md5:
                        published = archives.published_md5(got.digests)
                        if published is None:
                            result.verified = None
                        elif await asyncio.to_thread(archives.md5_of, tmp) != published:
                            logger.warning("Archive %s does not match its MD5 (attempt %d "
                                           "of 2)", url, attempt)
                            result.reason = "hash_mismatch"
                            continue
                    unpacked = await asyncio.to_thread(
                        archives.unpack, tmp, self.blobs, wanted=wanted, strip=strip,
                        max_member_bytes=self.files.max_file_bytes)
            except (OSError, EOFError, tarfile.TarError) as exc:
                logger.error("Archive %s of %s unusable: %s", url, job.id, exc)
                result.reason = "bad_archive"
                return result
            finally:
                tmp.unlink(missing_ok=True)
            result.reason = None
            result.commit, result.members = unpacked.commit, unpacked.members
            return result
        return result

    def archive_record(self, job: Job, i: int, m: archives.Member) -> None:
        spec = job.specs[i]
        if m.status == "stored" and m.sha256:
            job.new_bytes += m.size
            self.count("packages/files/downloaded")
            self.count("packages/bytes_downloaded", m.size)
            job.records[i] = spec.record("downloaded", sha256=m.sha256,
                                         blob=self.blobs.relpath(m.sha256), size=m.size)
        else:
            self.count("packages/files/failed/hash_mismatch")
            job.records[i] = spec.record("failed", reason="hash_mismatch")

    # -- Kaggle Models -----------------------------------------------------------------------
    def kaggle_start(self, job: Job) -> Request:
        return Request("data:,", callback=self.kaggle_package, errback=self.job_failed,
                       meta={JOB: job}, dont_filter=True)

    @guarded
    async def kaggle_package(self, response: Response) -> AsyncIterator[Any]:
        """Each instance version's archive from the Kaggle API, checked against the MD5 its
        storage host publishes and unpacked under ``<framework>/<instance>/<version>/``.
        Kaggle lists no files in advance: a rerun reuses the last record of an instance
        whose blobs are all still here instead of fetching its archive again."""
        job: Job = response.meta[JOB]
        hub_id = str(job.model.get("hub_id") or "")
        instances = archives.kaggle_instances(job.model)
        owner, _, name = hub_id.partition("/")
        if not instances or safe_segment(owner) is None or safe_segment(name) is None:
            self.count("packages/kaggle/no_instances")
            job.reason = "no_instances"
            yield await self.finish(job)
            return
        label = "+".join(f"{i.framework}.{i.slug}.{i.version}" for i in instances)
        job.revision = label if len(label) <= 200 else \
            "v-" + hashlib.sha256(label.encode()).hexdigest()[:16]
        job.source_url = f"https://www.kaggle.com/models/{hub_id}"
        try:
            job.root = package_dir(self.dest, job.hub, owner, name, job.revision)
        except UnsafePath:
            job.reason = "unsafe_location"
            yield await self.finish(job)
            return
        before = crawler_store(self.crawler).get("packages", job.id) or {}
        for inst in instances:
            reused = self.reuse(before, inst.prefix)
            if reused is not None:
                self.count("packages/files/present", len(reused))
                self.add_records(job, reused)
                continue
            if self.max_bytes is not None and self.planned >= self.max_bytes:
                self.count("packages/over_budget")
                job.reason = "max_bytes"
                continue
            url = (f"{self.kaggle_api}/models/{quote(owner)}/{quote(name)}/"
                   f"{quote(inst.framework)}/{quote(inst.slug)}/{inst.version}/download")
            # Kaggle's archives hold the instance's files at their root (nothing to strip).
            got = await self.archive(job, url, self.wanted_under(inst.prefix), md5=True,
                                     strip=0)
            self.planned += got.size
            self.progress.planned_bytes += got.size
            if got.reason is not None:
                self.count(f"packages/files/failed/{got.reason}")
                spec = FileSpec(inst.prefix, None)
                self.add_records(job, [spec.record("failed", reason=got.reason)])
                continue
            self.add_records(job, self.kaggle_records(job, inst.prefix, got))
        yield await self.finish(job)

    def wanted_under(self, prefix: str) -> Callable[[str], bool]:
        def wanted(path: str) -> bool:
            return self.files.skip_reason(f"{prefix}/{path}", None) is None
        return wanted

    def add_records(self, job: Job, records: list[dict[str, Any]]) -> None:
        for r in records:
            job.specs.append(FileSpec(r["path"], r["size"]))
            job.records.append(r)
        job.listed = len(job.specs)

    def reuse(self, before: dict[str, Any], prefix: str) -> list[dict[str, Any]] | None:
        """The last run's records of an instance, as ``present``, if all verified and all
        their blobs are still in the store; else ``None`` (fetch the archive)."""
        old = [f for f in before.get("files") or []
               if isinstance(f, dict) and str(f.get("path", "")).startswith(prefix + "/")]
        stored = [f for f in old if f.get("status") in ("downloaded", "present")]
        if not stored or not all(f.get("verified") and f.get("sha256")
                                 and self.blobs.has(f["sha256"], f.get("size"))
                                 for f in stored):
            return None
        return [{**f, "status": "present", "reason": None, "scan": None} if f in stored
                else f for f in old]

    def kaggle_records(self, job: Job, prefix: str, got: ArchiveResult
                       ) -> list[dict[str, Any]]:
        out = []
        for m in got.members:
            path = f"{prefix}/{m.path}"
            spec = FileSpec(path, m.size, sha256=m.sha256)
            if m.status == "stored" and m.sha256:
                job.new_bytes += m.size
                self.count("packages/files/downloaded")
                self.count("packages/bytes_downloaded", m.size)
                record = spec.record("downloaded", blob=self.blobs.relpath(m.sha256))
                if not got.verified:
                    # The storage host published no hash: kept, but not counted verified.
                    record.update(verified=False, reason="unverified_archive")
            elif m.status == "refused":
                self.count("packages/files/refused")
                record = spec.record("refused", reason=m.reason)
            else:
                reason = m.reason or self.files.skip_reason(path, m.size) or "excluded"
                self.count(f"packages/files/skipped/{reason}")
                record = spec.record("skipped", reason=reason)
            out.append(record)
        return out

    # -- shared: planning, fetching, finishing -----------------------------------------------
    def plan(self, job: Job, owner: str | None, name: str) -> list[int]:
        """Record what needs no transfer (refused, skipped, present); reserve the budget for
        the rest. Returns the indexes of the files to fetch."""
        job.records = [None] * len(job.specs)
        job.listed = len(job.specs)
        try:
            job.root = package_dir(self.dest, job.hub, owner, name, str(job.revision))
        except UnsafePath:
            self.count("packages/refused_location")
            job.reason = "unsafe_location"
            job.records = [s.record("refused", reason="unsafe_location") for s in job.specs]
            return []
        fetch: list[int] = []
        seen: set[str] = set()
        for i, spec in enumerate(job.specs):
            clean = safe_relpath(spec.path)
            if clean is None or clean in seen:
                self.count("packages/files/refused")
                logger.warning("Refused path %r in %s", spec.path, job.id)
                job.records[i] = spec.record("refused", reason="unsafe_path" if clean is None
                                             else "duplicate_path")
                continue
            seen.add(clean)
            why = self.files.skip_reason(clean, spec.size)
            if why is not None:
                self.count(f"packages/files/skipped/{why}")
                job.records[i] = spec.record("skipped", reason=why)
                continue
            sha = spec.sha256 if spec.sha256 and self.blobs.has(spec.sha256, spec.size) \
                else self.blobs.sha256_of_git(spec.git_oid) if not spec.sha256 else None
            if sha is not None:
                self.count("packages/files/present")
                job.records[i] = spec.record("present", sha256=sha, blob=self.blobs.relpath(sha))
                continue
            fetch.append(i)
        new = sum(job.specs[i].size or 0 for i in fetch)
        if fetch and self.max_bytes is not None and self.planned + new > self.max_bytes:
            # Never half a package: what does not fit in the budget waits for another run.
            self.count("packages/over_budget")
            self.count("packages/files/skipped/max_bytes", len(fetch))
            for i in fetch:
                job.records[i] = job.specs[i].record("skipped", reason="max_bytes")
            return []
        self.planned += new
        self.progress.planned_bytes += new
        job.pending = len(fetch)
        return fetch

    async def stream(self, url: str, spec: FileSpec, auth: str | None = None) -> Fetched:
        """``spec`` from ``url`` in a worker thread; ``auth``: the origin whose credential
        may be sent (the hub's, for its own resolve URLs), never another."""
        expect = Expect(sha256=spec.sha256, git_oid=None if spec.sha256 else spec.git_oid,
                        size=spec.size)
        if not expect.key:
            return Fetched("failed", reason="no_hash")
        if origin(url) != origin(self.endpoint):
            self.count("packages/cdn_transfers")
        # One transfer per blob at a time: the same blob in several packages is fetched once
        # (the others then find it present) and never written by two threads.
        lock = self.inflight.setdefault(expect.key, asyncio.Lock())
        async with lock, self.file_slots:
            if spec.sha256 and self.blobs.has(spec.sha256, spec.size):
                return Fetched("present", sha256=spec.sha256, size=spec.size or 0)
            known = self.blobs.sha256_of_git(expect.git_oid)
            if known is not None:
                return Fetched("present", sha256=known, size=spec.size or 0)
            try:
                return await asyncio.to_thread(self.streamer.fetch, url, expect, auth)
            except OSError as exc:  # a full disk, a permission: this file fails, not the run
                logger.error("Cannot store %s: %s", spec.path, exc)
                return Fetched("failed", reason=f"os_error: {exc.strerror or exc}")

    async def file_fetched(self, job: Job, i: int, fetched: Fetched) -> AsyncIterator[Any]:
        spec = job.specs[i]
        self.count("packages/transfer_requests", fetched.requests)
        if fetched.resumed:
            self.count("packages/resumed", fetched.resumed)
        if fetched.status in ("downloaded", "present") and fetched.sha256:
            if fetched.status == "downloaded":
                job.new_bytes += fetched.size
                self.count("packages/files/downloaded")
                self.count("packages/bytes_downloaded", fetched.size)
            else:
                self.count("packages/files/present")
            record = spec.record(fetched.status, sha256=fetched.sha256,
                                 blob=self.blobs.relpath(fetched.sha256), size=fetched.size)
        else:
            self.count(f"packages/files/failed/{fetched.reason}")
            logger.error("File %s of %s failed: %s", spec.path, job.id, fetched.reason)
            record = spec.record("failed", reason=fetched.reason)
        async for item in self.file_done(job, i, record):
            yield item

    async def file_done(self, job: Job, i: int, record: dict[str, Any]) -> AsyncIterator[Any]:
        job.records[i] = record
        job.pending -= 1
        if job.pending == 0:
            yield await self.finish(job)

    async def finish(self, job: Job) -> PackageItem:
        """Link the package folder, scan what can be scanned, and build the record."""
        if job.finished:
            raise RuntimeError(f"package {job.id} finished twice")
        job.finished = True
        self.slot_free()
        records = [r for r in job.records if r is not None]
        if job.root is not None:
            try:
                await asyncio.to_thread(self.link_and_scan, job, records)
            except Exception as exc:  # the record is kept, with what went wrong
                logger.exception("Linking package %s failed", job.id)
                job.reason = f"link_failed: {type(exc).__name__}"
            if self.scanner is None:
                self.count("packages/scan_unavailable")
        self.progress.done += 1
        # Complete: every file the hub's listing names is here and verified (or left out
        # on purpose by include/exclude/weights). Archive members the listing does not name
        # (refused links, duplicates) are recorded but do not count.
        listed = [r for r in job.records[:job.listed] if r is not None]
        complete = job.reason is None and all(
            r["status"] in ("downloaded", "present")
            or (r["status"] == "skipped" and r["reason"] in ("excluded", "weights"))
            for r in listed)
        self.count("packages/done")
        self.count("packages/complete" if complete else "packages/incomplete")
        seen = self.seen_at()
        dest_rel = str(job.root.relative_to(self.dest)) if job.root is not None else None
        return PackageItem(
            _id=job.id, hub=job.hub, hub_id=str(job.model.get("hub_id") or job.id),
            revision=job.revision, source_url=job.source_url, path=dest_rel, files=records,
            bytes=sum(r["size"] or 0 for r in records if r["status"] in ("downloaded",
                                                                       "present")),
            new_bytes=job.new_bytes, complete=complete, downloaded_at=now_iso(),
            scan=summary(records), reason=job.reason,
            crawl={"first_seen": seen, "last_seen": seen, "source_url": job.source_url})

    def link_and_scan(self, job: Job, records: list[dict[str, Any]]) -> None:
        """In a worker thread: hard links, then the scanner on pickle-based files."""
        assert job.root is not None
        for r in records:
            if r["status"] not in ("downloaded", "present") or not r["blob"]:
                continue
            blob = self.dest / r["blob"]
            try:
                link_file(job.root, r["path"], blob)
            except UnsafePath:
                r.update(status="refused", reason="unsafe_path", verified=False)
                continue
            except OSError as exc:
                r.update(status="failed", reason=f"link_failed: {exc.strerror}",
                         verified=False)
                continue
            if self.scanner is None:
                continue
            is_scannable, scan_file = self.scanner
            if is_scannable(r["path"]):
                try:
                    r["scan"] = scan_file(blob, r["path"])
                except Exception as exc:  # a scanner bug must not lose the package record
                    logger.exception("Scanner failed on %s", r["path"])
                    r["scan"] = {"status": "error", "globals": [], "dangerous": [],
                                 "scanner": f"error: {type(exc).__name__}"}

