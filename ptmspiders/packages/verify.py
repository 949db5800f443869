"""``ptm verify``: re-hash every blob the package records name, and check every package
folder still links to it (long-term storage rots; a copy without ``cp -l`` splits links).

Each blob is read once however many packages share it. Problems:

- ``mismatch``: the blob's SHA-256 or size is not what the record says (exit 1);
- ``missing``: a recorded blob is gone (exit 1);
- ``unlinked``: a package file is missing or is no longer the blob's hard link (exit 1;
  the blob itself may be fine: the crawl's next run links it again).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptmspiders.packages.blobs import hash_file
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


def verify(dest: Path, packages: Iterable[dict[str, Any]],
           progress: Callable[[int], None] = lambda n: None) -> VerifyReport:
    report = VerifyReport()
    expected: dict[str, tuple[str | None, int | None, str]] = {}  # blob -> (sha, size, who)
    links: list[tuple[str, Path, str]] = []  # (package id, link path, blob)
    for doc in packages:
        report.packages += 1
        root = dest / str(doc.get("path") or "")
        for f in doc.get("files") or []:
            if f.get("status") not in ("downloaded", "present") or not f.get("blob"):
                continue
            blob = str(f["blob"])
            expected.setdefault(blob, (f.get("sha256"), f.get("size"), str(doc.get("_id"))))
            clean = safe_relpath(f.get("path"))
            if doc.get("path") and clean is not None:
                links.append((str(doc.get("_id")), root / clean, blob))
    for blob, (sha, size, who) in sorted(expected.items()):
        report.blobs += 1
        path = dest / blob
        if safe_relpath(blob) is None or not path.is_file():
            report.problems.append({"problem": "missing", "blob": blob, "package": who})
            continue
        actual, _, actual_size = hash_file(path)
        report.bytes += actual_size
        progress(actual_size)
        if actual != sha or (size is not None and actual_size != size):
            report.problems.append({"problem": "mismatch", "blob": blob, "package": who,
                                    "expected": sha, "actual": actual, "size": actual_size})
        else:
            report.ok += 1
    for who, link, blob in links:
        try:
            same = os.path.samefile(link, dest / blob)
        except OSError:
            same = False
        if not same and (dest / blob).is_file():
            report.problems.append({"problem": "unlinked", "package": who,
                                    "path": str(link.relative_to(dest)), "blob": blob})
    return report
