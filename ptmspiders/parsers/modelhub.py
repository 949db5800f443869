"""modelhub.ai: ``models.json`` of ``modelhub-ai/modelhub`` plus each model's own
``contrib_src/model/config.json`` (meta, publication, model description) -> items.

The index alone already names every model, so a model whose config is missing or broken is
still one document, with ``extra.config_error`` saying why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ptmspiders.github import RepoRef
from ptmspiders.hub_answers import load_json
from ptmspiders.items import ModelItem, make_id
from ptmspiders.normalize import dedupe, github_repo

HUB = "modelhub"
INDEX = "models.json"
CONFIG_PATH = "contrib_src/model/config.json"
# Backends that are not libraries a model runs with.
NOT_LIBRARIES = frozenset({"colab"})

_DOI_RE = re.compile(r"\b(10\.\d{4,9}/[^\s,;}\"']+)")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    repo: RepoRef
    raw: dict[str, Any]


def parse_index(body: bytes) -> tuple[list[IndexEntry], list[tuple[str, str]]]:
    """Entries of ``models.json`` and the unusable ones (label, reason)."""
    data = load_json(body, list)
    entries: list[IndexEntry] = []
    rejects: list[tuple[str, str]] = []
    names: set[str] = set()
    for index, raw in enumerate(data):
        label = f"entry {index}"
        if not isinstance(raw, dict):
            rejects.append((label, "entry_not_object"))
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            rejects.append((label, "entry_without_name"))
            continue
        label = f"entry {index} ({name})"
        repo_name = github_repo(raw.get("github"))
        if repo_name is None:
            rejects.append((label, "entry_without_github"))
            continue
        branch = raw.get("github_branch")
        owner, repo = _case_preserving(raw["github"], repo_name)
        try:
            ref = RepoRef.parse(f"{owner}/{repo}",
                                branch if isinstance(branch, str) and branch else "master")
        except ValueError:
            rejects.append((label, "bad_github_branch"))
            continue
        if name in names:
            rejects.append((label, "duplicate_name"))
            continue
        names.add(name)
        entries.append(IndexEntry(name=name.strip(), repo=ref, raw=raw))
    return entries, rejects


def _case_preserving(url: str, normalised: str) -> tuple[str, str]:
    """Raw URLs are case-sensitive on the repository name: keep the index's spelling."""
    owner, repo = normalised.split("/")
    tail = url.rstrip("/").removesuffix(".git").split("/")
    if len(tail) >= 2 and tail[-2].lower() == owner and tail[-1].lower() == repo:
        return tail[-2], tail[-1]
    return owner, repo


def parse_config(body: bytes) -> dict[str, Any]:
    """A ``config.json``; BadResponse (``invalid_json`` ...) when unusable."""
    data: dict[str, Any] = load_json(body, dict)
    return data


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _task(value: str | None) -> str | None:
    return re.sub(r"\s+", "-", value.strip().lower()) if value else None


def parse_model(entry: IndexEntry, config: dict[str, Any] | None, *, config_error: str | None,
                index_path: str, blob_sha: str | None, source_url: str | None,
                config_url: str | None, seen_at: str) -> ModelItem:
    """One model from its index entry and (when it could be read) its config."""
    cfg = config or {}
    meta, pub, model = (_section(cfg, key) for key in ("meta", "publication", "model"))
    backends = [b for b in entry.raw.get("backend") or [] if isinstance(b, str)]

    paper_refs: list[str] = []
    for key in ("url", "source", "google_scholar"):
        if _text(pub.get(key)):
            paper_refs.append(pub[key])
    for text in (pub.get("bibtex"), pub.get("url")):
        if isinstance(text, str):
            paper_refs += [f"doi:{d.rstrip('.')}" for d in _DOI_RE.findall(text)]

    architecture = _text(model.get("architecture"))
    task_extended = _text(meta.get("task_extended")) or _text(entry.raw.get("task_extended"))
    extra: dict[str, Any] = {
        "backend": backends,
        "task_extended": task_extended,
        "application_area": _text(meta.get("application_area")),
        "data_type": _text(meta.get("data_type")),
        "data_source": _text(meta.get("data_source")),
        "learning_type": _text(model.get("learning_type")),
        "provenance": _text(model.get("provenance")),
        "format": _text(model.get("format")),
        "io": model.get("io") if isinstance(model.get("io"), dict) else None,
        "publication": {k: pub[k] for k in ("title", "source", "year", "authors", "url")
                        if pub.get(k) not in (None, "")} or None,
        "config_path": f"{entry.repo.full_name}/{entry.repo.ref}/{CONFIG_PATH}",
        "config_url": config_url,
        "config_error": config_error,
        "branch": entry.repo.ref,
        "gpu": entry.raw.get("gpu"),
        "path": index_path,
        "blob_sha": blob_sha,
    }
    raw: dict[str, Any] = {"index": entry.raw}
    if config is not None:
        raw["config"] = config
    uid = entry.raw.get("id")
    return ModelItem(
        _id=make_id(HUB, entry.name),
        hub=HUB,
        hub_id=entry.name,
        hub_uid=uid if isinstance(uid, str) else None,
        name=entry.name,
        title=_text(meta.get("name")),
        description=_text(model.get("description")) or task_extended,
        owner=entry.repo.owner.lower(),
        url=entry.repo.html_url(),
        owner_url=f"https://github.com/{entry.repo.owner}",
        tasks=dedupe([_task(_text(meta.get("task")))]),
        libraries=[b for b in backends if b.lower() not in NOT_LIBRARIES],
        architectures=[architecture] if architecture else [],
        papers=dedupe(paper_refs),
        github_repos=[entry.repo.full_name],
        card={"present": config is not None, "has_model_index": False},
        extra=extra,
        raw=raw,
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url},
    )
