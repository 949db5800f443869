"""TF Hub catalogue documents (``assets/docs/`` of ``tensorflow/tfhub.dev``) -> items.

The first line gives type and id (``# Module google/imagenet/.../5``); metadata are
``<!-- key: value -->`` lines, keys may repeat. Module, Placeholder, Lite, Tfjs and Coral are
models; Publisher documents are owners; Collections group models. Deployment variants carry
their ids without the format (``google/imagenet/.../3/default/1`` for both Lite and Tfjs), so
their hub id is the tfhub.dev URL path, which has it:
``google/tfjs-model/imagenet/.../3/default/1``.
"""

from __future__ import annotations

import html
import re
from typing import Any

from ptmspiders.hub_answers import BadResponse
from ptmspiders.hubs import HUBS
from ptmspiders.items import CollectionItem, ModelItem, OwnerItem, make_id
from ptmspiders.normalize import dedupe, normalize_license, papers

HUB = "tfhub"
SITE = HUBS[HUB].home  # model pages: {SITE}/{hub id}
DOCS_PREFIX = "assets/docs/"

MODEL_TYPES = frozenset({"Module", "Placeholder", "Lite", "Tfjs", "Coral"})
# Deployment formats: the URL segment tfhub.dev inserts after the publisher, and the library.
VARIANTS: dict[str, tuple[str, str]] = {
    "Lite": ("lite-model", "tflite"),
    "Tfjs": ("tfjs-model", "tfjs"),
    "Coral": ("coral-model", "tflite"),
}
ALL_TYPES = MODEL_TYPES | {"Publisher", "Collection"}

_HEADER_RE = re.compile(r"^#\s*(\S+)\s+(\S.*?)\s*$")
_META_RE = re.compile(r"^\s*<!--\s*([A-Za-z0-9_.-]+)\s*:\s*(.*?)\s*-->\s*$")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_TFHUB_LINK_RE = re.compile(r"https?://(?:www\.)?tfhub\.dev/([^\s)\]\"'<>#?|]+)")
_PAPER_URL_RE = re.compile(r"https?://(?:www\.)?(?:arxiv\.org|doi\.org|dx\.doi\.org)/[^\s)\]>\"']+")
_LINK_RE = re.compile(r"\[!?\[?([^\]]*)\]?\]\((https?://[^)\s]+)\)")


def clean_id(value: str) -> str:
    """Decode HTML entities (``&zwnj;``) and drop zero-width characters and stray spaces."""
    text = html.unescape(value).translate(_ZERO_WIDTH)
    return "/".join(part.strip() for part in text.strip().strip("/").split("/"))


def is_doc_path(path: str) -> bool:
    return path.startswith(DOCS_PREFIX)


def read_document(body: bytes, path: str) -> tuple[str, str, dict[str, Any], list[str]]:
    """(type, id, metadata, body lines after the header). Repeated keys become lists."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadResponse("not_utf8", path) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise BadResponse("empty_document")
    m = _HEADER_RE.match(lines[first].strip())
    if m is None:
        raise BadResponse("no_header", lines[first][:60])
    kind, doc_id = m.group(1), clean_id(m.group(2))
    if kind not in ALL_TYPES:
        raise BadResponse("unknown_type", kind[:40])
    if not doc_id:
        raise BadResponse("no_id")
    metadata: dict[str, Any] = {}
    for line in lines[first + 1:]:
        mm = _META_RE.match(line)
        if mm is None:
            continue
        key, value = mm.group(1), mm.group(2)
        if key in metadata:
            old = metadata[key]
            metadata[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            metadata[key] = value
    return kind, doc_id, metadata, lines[first + 1:]


def _values(metadata: dict[str, Any], key: str) -> list[str]:
    value = metadata.get(key)
    if value is None:
        return []
    return dedupe(v.strip() for v in (value if isinstance(value, list) else [value]))


def _description(lines: list[str]) -> str | None:
    """The short text between the header and the first metadata line or heading."""
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("<!--", "#")):
            if out:
                break
            continue
        if not stripped:
            if out:
                break
            continue
        out.append(stripped.rstrip("\\").strip())
    return " ".join(out) or None


def model_hub_id(kind: str, doc_id: str) -> str:
    variant = VARIANTS.get(kind)
    if variant is None:
        return doc_id
    publisher, _, rest = doc_id.partition("/")
    return f"{publisher}/{variant[0]}/{rest}" if rest else doc_id


def handle(hub_id: str) -> str:
    """A model's version-less handle (collections often link to the latest version)."""
    head, _, tail = hub_id.rpartition("/")
    return head if tail.isdigit() and head else hub_id


def parse_document(body: bytes, *, path: str, blob_sha: str | None, source_url: str | None,
                   seen_at: str) -> ModelItem | OwnerItem | CollectionItem:
    kind, doc_id, metadata, lines = read_document(body, path)
    crawl = {"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url}
    text = "\n".join(lines)
    base_extra = {"doc_type": kind, "metadata": metadata, "path": path, "blob_sha": blob_sha}
    if kind == "Publisher":
        name = doc_id.split("/")[0]
        fullname = _description(lines)
        links = [url for _, url in _LINK_RE.findall(text) if "gstatic.com" not in url]
        icons = [url for _, url in _LINK_RE.findall(text) if "gstatic.com" in url]
        extra = {**base_extra, "homepage": links[0] if links else None,
                 "icon_url": icons[0] if icons else None}
        return OwnerItem(_id=make_id(HUB, name), hub=HUB, name=name, type="org",
                         fullname=fullname, url=f"{SITE}/{name}", extra=extra,
                         raw={"header": f"{kind} {doc_id}", "metadata": metadata}, crawl=crawl)
    publisher, _, rest = doc_id.partition("/")
    if kind == "Collection":
        members = _members(text, own=doc_id)
        return CollectionItem(
            _id=make_id(HUB, f"{publisher}/collections/{rest}"),
            hub=HUB, hub_id=f"{publisher}/collections/{rest}", name=rest or doc_id,
            owner=publisher or None, url=f"{SITE}/{publisher}/collections/{rest}",
            title=rest.rpartition("/")[0] or rest or None, description=_description(lines),
            members=members, tasks=_values(metadata, "task"),
            datasets=_values(metadata, "dataset"),
            architectures=_values(metadata, "network-architecture"),
            papers=papers(_PAPER_URL_RE.findall(text)),
            extra={**base_extra, "languages": _values(metadata, "language")},
            raw={"header": f"{kind} {doc_id}", "metadata": metadata}, crawl=crawl)
    return _model(kind, doc_id, metadata, lines, text, base_extra, crawl)


def _model(kind: str, doc_id: str, metadata: dict[str, Any], lines: list[str], text: str,
           base_extra: dict[str, Any], crawl: dict[str, Any]) -> ModelItem:
    hub_id = model_hub_id(kind, doc_id)
    publisher, _, rest = doc_id.partition("/")
    parents = [model_hub_id("Module", clean_id(p)) for p in _values(metadata, "parent-model")]
    formats = _values(metadata, "format")
    libraries: list[str] = []
    if kind in VARIANTS:
        libraries.append(VARIANTS[kind][1])
    elif kind == "Module":
        libraries.append("tensorflow")
    licenses = _values(metadata, "license")
    fine_tunable = _values(metadata, "fine-tunable")
    extra = {
        **base_extra,
        "parent_model": parents[0] if parents else None,
        "formats": formats,
        "languages": _values(metadata, "language"),
        "fine_tunable": (fine_tunable[0].lower() == "true") if fine_tunable else None,
        "asset_path": next(iter(_values(metadata, "asset-path")), None),
        "collections": [],
    }
    tags = [f"format:{f}" for f in formats] + [f"language:{lang}" for lang in extra["languages"]]
    return ModelItem(
        _id=make_id(HUB, hub_id),
        hub=HUB,
        hub_id=hub_id,
        name=rest or doc_id,
        owner=publisher or None,
        url=f"{SITE}/{hub_id}",
        owner_url=f"{SITE}/{publisher}" if publisher else None,
        description=_description(lines),
        tasks=_values(metadata, "task"),
        libraries=libraries,
        architectures=_values(metadata, "network-architecture"),
        model_type=kind.lower(),
        tags=tags,
        datasets=_values(metadata, "dataset"),
        base_models=parents,
        papers=dedupe(_PAPER_URL_RE.findall(text)),
        license=normalize_license(licenses[0]) if licenses else None,
        card={"present": True, "has_model_index": False},
        extra=extra,
        raw={"header": f"{kind} {doc_id}", "metadata": metadata},
        crawl=crawl,
    )


def _members(text: str, *, own: str) -> list[str]:
    """Model handles a collection links to (other collections and publishers excluded)."""
    found = []
    for link in _TFHUB_LINK_RE.findall(text):
        target = clean_id(link)
        parts = target.split("/")
        if len(parts) < 2 or parts[1] == "collections" or target == own:
            continue
        found.append(target)
    return dedupe(found)
