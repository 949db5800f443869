"""ONNX Model Zoo packages: the manifest entry's ``model_path`` file (Git LFS, fetched from
GitHub's media host) and, when the manifest names one, the ``model_with_data_path`` archive,
each checked against the manifest's ``model_sha``/``model_bytes`` as the stored model records
them (``files`` of the model document); and the model folder's README, checked against the
git blob id GitHub's tree lists for it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ptmspiders.packages.plan import FileSpec

_HEX64 = re.compile(r"[0-9a-f]{64}")
DEFAULT_MEDIA_PREFIX = "https://media.githubusercontent.com/media/"


def readme_path(model_path: str) -> str:
    """The README of a model's folder: ``<dir>/model/<file>.onnx`` -> ``<dir>/README.md``."""
    parts = model_path.split("/")[:-1]
    if parts and parts[-1] == "model":
        parts = parts[:-1]
    return "/".join([*parts, "README.md"])


@dataclass
class OnnxPlan:
    repo: str
    owner: str
    name: str
    revision: str
    source_url: str
    files: list[FileSpec]


def package_plan(model: dict[str, Any], media_url: str) -> OnnxPlan | None:
    """The package of one stored ONNX Zoo model, or ``None`` when the record lacks the facts
    (repository, ref, hashes) a verified download needs."""
    extra = model.get("extra") if isinstance(model.get("extra"), dict) else {}
    repos = model.get("github_repos") or []
    hub_id = model.get("hub_id")
    download = extra.get("download_url") if isinstance(extra, dict) else None
    if not repos or not isinstance(hub_id, str) or not isinstance(download, str):
        return None
    repo = str(repos[0])
    # The stored download URL is <media>/<owner>/<repo>/<ref>/<model_path>: the ref is the
    # catalogue's recorded revision.
    _, sep, tail = download.partition(f"/{repo}/")
    if not sep or not tail.endswith(f"/{hub_id}"):
        return None
    revision = model.get("latest_commit_sha") or tail[: -len(hub_id) - 1]
    if not revision or "/" in revision:
        return None
    owner = repo.split("/", 1)[0]
    stem = hub_id.rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".onnx"):
        stem = stem.removesuffix(suffix)
    files: list[FileSpec] = []
    for f in model.get("files") or []:
        if not isinstance(f, dict) or not isinstance(f.get("path"), str):
            continue
        sha = f.get("sha256")
        size = f.get("size")
        files.append(FileSpec(
            path=f["path"], size=size if isinstance(size, int) and size >= 0 else None,
            sha256=sha if isinstance(sha, str) and _HEX64.fullmatch(sha) else None, lfs=True,
            url=f"{media_url}/{repo}/{quote(revision, safe='')}/{quote(f['path'], safe='/')}"))
    if not files:
        return None
    return OnnxPlan(repo=repo, owner=owner, name=stem or hub_id, revision=revision,
                    source_url=f"https://github.com/{repo}/tree/{revision}", files=files)
