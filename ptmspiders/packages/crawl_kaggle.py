"""Kaggle Models packages: each instance version's archive, checked against its MD5."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

from ptmspiders.packages import archive as archives
from ptmspiders.packages.crawler import ArchiveResult, Job, PackageCrawler
from ptmspiders.packages.layout import UnsafePath, package_dir
from ptmspiders.packages.paths import safe_segment
from ptmspiders.packages.plan import FileSpec
from ptmspiders.stores import crawler_store

logger = logging.getLogger(__name__)


def under(prefix: str, path: str) -> str:
    """``path`` inside the package folder ``prefix`` (``""``: the package's root)."""
    return f"{prefix}/{path}" if prefix else path


class KagglePackages(PackageCrawler):
    """Each instance version's archive under ``<framework>/<instance>/<version>/``."""

    async def kaggle_package(self, job: Job) -> AsyncIterator[Any]:
        """Each instance version's archive from the Kaggle API, checked against the MD5 its
        storage host publishes and unpacked under ``<framework>/<instance>/<version>/``.
        Kaggle lists no files in advance: a rerun reuses the last record of an instance
        whose blobs are all still here instead of fetching its archive again."""
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
            if got.reason is not None:  # nothing kept: nothing taken from the budget
                self.add_records(job, [self.archive_refused_or_failed(inst.prefix, got)])
                continue
            self.planned += got.size
            self.progress.planned_bytes += got.size
            self.add_records(job, self.kaggle_records(job, inst.prefix, got))
        yield await self.finish(job)

    def archive_refused_or_failed(self, path: str, got: ArchiveResult) -> dict[str, Any]:
        """The record of an archive that yielded nothing: ``refused`` past a bound
        (:data:`archives.REFUSED`), else ``failed``."""
        assert got.reason is not None
        if got.reason in archives.REFUSED:
            self.count("packages/files/refused")
            return FileSpec(path, None).record("refused", reason=got.reason)
        self.count(f"packages/files/failed/{got.reason}")
        return FileSpec(path, None).record("failed", reason=got.reason)

    def wanted_under(self, prefix: str) -> Callable[[str], bool]:
        def wanted(path: str) -> bool:
            return self.files.skip_reason(under(prefix, path), None) is None
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
               if isinstance(f, dict) and str(f.get("path", "")).startswith(under(prefix, ""))]
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
        seen: set[str] = set()
        for m in got.members:
            path = under(prefix, m.path)
            spec = FileSpec(path, m.size, sha256=m.sha256)
            if m.status == "stored" and path in seen:
                # A second member of one name (tar lets it overwrite the first): recorded only.
                self.count("packages/files/refused")
                out.append(spec.record("refused", reason="duplicate_member"))
                continue
            if m.status == "stored" and m.sha256:
                seen.add(path)
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
