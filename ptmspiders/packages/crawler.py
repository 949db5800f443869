"""The machinery of the packages crawl that every hub shares: settings, progress, planning
against the blob store and the budget, streamed transfers in worker threads, small files and
archives through Scrapy's downloader, and the package record at the end.

Scrapy makes the API calls (tree listings, resolve calls, GitHub trees): they go through the
throttle, retries, auth and stats. File bytes take a streaming path
(:mod:`ptmspiders.packages.fetch`) in worker threads, at most ``PTM_PACKAGES_CONCURRENCY`` at a
time, so neither memory nor the reactor depends on file size. Each hub's flow is a mixin
(``crawl_huggingface``, ``crawl_onnx``, ``crawl_github``, ``crawl_kaggle``, ``crawl_tfhub``)
over this class; ``spiders/packages.py`` puts them together.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import tarfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from scrapy.http import Response
from twisted.internet import task

from ptmspiders import github
from ptmspiders.config import ptm_settings
from ptmspiders.github import RepoRef, TreeEntry
from ptmspiders.items import PackageItem
from ptmspiders.middlewares.auth import credentials_from, origin
from ptmspiders.middlewares.origin import FLOW_META
from ptmspiders.packages import archive as archives
from ptmspiders.packages.bandwidth import Bandwidth
from ptmspiders.packages.blobs import git_blob_sha1, open_blobs
from ptmspiders.packages.fetch import REDIRECTS, Expect, Fetched, Streamer
from ptmspiders.packages.layout import UnsafePath, package_dir
from ptmspiders.packages.paths import safe_relpath
from ptmspiders.packages.plan import FileSpec
from ptmspiders.packages.progress import Progress
from ptmspiders.packages.scanning import load_scanner, summary
from ptmspiders.packages.selection import FileFilter
from ptmspiders.spiders.base import PtmSpider, now_iso
from ptmspiders.stopping import stopping, until_stopping

logger = logging.getLogger(__name__)

JOB = "ptm_package"
FILE = "ptm_file"
FLOW = FLOW_META  # only these data: requests pass SameOriginRedirectMiddleware
FLOW_URL = "data:,"  # no download: the flow makes its own hub calls


# Package reasons that mean "nothing to fetch here" (or an archive refused by a bound), not a
# failure a rerun could fix.
NOTHING_TO_FETCH = frozenset({"hub_not_supported", "no_github_repository", "no_instances",
                              "no_manifest_facts", "max_bytes", "placeholder",
                              "not_an_archive", "bad_handle", *archives.REFUSED})
C = TypeVar("C", bound="PackageCrawler")
R = TypeVar("R")
Callback = Callable[[C, Response], AsyncIterator[Any]]


def guarded(callback: Callback[C]) -> Callback[C]:
    """A callback whose unexpected exception fails its file (or its package) on the record
    instead of losing it: a lost package would hold its slot forever and stall the run."""
    @functools.wraps(callback)
    async def wrapper(spider: C, response: Response) -> AsyncIterator[Any]:
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
    """What :meth:`PackageCrawler.archive` made of one archive."""

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


class PackageCrawler(PtmSpider):
    """Shared state and steps; the spider's ``__init__`` sets the selection attributes."""

    files: FileFilter
    max_bytes: int | None
    revision_mode: str
    dest_arg: str | None

    def setup(self, crawler: Crawler) -> None:
        s, c = crawler.settings, ptm_settings(crawler)
        self.progress = Progress()
        self.planned = 0  # new bytes reserved against max_bytes
        self.stop_event = threading.Event()
        # One transfer per blob at a time (the same blob in several packages).
        self.inflight: dict[str, asyncio.Lock] = {}
        self.failed_packages = 0
        # A folder (local or shared) or s3://bucket/prefix; for an object store, ``dest`` is
        # the local staging folder of partial transfers, and package folders are manifests.
        self.blobs = open_blobs(str(self.dest_arg or c.packages_dir), c.packages_staging_dir)
        self.dest = self.blobs.dest
        self.endpoint = c.hf_endpoint
        self.hub_origin = origin(self.endpoint)
        self.media_url = c.github_media_url
        self.github_api = c.github_api_url
        self.raw_url = c.github_raw_url
        self.kaggle_api = c.kaggle_api_url
        self.tfhub_url = c.tfhub_url
        self.trees: dict[tuple[str, str], asyncio.Future[dict[str, TreeEntry] | None]] = {}
        concurrency = c.packages_concurrency
        packages_at_once = c.packages_concurrent_packages
        self.inline_max = c.packages_inline_max_bytes
        self.interval = c.packages_progress_interval
        self.archive_max_bytes = c.packages_archive_max_bytes
        self.archive_max_members = c.packages_archive_max_members
        self.file_slots = asyncio.Semaphore(concurrency)
        # The crawl's own worker threads: one per transfer slot, plus some for disk work
        # (small files, links, scans). asyncio's default pool has cpu_count + 4 threads (6 on
        # two cores): three long transfers left small files and linking three threads.
        self.workers = ThreadPoolExecutor(max_workers=concurrency + 4,
                                          thread_name_prefix="ptm-packages")
        self.package_slots = asyncio.Semaphore(packages_at_once)
        urls = {k: c.value(k) for k in ("HF_ENDPOINT", "GITHUB_API_URL", "KAGGLE_API_URL")}
        creds = credentials_from(urls, os.environ) if c.auth_enabled else []
        cap = c.packages_bandwidth or None  # bytes/s for this worker
        progress = self.progress.add_bytes if cap is None else Bandwidth(
            cap, self.stop_event).paced(self.progress.add_bytes)
        self.streamer = Streamer(
            self.blobs, user_agent=str(s.get("USER_AGENT")),
            timeout=s.getfloat("DOWNLOAD_TIMEOUT"),
            credentials={c.origin: c.header for c in creds},
            retry_wait=c.packages_retry_wait,
            progress=progress, stop=self.stop_event)
        self.scanner = load_scanner()
        self.ticker: task.LoopingCall | None = None
        self.started = 0  # packages begun (done ones are counted by progress.done)
        self.stop_watch: asyncio.Future[None] | None = None
        crawler.signals.connect(self.opened, signal=signals.spider_opened)
        crawler.signals.connect(self.closed_, signal=signals.spider_closed)

    # -- progress ----------------------------------------------------------------------------
    def opened(self) -> None:
        try:
            self.blobs.check()
        except ValueError as exc:  # an object store that cannot be reached or used
            logger.error("%s", exc)
            raise CloseSpider("blob_store_unavailable") from None
        try:
            removed = self.blobs.clean_tmp()
        except OSError as exc:  # dest is a file, or a folder that cannot be made or written
            logger.error("Packages folder %s cannot be used: %s", self.blobs.location, exc)
            raise CloseSpider("blob_store_unavailable") from None
        if removed:
            logger.info("Removed %d leftovers of an interrupted run from %s", removed,
                        self.blobs.tmp)
        if self.interval > 0:
            self.ticker = task.LoopingCall(self.log_progress)
            self.ticker.start(self.interval, now=False)
        self.stop_watch = asyncio.ensure_future(self.stop_on_shutdown())

    async def stop_on_shutdown(self) -> None:
        """At SIGTERM or Ctrl-C, cancel the transfers at once (their partial files stay for
        the next run) rather than after the graceful stop waited for them; requests waiting
        for a rate-limit window are dropped by the throttle (:mod:`ptmspiders.stopping`)."""
        await until_stopping(self.crawler)
        self.streamer.abort()
        logger.info("Stopping: transfers in progress are cancelled; a rerun resumes them")

    def stopping(self) -> bool:
        """The crawl is shutting down: no new request or transfer; a failure is a cancel."""
        return self.stop_event.is_set() or stopping(self.crawler)

    def log_progress(self) -> None:
        logger.info("%s", self.progress.line())
        self.record_progress()

    def record_progress(self) -> None:
        if self.crawler.stats is not None:
            for key, value in self.progress.figures().items():
                if value is not None:
                    self.crawler.stats.set_value(f"ptm/packages/progress/{key}", value)

    async def in_thread(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` in one of the crawl's worker threads."""
        return await asyncio.get_running_loop().run_in_executor(
            self.workers, functools.partial(fn, *args))

    def closed_(self, reason: str) -> None:
        self.stop_event.set()  # worker threads leave their partial files for the next run
        self.workers.shutdown(wait=False, cancel_futures=True)
        if self.stop_watch is not None:
            self.stop_watch.cancel()
        unfinished = self.started - self.progress.done
        if unfinished > 0:
            self.count("packages/cancelled", unfinished)
            if self.crawler.stats is not None:
                self.crawler.stats.set_value("ptm/incomplete", True)
                self.crawler.stats.set_value("ptm/incomplete/packages_cancelled", unfinished)
            logger.warning("%d packages were not finished (crawl %s); a rerun fetches them",
                           unfinished, reason)
        if self.ticker is not None and self.ticker.running:
            self.ticker.stop()
        logger.info("%s", self.progress.line())
        self.record_progress()
        if self.failed_packages:
            logger.error("%d packages have files or listings that failed (see ptm query "
                         "'{\"complete\": false}' --collection packages); a rerun retries "
                         "them", self.failed_packages)

    # -- packages without a Scrapy request of their own to hang a callback on --------------
    def flow_request(self, job: Job, flow: str) -> Request:
        """A request whose callback runs ``getattr(self, flow)(job)`` (GitHub, ONNX, Kaggle,
        TF Hub packages, whose hub calls are made inside the flow): a ``data:`` URI, answered
        in-process. As a callback, the package is waited for by Scrapy's graceful stop and
        its record goes through the pipelines before they close, however the crawl ends."""
        return Request(FLOW_URL, callback=self.run_flow, errback=self.job_failed,
                       dont_filter=True, meta={JOB: job, FLOW: flow})

    @guarded
    async def run_flow(self, response: Response) -> AsyncIterator[Any]:
        job: Job = response.meta[JOB]
        flow: Callable[[Job], AsyncIterator[Any]] = getattr(self, response.meta[FLOW])
        async for out in flow(job):
            yield out

    def slot_free(self) -> None:
        self.package_slots.release()

    async def job_failed(self, failure: Any) -> AsyncIterator[Any]:
        request = failure.request
        job: Job = request.meta[JOB]
        self.count("packages/listing_failed")
        logger.error("Package listing failed for good: %s (%s)", request.url,
                     failure.getErrorMessage())
        job.reason = "listing_failed"
        yield await self.finish(job)

    async def github_tree(self, repo: str, ref: str) -> dict[str, TreeEntry] | None:
        """The blobs of a repository at a ref (one API call per run and ref), or ``None``."""
        key = (repo, ref)
        if key not in self.trees:
            self.trees[key] = asyncio.ensure_future(self._github_tree(repo, ref))
        return await self.trees[key]

    async def _github_tree(self, repo: str, ref: str) -> dict[str, TreeEntry] | None:
        url = github.trees_url(self.github_api, RepoRef.parse(repo, ref))
        if self.stopping():
            return None
        try:
            response = await self.crawler.engine.download_async(Request(
                url, meta={"ptm_expect": "object", "handle_httpstatus_all": True},
                dont_filter=True))
            tree = github.parse_tree(response.body) if response.status == 200 else None
        except Exception as exc:  # after the retries: the READMEs stay unverifiable
            if self.stopping():
                return None
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
            if self.stopping():
                return Fetched("cancelled", reason="cancelled", requests=result.requests)
            try:
                response = await self.crawler.engine.download_async(Request(
                    url, dont_filter=True, meta={"handle_httpstatus_all": True,
                                                 "download_maxsize": self.inline_max + 1}))
            except Exception as exc:
                if self.stopping():
                    return Fetched("cancelled", reason="cancelled", requests=result.requests)
                logger.error("Fetching %s failed: %s", url, exc)
                return Fetched("failed", reason="request_failed", requests=result.requests)
            result.requests += 1
            if response.status != 200:
                result.reason = f"http_{response.status}"
                return result
            body = response.body
            try:
                sha = await self.in_thread(self.store_small, spec, body)
            except OSError as exc:
                return Fetched("failed", reason=f"os_error: {exc.strerror or exc}")
            if sha is not None:
                self.progress.add_bytes(len(body))
                return Fetched("downloaded", sha256=sha, size=len(body),
                               requests=result.requests, transferred=len(body))
            result.reason = "hash_mismatch"
        return result

    def store_small(self, spec: FileSpec, body: bytes) -> str | None:
        """In a worker thread: the SHA-256 of a small file held in memory, stored as a blob
        if it matches what the hub published, else ``None`` (nothing stored)."""
        sha = hashlib.sha256(body).hexdigest()
        if not self.matches(spec, body, sha):
            return None
        self.blobs.put_bytes(body, sha)
        if spec.git_oid:
            self.blobs.note_git(spec.git_oid, sha)
        return sha

    @staticmethod
    def matches(spec: FileSpec, body: bytes, sha: str) -> bool:
        return ((spec.size is None or len(body) == spec.size)
                and (spec.git_oid is None or git_blob_sha1(body) == spec.git_oid)
                and (spec.sha256 is None or sha == spec.sha256)
                and (spec.git_oid is not None or spec.sha256 is not None))

    async def archive(self, job: Job, url: str, wanted: Callable[[str], str | bool], *,
                      md5: bool = False, strip: int = 1) -> ArchiveResult:
        """What the archive ``url`` answers holds: the API call through Scrapy (throttle,
        credential), the redirect target streamed to a temporary file without any
        credential, then unpacked in a worker thread. With ``md5``, the archive must match
        the MD5 its storage host publishes (fetched once more, then ``hash_mismatch``);
        ``verified`` is ``None`` when the host published none."""
        result = ArchiveResult()
        for attempt in (1, 2):
            if self.stopping():
                result.reason = "cancelled"
                return result
            try:
                response = await self.crawler.engine.download_async(Request(
                    url, dont_filter=True, meta={"dont_redirect": True,
                                                 "handle_httpstatus_all": True,
                                                 "download_maxsize": self.inline_max + 1}))
            except Exception as exc:
                if self.stopping():
                    result.reason = "cancelled"
                    return result
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
                    got = await self.in_thread(self.streamer.fetch_to, source, tmp, None)
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
                        elif await self.in_thread(archives.md5_of, tmp) != published:
                            logger.warning("Archive %s does not match its MD5 (attempt %d "
                                           "of 2)", url, attempt)
                            result.reason = "hash_mismatch"
                            continue
                    unpacked = await self.in_thread(functools.partial(
                        archives.unpack, tmp, self.blobs, wanted=wanted, strip=strip,
                        max_member_bytes=self.files.max_file_bytes,
                        max_total_bytes=self.archive_max_bytes,
                        max_members=self.archive_max_members))
            except archives.ArchiveRefused as exc:
                logger.warning("Archive %s of %s refused: %s", url, job.id, exc)
                self.count(f"packages/archives_refused/{exc.reason}")
                result.reason = exc.reason
                return result
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

    # -- shared: planning, fetching, finishing -----------------------------------------------
    def present_sha(self, file: FileSpec | Expect) -> str | None:
        """The SHA-256 of ``file``'s blob when the store has it already, else ``None``."""
        if file.sha256:
            return file.sha256 if self.blobs.has(file.sha256, file.size) else None
        return self.blobs.sha256_of_git(file.git_oid)

    def present_blobs(self, specs: list[FileSpec]) -> list[str | None]:
        """In a worker thread: :meth:`present_sha` of each file of a package (an object
        store is asked about them all at once first). On the event loop, a file-system
        call per file let the transfer threads take the GIL each time."""
        self.blobs.warm(specs)
        return [self.present_sha(spec) for spec in specs]

    def plan(self, job: Job, owner: str | None, name: str,
             present: list[str | None] | None = None) -> list[int]:
        """Record what needs no transfer (refused, skipped, present); reserve the budget for
        the rest. Returns the indexes of the files to fetch. ``present``: what
        :meth:`present_blobs` found for ``job.specs``, else the store is asked here."""
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
            sha = present[i] if present is not None else self.present_sha(spec)
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
            if self.stopping():
                return Fetched("cancelled", reason="cancelled")
            try:
                return await self.in_thread(self.fetch_blob, url, expect, auth)
            except OSError as exc:  # a full disk, a permission: this file fails, not the run
                logger.error("Cannot store %s: %s", spec.path, exc)
                return Fetched("failed", reason=f"os_error: {exc.strerror or exc}")

    def fetch_blob(self, url: str, expect: Expect, auth: str | None) -> Fetched:
        """In a worker thread: the blob ``expect`` names, unless it is present already (found
        by another package since this one was planned). The store is asked here, not on
        the event loop, which thousands of small files kept waiting on file-system calls."""
        known = self.present_sha(expect)
        if known is not None:
            return Fetched("present", sha256=known, size=expect.size or 0)
        return self.streamer.fetch(url, expect, auth)

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

    def unplan(self, size: int) -> None:
        """Planned bytes that were not written (failed, cancelled, refused, found present)
        leave the plan and the max_bytes budget; otherwise a hub that lists files it does not
        serve (sizes of many GB), or an archive that fails, leaves "54 B of 12.2 GiB planned"
        and a spent budget behind."""
        self.planned -= size
        self.progress.planned_bytes -= size

    async def file_done(self, job: Job, i: int, record: dict[str, Any]) -> AsyncIterator[Any]:
        if record["status"] != "downloaded" and i < job.listed:
            self.unplan(job.specs[i].size or 0)
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
                await self.in_thread(self.link_and_scan, job, records)
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
        if (job.reason is not None and job.reason not in NOTHING_TO_FETCH) or any(
                r["status"] == "failed" for r in records):
            # Something a rerun may fix failed: the crawl did not do its whole job (exit 3).
            self.failed_packages += 1
            self.count("incomplete/packages_failed")
            if self.crawler.stats is not None:
                self.crawler.stats.set_value("ptm/incomplete", True)
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
        """In a worker thread: hard links (or the manifest), then the scanner on pickle-based
        files."""
        assert job.root is not None
        checked: set[Path] = set()  # the package's folders made and checked so far
        for r in records:
            if r["status"] not in ("downloaded", "present") or not r["blob"]:
                continue
            try:
                self.blobs.place(job.root, r["path"], r["blob"], checked)
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
                    with self.blobs.blob_file(r["blob"]) as blob:
                        r["scan"] = scan_file(blob, r["path"])
                except Exception as exc:  # a scanner bug must not lose the package record
                    logger.exception("Scanner failed on %s", r["path"])
                    r["scan"] = {"status": "error", "globals": [], "dangerous": [],
                                 "scanner": f"error: {type(exc).__name__}"}
        self.blobs.finish_package(job.root, job.id, records)
