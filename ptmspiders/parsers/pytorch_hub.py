"""PyTorch Hub catalogue entries (``pytorch/hub``, one Markdown file per model) -> items.

Each file is YAML front matter plus a body whose ``torch.hub.load('owner/repo[:ref]',
'entrypoint', ...)`` snippets name what users actually load: the repository, the pinned ref and
the entrypoints. The files are hand-written: CRLF line endings, curly quotes and trailing spaces
occur, and a few front matters are not valid YAML.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import yaml

from ptmspiders.hub_answers import BadResponse
from ptmspiders.hubs import HUBS
from ptmspiders.items import ModelItem, make_id
from ptmspiders.normalize import as_list, dedupe, github_repo
from ptmspiders.parsers.safe_yaml import (
    error_line,
    load_yaml,
    split_front_matter,
    starts_front_matter,
)

HUB = "pytorch_hub"
SITE = HUBS[HUB].home  # model pages: {SITE}/{entry}/

# Markdown files at the repository root that are not catalogue entries.
NOT_ENTRIES = frozenset({
    "readme.md", "contributing.md", "code_of_conduct.md", "license.md", "security.md",
    "pull_request_template.md", "template.md", "changelog.md",
})

_CURLY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_KEY_LINE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_-]*)\s*:\s?(.*)$")
_LOAD_RE = re.compile(
    r"""torch\.hub\.load\(\s*(?:repo_or_dir\s*=\s*)?(['"])(?P<repo>[^'"\s]+)\1\s*,\s*
        (?:model\s*=\s*)?(['"])(?P<entry>[^'"\s]+)\3""",
    re.VERBOSE,
)
_PAPER_URL_RE = re.compile(r"https?://(?:www\.)?(?:arxiv\.org|doi\.org|dx\.doi\.org)/[^\s)\]>\"']+")


def is_entry_path(path: str) -> bool:
    """Catalogue entries are the Markdown files at the repository root."""
    return "/" not in path and path.lower().endswith(".md") and path.lower() not in NOT_ENTRIES


def parse_front_matter(text: str) -> dict[str, Any]:
    """YAML first; when YAML refuses (``summary: a: b``), a plain ``key: value`` reading, as
    long as every line has that shape. Otherwise the front matter is malformed. YAML beyond
    the loader's bounds (:mod:`ptmspiders.parsers.safe_yaml`) raises its
    :class:`~ptmspiders.parsers.safe_yaml.YamlRefused`, never read line by line."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        data = _lenient(text)
        if data is None:
            raise BadResponse("bad_front_matter", error_line(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadResponse("bad_front_matter", f"front matter is a {type(data).__name__}")
    return {str(k): _clean(v) for k, v in data.items()}


def _lenient(text: str) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for line in text.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _KEY_LINE.match(line)
        if m is None:
            return None
        value: Any = m.group(2).strip()
        if value.startswith("[") and value.endswith("]"):
            value = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
        out[m.group(1)] = value
    return out or None


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().strip('"').strip()
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def hub_loads(body: str) -> list[dict[str, str | None]]:
    """Each distinct ``torch.hub.load`` call: repository, pinned ref (or None), entrypoint."""
    found: list[dict[str, str | None]] = []
    for m in _LOAD_RE.finditer(body):
        repo, _, ref = m.group("repo").partition(":")
        if github_repo(repo, allow_bare=True) is None:
            continue  # a local directory or a placeholder, not a GitHub repository
        call = {"repo": repo, "ref": ref or None, "entrypoint": m.group("entry")}
        if call not in found:
            found.append(call)
    return found


def parse_entry(body: bytes, *, path: str, blob_sha: str | None, source_url: str | None,
                seen_at: str) -> ModelItem:
    """One catalogue file -> :class:`ModelItem` (``_id`` = ``pytorch_hub:<file stem>``)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadResponse("not_utf8", path) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CURLY)
    front_text, content = split_front_matter(text)
    if front_text is None:
        if starts_front_matter(text):
            raise BadResponse("bad_front_matter", "no closing ---")
        raise BadResponse("no_front_matter", "the file does not start with ---")
    front = parse_front_matter(front_text)
    stem = PurePosixPath(path).stem
    loads = hub_loads(content)

    github_id = front.get("github-id")
    github_link = front.get("github-link")
    repos = [v for v in (github_id, github_link) if isinstance(v, str)]
    repos += [str(call["repo"]) for call in loads]
    owner = github_repo(github_id, allow_bare=True) or github_repo(github_link)
    owner_name = owner.split("/")[0] if owner else None
    refs = dedupe(call["ref"] for call in loads)
    title = front.get("title")
    summary = front.get("summary")
    tags = [str(t) for t in as_list(front.get("tags")) if isinstance(t, str | int) and str(t)]

    extra: dict[str, Any] = {
        "entrypoints": dedupe(call["entrypoint"] for call in loads),
        "hub_loads": loads,
        "pinned_ref": refs[0] if refs else None,
        "pinned_refs": refs,
        "path": path,
        "blob_sha": blob_sha,
    }
    for key, out in (("author", "author"), ("category", "category"),
                     ("accelerator", "accelerator"), ("demo-model-link", "demo_url"),
                     ("github-link", "github_link"), ("github-id", "github_id")):
        if front.get(key) not in (None, ""):
            extra[out] = front[key]

    return ModelItem(
        _id=make_id(HUB, stem),
        hub=HUB,
        hub_id=stem,
        name=stem,
        title=str(title) if title not in (None, "") else None,
        description=str(summary) if summary not in (None, "") else None,
        owner=owner_name,
        url=f"{SITE}/{stem}/",
        owner_url=f"https://github.com/{owner_name}" if owner_name else None,
        libraries=["pytorch"],
        tags=tags,
        papers=dedupe(_PAPER_URL_RE.findall(content)),
        github_repos=dedupe(repos),
        card={"present": True, "has_model_index": False},
        extra=extra,
        raw=front,
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url},
    )
