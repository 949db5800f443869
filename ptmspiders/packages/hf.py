"""Hugging Face packages: the tree API's entries -> file specs (pure, tested on fixtures).

``GET /api/models/{id}/tree/{rev}?recursive=true`` lists every file with ``size``, the git
blob ``oid`` and, for LFS files, ``lfs: {oid (SHA-256), size}``; bytes come from
``/{id}/resolve/{rev}/{path}``, which answers LFS files with a redirect to the CDN.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ptmspiders.hub_answers import parse_link_header
from ptmspiders.packages.plan import FileSpec

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def quote_id(repo_id: str) -> str:
    return quote(repo_id, safe="/")


def next_link(response: Any) -> str | None:
    """The ``Link: <...>; rel="next"`` of a paged answer, as given (absolute or relative);
    the caller checks its origin (``ptmspiders.origins.follow``)."""
    link = parse_link_header(response.headers.get("Link")).get("next")
    return link or None


def tree_url(endpoint: str, repo_id: str, revision: str) -> str:
    return (f"{endpoint.rstrip('/')}/api/models/{quote(repo_id, safe='/')}/tree/"
            f"{quote(revision, safe='')}?recursive=true")


def resolve_url(endpoint: str, repo_id: str, revision: str, path: str) -> str:
    return (f"{endpoint.rstrip('/')}/{quote(repo_id, safe='/')}/resolve/"
            f"{quote(revision, safe='')}/{quote(path, safe='/')}")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def tree_files(entries: Any) -> tuple[list[FileSpec], int]:
    """File specs of one tree page, and how many entries were unusable (not an object, no
    path). Directories are skipped; a path is kept as given (checked later, so a refused
    path is recorded rather than lost)."""
    files: list[FileSpec] = []
    bad = 0
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            bad += 1
            continue
        if entry.get("type", "file") != "file":
            continue
        oid = entry.get("oid")
        lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else None
        sha = lfs.get("oid") if lfs else None
        files.append(FileSpec(
            path=entry["path"],
            size=_int(lfs.get("size")) if lfs else _int(entry.get("size")),
            sha256=sha.lower() if isinstance(sha, str) and _HEX64.fullmatch(sha.lower())
            else None,
            git_oid=oid.lower() if isinstance(oid, str) and _HEX40.fullmatch(oid.lower())
            else None,
            lfs=lfs is not None,
        ))
    return files, bad


def split_repo(repo_id: str) -> tuple[str | None, str]:
    owner, _, name = repo_id.rpartition("/")
    return owner or None, name
