"""Hugging Face packages: tree listing, resolve calls through Scrapy, LFS bytes from the CDN."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urljoin

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response

from ptmspiders import origins
from ptmspiders.packages import hf
from ptmspiders.packages.crawler import FILE, JOB, Job, PackageCrawler, guarded
from ptmspiders.packages.fetch import REDIRECTS

logger = logging.getLogger(__name__)


class HuggingFacePackages(PackageCrawler):
    """Every file of a repository at the revision (tree API, resolve calls)."""

    # The content key of a file being fetched -> the files (job, index) of other packages, or
    # of the same one, that wait for it. Packages planned at the same moment often share files
    # (.gitattributes, configs, tokenizers, base weights): each of them found it absent from
    # the blob store and made its own resolve call, of the hub's quota. (The transfers
    # themselves were never doubled: ``PackageCrawler.inflight``.)
    waiting: dict[str, list[tuple[Job, int]]]
    # (id of the job, file index) of each such fetch -> its key (a resolve answer may add the
    # SHA-256 the tree did not give, which changes the file's own key).
    fetching: dict[tuple[int, int], str]

    def setup(self, crawler: Crawler) -> None:
        super().setup(crawler)
        self.waiting, self.fetching = {}, {}

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
        link = hf.next_link(response)
        if link:
            try:
                next_url = origins.follow(response, link, self.crawler.stats,
                                          what="file tree page")
            except origins.RefusedLink:
                # A next page on another host (or scheme) is not followed: the package would
                # be planned from a list that host made up.
                self.count("packages/foreign_link")
                job.reason = "foreign_next_link"
                yield await self.finish(job)
                return
            yield Request(next_url, callback=self.parse_tree, errback=self.job_failed,
                          meta={JOB: job, "ptm_expect": "list"}, dont_filter=True)
            return
        repo_id = str(job.model.get("hub_id"))
        for spec in job.specs:
            spec.url = hf.resolve_url(self.endpoint, repo_id, str(job.revision), spec.path)
        owner, name = hf.split_repo(repo_id)
        present = await self.in_thread(self.present_blobs, job.specs)
        fetch = self.plan(job, owner, name, present)
        if not fetch:
            yield await self.finish(job)
            return
        for i in fetch:
            if not self.wait_for_same(job, i):
                yield self.resolve_request(job, i)

    def wait_for_same(self, job: Job, i: int) -> bool:
        """File ``i`` waits for the same file that another fetch brings already (True), or it
        is now that fetch (False: ask for it)."""
        key = _content_key(job, i)
        if not key:
            return False
        waiters = self.waiting.get(key)
        if waiters is None:
            self.waiting[key] = []
            self.fetching[id(job), i] = key
            return False
        waiters.append((job, i))
        self.count("packages/files/waited_for_same")
        return True

    async def file_done(self, job: Job, i: int, record: dict[str, Any]) -> AsyncIterator[Any]:
        async for item in super().file_done(job, i, record):
            yield item
        key = self.fetching.pop((id(job), i), None)
        if key is None:
            return
        waiters = self.waiting.pop(key)
        sha = record["sha256"] if record["status"] in ("downloaded", "present") else None
        for other, j in waiters:
            if sha:
                self.count("packages/files/present")
                async for item in super().file_done(other, j, other.specs[j].record(
                        "present", sha256=sha, blob=self.blobs.relpath(sha))):
                    yield item
            elif self.stopping():
                async for item in super().file_done(other, j, other.specs[j].record(
                        "failed", reason=record["reason"] or "cancelled")):
                    yield item
            elif not self.wait_for_same(other, j):
                # Its fetch failed: the first waiter asks the hub itself, the others wait
                # for that.
                yield self.resolve_request(other, j)

    def resolve_request(self, job: Job, i: int, attempt: int = 1) -> Request:
        """The resolve call of file ``i``: a GET for small git files (the body is the file,
        verified in memory), a HEAD for LFS files (the answer is the CDN redirect; the bytes
        are then streamed from there, without the hub's credential)."""
        spec = job.specs[i]
        inline = not spec.lfs and spec.size is not None and spec.size <= self.inline_max
        assert spec.url is not None
        # Above the listings (a listed package's files first), and the bigger the file the
        # sooner (one step per 16x): a long transfer starts while small files are resolved.
        priority = 1 + (spec.size or 0).bit_length() // 4
        return Request(spec.url, method="GET" if inline else "HEAD",
                       callback=self.parse_resolve, errback=self.resolve_failed,
                       dont_filter=True, priority=priority,
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
        try:
            sha = await self.in_thread(self.store_small, spec, body)
        except OSError as exc:
            logger.error("Cannot store %s: %s", spec.path, exc)
            async for item in self.file_done(job, i, spec.record(
                    "failed", reason=f"os_error: {exc.strerror or exc}")):
                yield item
            return
        if sha is None:
            if response.meta["ptm_attempt"] == 1:
                self.count("packages/hash_mismatch_retries")
                yield self.resolve_request(job, i, attempt=2)
                return
            async for item in self.file_done(job, i, spec.record("failed",
                                                                reason="hash_mismatch")):
                yield item
            return
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


def _content_key(job: Job, i: int) -> str:
    """What names file ``i``'s bytes: the SHA-256 the hub published, else its git blob id, with
    the size it gave (two entries of one hash but different sizes are not the same file)."""
    spec = job.specs[i]
    digest = spec.sha256 or spec.git_oid
    return f"{digest}:{spec.size}" if digest else ""
