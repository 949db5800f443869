"""Packages of GitHub repositories (PyTorch Hub, modelhub, modelzoo) from one tarball."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from scrapy import Request

from ptmspiders.packages import archive as archives
from ptmspiders.packages.crawler import Job, PackageCrawler
from ptmspiders.packages.plan import FileSpec

logger = logging.getLogger(__name__)


class GithubPackages(PackageCrawler):
    """The linked repository at a commit: tree API for the list, one tarball for the bytes."""

    async def github_package(self, job: Job) -> AsyncIterator[Any]:
        """The linked repository at the recorded ref: its file list (and git blob ids) from
        the git trees API, its bytes from one tarball, each member checked against its id."""
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
            job.reason = "cancelled" if self.stopping() else "tree_failed"
            yield await self.finish(job)
            return
        job.revision = ref
        job.source_url = f"https://github.com/{repo}/tree/{ref}"
        job.specs = [FileSpec(e.path, e.size, git_oid=e.sha) for e in tree.values()]
        owner, name = repo.split("/", 1)
        present = await self.in_thread(self.present_blobs, job.specs)
        fetch = self.plan(job, owner, name, present)
        if fetch:
            await self.github_unpack(job, repo, ref, fetch)
            # What the tarball did not bring (failed, refused, missing) leaves the budget.
            self.unplan(sum(job.specs[i].size or 0 for i in fetch
                            if (job.records[i] or {}).get("status") != "downloaded"))
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
            if not self.stopping():
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
            status = "refused" if got.reason in archives.REFUSED else "failed"
            self.count(f"packages/files/{status}" if status == "refused"
                       else f"packages/files/failed/{got.reason}", len(fetch))
            for i in fetch:
                job.records[i] = job.specs[i].record(status, reason=got.reason)
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
