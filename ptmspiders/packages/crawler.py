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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.http import Response
from twisted.internet import task

from ptmspiders import github
from ptmspiders.args import ArgumentError
from ptmspiders.github import RepoRef, TreeEntry
from ptmspiders.items import PackageItem
from ptmspiders.middlewares.auth import credentials_from, origin
from ptmspiders.packages import archive as archives
from ptmspiders.packages.bandwidth import Bandwidth
from ptmspiders.packages.blobs import BlobStore, git_blob_sha1
from ptmspiders.packages.fetch import REDIRECTS, Expect, Fetched, Streamer
from ptmspiders.packages.layout import UnsafePath, link_file, package_dir
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


# Package reasons that mean "nothing to fetch here", not a failure a rerun could fix.
NOTHING_TO_FETCH = frozenset({"hub_not_supported", "no_github_repository", "no_instances",
                              "no_manifest_facts", "max_bytes", "placeholder",
                              "not_an_archive", "bad_handle"})
_TASK_DONE = object()  # a task package has handed over all it yields
C = TypeVar("C", bound="PackageCrawler")
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
        s = crawler.settings
        self.progress = Progress()
        self.planned = 0  # new bytes reserved against max_bytes
        self.stop_event = threading.Event()
        # One transfer per blob at a time (the same blob in several packages).
        self.inflight: dict[str, asyncio.Lock] = {}
        # Packages run as tasks, and the records they hand to start() (then _TASK_DONE).
        self.running: set[asyncio.Future[None]] = set()
        self.spawned = self.tasks_done = 0
        self.failed_packages = 0
        self.ready: asyncio.Queue[Any] = asyncio.Queue()
        self.dest = Path(self.dest_arg or s.get("PTM_PACKAGES_DIR") or "data/packages")
        self.blobs = BlobStore(self.dest)
        self.endpoint = str(s.get("HF_ENDPOINT")).rstrip("/")
        self.hub_origin = origin(self.endpoint)
        self.media_url = str(s.get("GITHUB_MEDIA_URL")).rstrip("/")
        self.github_api = str(s.get("GITHUB_API_URL")).rstrip("/")
        self.raw_url = str(s.get("GITHUB_RAW_URL")).rstrip("/")
        self.kaggle_api = str(s.get("KAGGLE_API_URL")).rstrip("/")
        self.tfhub_url = str(s.get("TFHUB_URL")).rstrip("/")
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
        cap = s.getfloat("PTM_PACKAGES_BANDWIDTH", 0.0) or None  # bytes/s for this worker
        progress = self.progress.add_bytes if cap is None else Bandwidth(
            cap, self.stop_event).paced(self.progress.add_bytes)
        self.streamer = Streamer(
            self.blobs, user_agent=str(s.get("USER_AGENT")),
            timeout=s.getfloat("DOWNLOAD_TIMEOUT", 60.0),
            credentials={c.origin: c.header for c in creds},
            retry_wait=s.getfloat("PTM_PACKAGES_RETRY_WAIT", 1.0),
            progress=progress, stop=self.stop_event)
        self.scanner = load_scanner()
        self.ticker: task.LoopingCall | None = None
        self.started = 0  # packages begun (done ones are counted by progress.done)
        self.stop_watch: asyncio.Future[None] | None = None
        crawler.signals.connect(self.opened, signal=signals.spider_opened)
        crawler.signals.connect(self.closed_, signal=signals.spider_closed)

    # -- progress ----------------------------------------------------------------------------
    def opened(self) -> None:
        removed = self.blobs.clean_tmp()
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

    def closed_(self, reason: str) -> None:
        self.stop_event.set()  # worker threads leave their partial files for the next run
        if self.stop_watch is not None:
            self.stop_watch.cancel()
        for running in list(self.running):
            running.cancel()  # a package task still waiting: cancelled with the crawl
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

    # -- packages that run as tasks (no Scrapy request of their own to hang a callback on) --
    def spawn(self, job: Job, flow: Callable[[Job], AsyncIterator[Any]]) -> None:
        """Run ``flow(job)`` as a task; its records reach the pipelines through ``start()``
        (:meth:`finished_records`, :meth:`remaining_records`). An unexpected error fails the
        package on the record, as :func:`guarded` does for callbacks."""
        async def run() -> None:
            try:
                async for item in flow(job):
                    self.ready.put_nowait(item)
            except Exception as exc:
                logger.exception("Package %s failed", job.id)
                self.count("packages/errors")
                if not job.finished:
                    job.reason = f"error: {type(exc).__name__}"
                    self.ready.put_nowait(await self.finish(job))
            finally:
                self.ready.put_nowait(_TASK_DONE)

        self.spawned += 1
        task = asyncio.ensure_future(run())
        self.running.add(task)  # a reference until it ends (the loop keeps only weak ones)
        task.add_done_callback(self.running.discard)

    def finished_records(self) -> list[Any]:
        """Records of task packages finished so far (without waiting)."""
        out = []
        while not self.ready.empty():
            item = self.ready.get_nowait()
            if item is _TASK_DONE:
                self.tasks_done += 1
            else:
                out.append(item)
        return out

    async def remaining_records(self) -> AsyncIterator[Any]:
        """Every record still to come from task packages, as each finishes."""
        while self.tasks_done < self.spawned:
            item = await self.ready.get()
            if item is _TASK_DONE:
                self.tasks_done += 1
            else:
                yield item

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
            if self.stopping():
                return Fetched("cancelled", reason="cancelled")
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
        if record["status"] != "downloaded" and i < job.listed:
            # Planned but not transferred (failed, cancelled, found present): its bytes leave
            # the plan and the budget, or a hub that lists files it does not serve (sizes of
            # many GB) leaves "54 B of 12.2 GiB planned" and a spent max_bytes behind.
            size = job.specs[i].size or 0
            self.planned -= size
            self.progress.planned_bytes -= size
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
