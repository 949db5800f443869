"""A package's files as the hub describes them, and their records once handled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class FileSpec:
    """One file the hub lists. ``path`` is the hub's, unchecked; ``url`` where to fetch it
    (for Hugging Face: the resolve URL, asked through Scrapy first)."""

    path: str
    size: int | None
    sha256: str | None = None  # LFS oid or manifest hash
    git_oid: str | None = None  # git blob id (all Hugging Face files)
    lfs: bool = False
    url: str | None = None

    def record(self, status: str, *, reason: str | None = None, sha256: str | None = None,
               blob: str | None = None, size: int | None = None,
               scan: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": size if size is not None else self.size,
            "sha256": sha256 or self.sha256,
            "blob": blob,
            "lfs": self.lfs,
            "verified": status in ("downloaded", "present"),
            "status": status,
            "reason": reason,
            "scan": scan,
        }
