"""Kaggle Models list API bodies -> unified items.

``GET {KAGGLE_API_URL}/models/list`` answers ``{models[], nextPageToken, totalResults}``; every
model carries its instances (one per framework variation) with license, version and whether it is
fine-tunable, so one list call per page gives everything the schema needs. The API omits fields
that hold their default value (proto3 JSON), so every key is read defensively.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from ptmspiders.hub_answers import BadResponse, UndecodableEntry, load_json
from ptmspiders.items import ModelItem, make_id
from ptmspiders.normalize import as_int, as_list, dedupe, iso_utc, normalize_license

HUB = "kaggle"
MAX_PAGE_SIZE = 100

# ``-a sort_by`` takes the names of ``kaggle models list --sort-by``; the API wants the
# ListModelsOrderBy enum as kagglesdk serialises it (prefix dropped, lower snake case).
SORT_BY: dict[str, str] = {
    "hotness": "hotness",
    "downloadCount": "download_count",
    "voteCount": "vote_count",
    "notebookCount": "notebook_count",
    "createTime": "create_time",
    "publishTime": "publish_time",
    "updateTime": "update_time",
}

# ModelFramework values (camelCase on the wire; kagglesdk also accepts the enum names) mapped to
# the library names other hubs use. ``api`` and ``other`` name no library.
FRAMEWORKS: dict[str, str | None] = {
    "tensorflow1": "tensorflow",
    "tensorflow2": "tensorflow",
    "tflite": "tflite",
    "tfjs": "tfjs",
    "pytorch": "pytorch",
    "jax": "jax",
    "flax": "flax",
    "pax": "pax",
    "maxtext": "maxtext",
    "gemmacpp": "gemma.cpp",
    "ggml": "ggml",
    "gguf": "gguf",
    "coral": "coral",
    "scikitlearn": "sklearn",
    "mxnet": "mxnet",
    "onnx": "onnx",
    "keras": "keras",
    "transformers": "transformers",
    "tensorrtllm": "tensorrt-llm",
    "triton": "triton",
    "api": None,
    "other": None,
    "unspecified": None,
}

_URL_RE = re.compile(r"https?://[^\s<>()\[\]\"'`]+", re.IGNORECASE)


def site_url(api_url: str) -> str:
    """``https://www.kaggle.com`` from ``https://www.kaggle.com/api/v1`` (for page URLs)."""
    base = api_url.rstrip("/")
    for suffix in ("/api/v1", "/api"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def list_url(
    api_url: str,
    *,
    page_size: int,
    page_token: str | None = None,
    search: str | None = None,
    sort_by: str | None = None,
    owner: str | None = None,
) -> str:
    """One ``/models/list`` page; the parameters are those the official client sends."""
    params: list[tuple[str, str]] = []
    if search:
        params.append(("search", search))
    if sort_by:
        params.append(("sortBy", SORT_BY.get(sort_by, sort_by)))
    if owner:
        params.append(("owner", owner))
    params.append(("pageSize", str(min(max(page_size, 1), MAX_PAGE_SIZE))))
    if page_token:
        params.append(("pageToken", page_token))
    return f"{api_url.rstrip('/')}/models/list?{urlencode(params)}"


def fingerprint(entry: Any) -> str:
    """SHA-1 of the entry's canonical JSON: equal exactly when the hub's answer is unchanged."""
    canonical = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha1(canonical).hexdigest()


def framework_library(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    key = value.strip().lower().replace("_", "")
    if key.startswith("modelframework"):
        key = key[len("modelframework"):]
    if key in FRAMEWORKS:
        return FRAMEWORKS[key]
    return key or None


def parse_list_page(
    body: bytes, *, api_url: str, source_url: str | None, seen_at: str
) -> tuple[list[ModelItem], list[tuple[Any, str]], str | None, int | None]:
    """Items of one page, the entries that could not be read (entry, reason), the next page
    token (``None`` on the last page) and ``totalResults``.

    Raises :class:`BadResponse` when the page as a whole is unusable.
    """
    data = load_json(body, dict)
    code = data.get("code")
    if isinstance(code, int) and code >= 400 and "models" not in data:
        # The API's error envelope, sometimes with a 200 status (kagglesdk checks it too).
        raise BadResponse("api_error", f"{code} {data.get('message', '')}".strip())
    models = data.get("models", [])
    if not isinstance(models, list):
        raise BadResponse("wrong_shape", "models is not a list")
    items: list[ModelItem] = []
    rejects: list[tuple[Any, str]] = []
    for entry in models:
        try:
            items.append(parse_model(entry, api_url=api_url, source_url=source_url,
                                     seen_at=seen_at))
        except BadResponse as exc:
            rejects.append((entry, exc.reason))
    token = data.get("nextPageToken")
    next_token = token if isinstance(token, str) and token.strip() else None
    return items, rejects, next_token, as_int(data.get("totalResults"))


def parse_model(entry: Any, *, api_url: str, source_url: str | None, seen_at: str) -> ModelItem:
    """One ``ApiModel`` with its instances -> :class:`ModelItem`."""
    if not isinstance(entry, dict):
        # An UndecodableEntry: nested too deep to decode; only it is lost.
        raise BadResponse(entry.reason if isinstance(entry, UndecodableEntry)
                          else "entry_not_object")
    author = _str(entry.get("author"))
    slug = _str(entry.get("slug"))
    ref = _str(entry.get("ref")) or (f"{author}/{slug}" if author and slug else None)
    if not ref or "/" not in ref:
        raise BadResponse("entry_without_ref")
    owner_part, _, name = ref.partition("/")
    owner = author or owner_part
    site = site_url(api_url)

    instances = [i for i in as_list(entry.get("instances")) if isinstance(i, dict)]
    summaries = [_instance(i) for i in instances]
    tag_objects = [t for t in as_list(entry.get("tags")) if isinstance(t, dict | str)]
    tags = dedupe(_tag_name(t) for t in tag_objects)
    # Task tags in the Hub's spelling (``Text Generation`` -> ``text-generation``), so one
    # query on ``tasks`` spans hubs; ``tags`` keep Kaggle's names.
    tasks = dedupe(_task_id(_tag_name(t)) for t in tag_objects if _is_task(t))

    licenses = dedupe(s["license"] for s in summaries)
    description = _str(entry.get("description"))
    subtitle = _str(entry.get("subtitle"))
    text = "\n".join(x for x in (subtitle, description,
                                 *(_str(i.get("overview")) for i in instances)) if x)
    urls = list(_urls(text))

    extra: dict[str, Any] = {
        "instances": summaries,
        "list_fingerprint": fingerprint(entry),
    }
    if subtitle:
        extra["subtitle"] = subtitle
    provenance = _str(entry.get("provenanceSources"))
    if provenance:
        extra["provenance_sources"] = provenance

    return ModelItem(
        _id=make_id(HUB, ref),
        hub=HUB,
        hub_id=ref,
        hub_uid=str(entry["id"]) if as_int(entry.get("id")) is not None else None,
        name=slug or name,
        owner=owner,
        url=_str(entry.get("url")) or f"{site}/models/{ref}",
        owner_url=f"{site}/{owner}" if owner else None,
        title=_str(entry.get("title")),
        description=description or subtitle,
        tasks=tasks,
        libraries=dedupe(framework_library(i.get("framework")) for i in instances),
        tags=tags,
        datasets=dedupe(d for s in summaries for d in s["training_data"]),
        base_models=dedupe(s["base_model"] for s in summaries),
        papers=[u for u in urls if "arxiv.org/" in u or "doi.org/" in u],
        github_repos=[u for u in urls if "github.com/" in u],
        license=normalize_license(licenses) if licenses else None,
        created_at=iso_utc(entry.get("publishTime")),
        private=entry.get("isPrivate") if isinstance(entry.get("isPrivate"), bool) else None,
        files=[],
        extra=extra,
        raw=entry,
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url},
    )


def _instance(inst: dict[str, Any]) -> dict[str, Any]:
    """What studies compare across variations; the full instance stays in ``raw``."""
    base_info = inst.get("baseModelInstanceInformation")
    base_model = None
    if isinstance(base_info, dict):
        owner_info = base_info.get("owner")
        base_owner = _str(owner_info.get("slug")) if isinstance(owner_info, dict) else None
        base_slug = _str(base_info.get("modelSlug"))
        if base_owner and base_slug:
            base_model = f"{base_owner}/{base_slug}"
    return {
        "id": as_int(inst.get("id")),
        "slug": _str(inst.get("slug")),
        "framework": _str(inst.get("framework")),
        "library": framework_library(inst.get("framework")),
        "fine_tunable": inst.get("fineTunable") if isinstance(inst.get("fineTunable"), bool)
        else None,
        "license": _str(inst.get("licenseName")),
        "version_number": as_int(inst.get("versionNumber")),
        "version_id": as_int(inst.get("versionId")),
        "instance_type": _str(inst.get("modelInstanceType")),
        "url": _str(inst.get("url")),
        "download_url": _str(inst.get("downloadUrl")),
        "training_data": [d for d in as_list(inst.get("trainingData")) if isinstance(d, str)],
        "base_model": base_model,
        "external_base_model_url": _str(inst.get("externalBaseModelUrl")),
    }


def _tag_name(tag: dict[str, Any] | str) -> str | None:
    if isinstance(tag, str):
        return tag.strip() or None
    return _str(tag.get("name")) or _str(tag.get("ref"))


def _is_task(tag: dict[str, Any] | str) -> bool:
    """Kaggle files model tasks under a ``task`` branch of its tag tree."""
    if isinstance(tag, str):
        return False
    path = _str(tag.get("fullPath")) or ""
    return path.lower().startswith("task")


def _task_id(name: str | None) -> str | None:
    if not name:
        return None
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or None


def _urls(text: str) -> Iterator[str]:
    for m in _URL_RE.finditer(text):
        yield m.group(0).rstrip(".,;:!?")


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
