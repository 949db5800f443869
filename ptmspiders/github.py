"""GitHub-hosted catalogues: the git-trees listing, raw file URLs and git blob shas.

Four hubs (PyTorch Hub, ONNX zoo, TF Hub, modelhub) are catalogue files in a GitHub repository.
One ``git/trees`` call lists every file with its blob sha (one REST call of the 60/hour
anonymous quota); contents come from the raw host, which the REST quota does not count. The blob
sha lets an incremental crawl skip files it already stored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ptmspiders.hub_answers import BadResponse, load_json

_REPO_RE = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9_.-]+)$")


@dataclass(frozen=True, slots=True)
class RepoRef:
    """A repository at a ref (branch, tag or commit)."""

    owner: str
    repo: str
    ref: str

    @classmethod
    def parse(cls, repo: str, ref: str) -> RepoRef:
        """``owner/repo`` plus a ref, validated: a bad setting fails at start, not mid-crawl."""
        m = _REPO_RE.match(str(repo).strip())
        if m is None:
            raise ValueError(f"expected owner/repo, got {repo!r}")
        ref = str(ref).strip()
        if not ref or any(c in ref for c in " ?#\\") or ref.startswith("/"):
            raise ValueError(f"invalid git ref {ref!r}")
        return cls(m.group(1), m.group(2), ref)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    def html_url(self, path: str = "", kind: str = "blob") -> str:
        base = f"https://github.com/{self.owner}/{self.repo}"
        return f"{base}/{kind}/{self.ref}/{quote(path)}" if path else base


def trees_url(api: str, repo: RepoRef, *, recursive: bool = True) -> str:
    """``GET /repos/{owner}/{repo}/git/trees/{ref}``: every path of the ref in one call."""
    url = f"{api.rstrip('/')}/repos/{repo.owner}/{repo.repo}/git/trees/{quote(repo.ref, safe='')}"
    return url + "?recursive=1" if recursive else url


def raw_url(raw: str, repo: RepoRef, path: str) -> str:
    """A file's contents on the raw host (not counted against the REST quota)."""
    return f"{raw.rstrip('/')}/{repo.owner}/{repo.repo}/{quote(repo.ref, safe='')}/{quote(path)}"


def git_blob_sha(content: bytes) -> str:
    """The sha git gives a file's content: what ``git/trees`` lists as the blob's ``sha``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True, slots=True)
class TreeEntry:
    path: str
    type: str  # blob, tree or commit (a submodule)
    sha: str
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Tree:
    sha: str
    entries: list[TreeEntry]
    truncated: bool

    def blobs(self) -> list[TreeEntry]:
        return [e for e in self.entries if e.type == "blob"]


def parse_tree(body: bytes) -> Tree:
    """A ``git/trees`` answer. ``truncated`` is true when GitHub cut the listing (100,000
    entries or 7 MB): the caller must then treat the catalogue as incomplete."""
    data = load_json(body, dict)
    tree = data.get("tree")
    if not isinstance(tree, list) or not isinstance(data.get("sha"), str):
        raise BadResponse("wrong_shape", "git tree without sha/tree")
    entries = []
    for raw in tree:
        entry = _entry(raw)
        if entry is not None:
            entries.append(entry)
    return Tree(sha=data["sha"], entries=entries, truncated=data.get("truncated") is True)


def _entry(raw: Any) -> TreeEntry | None:
    if not isinstance(raw, dict):
        return None
    path, kind, sha = raw.get("path"), raw.get("type"), raw.get("sha")
    if not (isinstance(path, str) and isinstance(kind, str) and isinstance(sha, str)):
        return None
    size = raw.get("size")
    return TreeEntry(path=path, type=kind, sha=sha,
                     size=size if isinstance(size, int) and not isinstance(size, bool) else None)
