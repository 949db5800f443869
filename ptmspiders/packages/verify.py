"""``ptm verify``: re-hash every blob the package records name, and check every package
folder still links to it (long-term storage rots; a copy without ``cp -l`` splits links).

Each blob is read once however many packages share it. Problems:

- ``mismatch``: the blob's SHA-256 or size is not what the record says (exit 1);
- ``missing``: a recorded blob is gone (exit 1);
- ``unlinked``: a package file is missing or is no longer the blob's hard link (exit 1;
  the blob itself may be fine: the crawl's next run links it again). In an object store:
  the package's manifest is missing or does not map the file to its blob.

In an object store (``s3://``) each blob is streamed from the bucket and hashed on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptmspiders.packages.blobs import BlobStore
from ptmspiders.packages.paths import safe_relpath


@dataclass
class VerifyReport:
    packages: int = 0
    blobs: int = 0
    bytes: int = 0
    ok: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.problems)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p["problem"]] = out.get(p["problem"], 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"packages": self.packages, "blobs": self.blobs, "bytes": self.bytes,
                "ok": self.ok, "problems": self.counts(), "details": self.problems}


def verify(store: BlobStore | Path, packages: Iterable[dict[str, Any]],
           progress: Callable[[int], None] = lambda n: None) -> VerifyReport:
    """Check the blobs and package trees of ``store`` (a folder, or a store from
    :func:`open_blobs`) against the package records."""
    blobs = store if isinstance(store, BlobStore) else BlobStore(store)
    report = VerifyReport()
    expected: dict[str, tuple[str | None, int | None, str]] = {}  # blob -> (sha, size, who)
    trees: list[tuple[str, str, list[tuple[str, str]]]] = []  # (package id, path, files)
    for doc in packages:
        report.packages += 1
        files: list[tuple[str, str]] = []
        for f in doc.get("files") or []:
            if f.get("status") not in ("downloaded", "present") or not f.get("blob"):
                continue
            blob = str(f["blob"])
            expected.setdefault(blob, (f.get("sha256"), f.get("size"), str(doc.get("_id"))))
            clean = safe_relpath(f.get("path"))
            if clean is not None:
                files.append((clean, blob))
        package_path = safe_relpath(doc.get("path"))
        if package_path is not None and files:
            trees.append((str(doc.get("_id")), package_path, files))
    for blob, (sha, size, who) in sorted(expected.items()):
        report.blobs += 1
        got = blobs.hash_blob(blob)
        if got is None:
            report.problems.append({"problem": "missing", "blob": blob, "package": who})
            continue
        actual, actual_size = got
        report.bytes += actual_size
        progress(actual_size)
        if actual != sha or (size is not None and actual_size != size):
            report.problems.append({"problem": "mismatch", "blob": blob, "package": who,
                                    "expected": sha, "actual": actual, "size": actual_size})
        else:
            report.ok += 1
    for who, package_path, files in trees:
        blob_of = dict(files)
        for path in blobs.unplaced(package_path, files):
            report.problems.append({"problem": "unlinked", "package": who,
                                    "path": f"{package_path}/{path}", "blob": blob_of[path]})
    return report
