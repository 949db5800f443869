"""Hugging Face Hub API bodies -> unified items.

The list call with ``expand`` returns, per model, only ``_id``, ``id`` and the expanded
properties; every other key may be missing, so each is read defensively.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from ptmspiders.hub_answers import BadResponse, UndecodableEntry, load_json
from ptmspiders.items import ModelItem, OwnerItem, make_id
from ptmspiders.normalize import as_int, as_list, dedupe, iso_utc, normalize_license

HUB = "huggingface"
MAX_PAGE_SIZE = 1000

# The Hub's placeholder for "created before the Hub recorded dates" (HUBS.md): unknown.
PLACEHOLDER_CREATED_AT = frozenset({"2022-03-02T23:29:04.000Z", "2022-03-02T23:29:05.000Z"})

# Everything the schema and the studies read; ``spaces`` (long lists) is left out by default.
DEFAULT_EXPAND: tuple[str, ...] = (
    "author", "baseModels", "cardData", "childrenModelCount", "config", "createdAt",
    "disabled", "downloads", "downloadsAllTime", "gated", "gguf", "inference", "lastModified",
    "library_name", "likes", "model-index", "pipeline_tag", "private", "safetensors", "sha",
    "siblings", "tags", "transformersInfo", "trendingScore", "usedStorage",
)
EXPANDABLE = frozenset(DEFAULT_EXPAND) | {"evalResults", "mask_token", "spaces", "widgetData"}
SORT_KEYS = frozenset({
    "downloads", "likes", "lastModified", "createdAt", "trendingScore", "id", "downloadsAllTime",
})

# Library and framework tags of the Hub that name software a model runs with.
LIBRARY_TAGS = frozenset({
    "transformers", "pytorch", "tf", "tensorflow", "jax", "flax", "onnx", "keras", "tflite",
    "coreml", "rust", "diffusers", "sentence-transformers", "timm", "spacy", "fastai",
    "adapter-transformers", "peft", "gguf", "openvino", "speechbrain", "espnet",
    "stable-baselines3", "ml-agents", "paddlepaddle", "paddlenlp", "nemo", "mlx", "joblib",
    "sklearn", "scikit-learn", "fasttext", "flair", "allennlp", "asteroid", "pyannote-audio",
    "span-marker", "setfit", "transformers.js", "open_clip", "unity-sentis", "llamafile",
    "tensorboard", "sample-factory", "fairseq", "bertopic", "mlc-llm", "ctranslate2",
    "gliner", "keras-hub", "tf-keras", "pythae", "lerobot", "ultralytics", "yolov5",
})

_BASE_MODEL_RELATIONS = ("adapter:", "finetune:", "merge:", "quantized:")


def list_url(
    endpoint: str,
    *,
    limit: int = MAX_PAGE_SIZE,
    author: str | None = None,
    search: str | None = None,
    filters: Sequence[str] = (),
    sort: str | None = None,
    expand: Sequence[str] = DEFAULT_EXPAND,
) -> str:
    """The first ``GET /api/models`` page; later pages come from the ``Link`` header."""
    params: list[tuple[str, str]] = [("limit", str(min(max(limit, 1), MAX_PAGE_SIZE)))]
    if search:
        params.append(("search", search))
    if author:
        params.append(("author", author))
    params.extend(("filter", f) for f in filters)
    if sort:
        params.extend([("sort", sort), ("direction", "-1")])
    params.extend(("expand", e) for e in expand)
    return f"{endpoint.rstrip('/')}/api/models?{urlencode(params)}"


def detail_url(endpoint: str, repo_id: str, expand: Sequence[str] = DEFAULT_EXPAND) -> str:
    query = urlencode([("expand", e) for e in expand])
    return f"{endpoint.rstrip('/')}/api/models/{quote(repo_id, safe='/')}?{query}"


def owner_url(endpoint: str, name: str, kind: str = "org") -> str:
    path = "organizations" if kind == "org" else "users"
    return f"{endpoint.rstrip('/')}/api/{path}/{quote(name, safe='')}/overview"


def parse_models_page(
    body: bytes, *, endpoint: str, source_url: str | None, seen_at: str
) -> tuple[list[ModelItem], list[tuple[Any, str]]]:
    """Items of one list page, and the entries that could not be read (entry, reason).

    Raises :class:`BadResponse` when the page as a whole is unusable.
    """
    data = load_json(body, list)
    items: list[ModelItem] = []
    rejects: list[tuple[Any, str]] = []
    for entry in data:
        try:
            items.append(parse_model(entry, endpoint=endpoint, source_url=source_url,
                                     seen_at=seen_at))
        except BadResponse as exc:
            rejects.append((entry, exc.reason))
    return items, rejects


def parse_model_detail(
    body: bytes, *, endpoint: str, source_url: str | None, seen_at: str
) -> ModelItem:
    return parse_model(load_json(body, dict), endpoint=endpoint, source_url=source_url,
                       seen_at=seen_at)


def parse_model(
    entry: Any, *, endpoint: str, source_url: str | None, seen_at: str
) -> ModelItem:
    """One ``/api/models`` entry (list or detail shape) -> :class:`ModelItem`."""
    if not isinstance(entry, dict):
        # An UndecodableEntry: nested too deep to decode; only it is lost.
        raise BadResponse(entry.reason if isinstance(entry, UndecodableEntry)
                          else "entry_not_object")
    repo_id = entry.get("id") or entry.get("modelId")
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise BadResponse("entry_without_id")
    base = endpoint.rstrip("/")
    owner_part, _, name = repo_id.rpartition("/")
    author = entry.get("author")
    owner = author if isinstance(author, str) and author else (owner_part or None)

    tags = [t for t in as_list(entry.get("tags")) if isinstance(t, str)]
    # One string of the tags to test, in C, whether a prefixed tag is there at all: a model
    # has a dozen tags, and each per-tag pass in Python below cost about 2 us a model.
    joined = "\n".join(tags)
    card_data = entry.get("cardData")
    card = card_data if isinstance(card_data, dict) else {}
    config_data = entry.get("config")
    config: dict[str, Any] = config_data if isinstance(config_data, dict) else {}

    siblings = entry.get("siblings")
    files: list[dict[str, Any]] = []
    card_present: bool | None = None
    if isinstance(siblings, list):
        files, card_present = _files(siblings)
    model_index = entry.get("model-index")
    has_model_index = bool(model_index) or bool(card.get("model-index"))

    pipeline_tag = entry.get("pipeline_tag")
    tasks = dedupe([pipeline_tag if isinstance(pipeline_tag, str) else None,
                    *(t for t in as_list(card.get("pipeline_tag")) if isinstance(t, str))])
    library_name = entry.get("library_name")
    libraries = dedupe([
        library_name if isinstance(library_name, str) else None,
        *filter(LIBRARY_TAGS.__contains__, tags),
    ])

    license_value: Any = card.get("license")
    if license_value in (None, "other") and card.get("license_name"):
        license_value = card.get("license_name")
    if license_value is None and "license:" in joined:
        license_value = next((t[8:] for t in tags if t.startswith("license:")), None)

    gated = entry.get("gated")
    created = iso_utc(entry.get("createdAt"))
    if created in PLACEHOLDER_CREATED_AT:
        created = None
    safetensors = entry.get("safetensors")
    gguf = entry.get("gguf")
    parameters = None
    if isinstance(safetensors, dict):
        parameters = as_int(safetensors.get("total"))
    if parameters is None and isinstance(gguf, dict):
        parameters = as_int(gguf.get("total"))

    extra: dict[str, Any] = {}
    for key, out in (("childrenModelCount", "children_model_count"),
                     ("trendingScore", "trending_score"), ("inference", "inference")):
        if entry.get(key) is not None:
            extra[out] = entry[key]
    transformers_info = entry.get("transformersInfo")
    if isinstance(transformers_info, dict) and transformers_info.get("auto_model"):
        extra["auto_model"] = transformers_info["auto_model"]
    if isinstance(entry.get("spaces"), list):
        extra["spaces_count"] = len(entry["spaces"])

    return ModelItem(
        _id=make_id(HUB, repo_id),
        hub=HUB,
        hub_id=repo_id,
        hub_uid=entry.get("_id") if isinstance(entry.get("_id"), str) else None,
        name=name,
        owner=owner,
        url=f"{base}/{repo_id}",
        owner_url=f"{base}/{owner}" if owner else None,
        tasks=tasks,
        libraries=libraries,
        architectures=[a for a in as_list(config.get("architectures")) if isinstance(a, str)],
        model_type=config.get("model_type") if isinstance(config.get("model_type"), str) else None,
        tags=tags,
        datasets=dedupe([
            *(d for d in as_list(card.get("datasets")) if isinstance(d, str)),
            *((t[8:] for t in tags if t.startswith("dataset:")) if "dataset:" in joined
              else ()),
        ]),
        base_models=_base_models(entry, card, tags if "base_model:" in joined else ()),
        papers=[],  # filled from tags by the normalising pipeline
        github_repos=_card_github_urls(card),
        license=normalize_license(license_value),
        downloads=as_int(entry.get("downloads")),
        downloads_all_time=as_int(entry.get("downloadsAllTime")),
        likes=as_int(entry.get("likes")),
        created_at=created,
        last_modified=iso_utc(entry.get("lastModified")),
        latest_commit_sha=entry.get("sha") if isinstance(entry.get("sha"), str) else None,
        gated=None if gated is None else gated is not False,
        gated_mode=gated if isinstance(gated, str) else None,
        private=entry.get("private") if isinstance(entry.get("private"), bool) else None,
        disabled=entry.get("disabled") if isinstance(entry.get("disabled"), bool) else None,
        parameters=parameters,
        used_storage=as_int(entry.get("usedStorage")),
        files=files,
        card={"present": card_present, "has_model_index": has_model_index},
        extra=extra,
        raw=entry,
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url},
    )


def _files(siblings: list[Any]) -> tuple[list[dict[str, Any]], bool]:
    """The files, and whether one is the model card (``README.md``)."""
    files: list[dict[str, Any]] = []
    card_present = False
    for sib in siblings:
        if not isinstance(sib, dict):
            continue
        path = sib.get("rfilename")
        if not isinstance(path, str):
            continue
        if path == "README.md":
            card_present = True
        if len(sib) == 1:  # the list's siblings: ``{rfilename}`` alone (hot path)
            files.append({"path": path, "size": None, "sha256": None})
            continue
        lfs_data = sib.get("lfs")
        lfs: dict[str, Any] = lfs_data if isinstance(lfs_data, dict) else {}
        files.append({
            "path": path,
            "size": as_int(sib.get("size", lfs.get("size"))),
            "sha256": lfs.get("sha256") if isinstance(lfs.get("sha256"), str) else None,
        })
    return files, card_present


def _base_models(entry: dict[str, Any], card: dict[str, Any], tags: Iterable[str]) -> list[str]:
    found: list[Any] = [b for b in as_list(card.get("base_model")) if isinstance(b, str)]
    base_models = entry.get("baseModels")
    if isinstance(base_models, dict):
        found.extend(m.get("id") for m in as_list(base_models.get("models")) if isinstance(m, dict))
    for tag in tags:
        if tag.startswith("base_model:"):
            value = tag[11:]
            for rel in _BASE_MODEL_RELATIONS:
                if value.startswith(rel):
                    value = value[len(rel):]
                    break
            found.append(value)
    return dedupe(v.strip() for v in found if isinstance(v, str))


def _card_github_urls(card: dict[str, Any]) -> list[str]:
    """Most cards name no GitHub URL: their JSON text, made in C, says so faster than a walk
    through every value (about 3 us a model)."""
    if not card:
        return []
    try:
        if b"github.com" not in orjson.dumps(card):
            return []
    except TypeError:  # not JSON (a card built in Python, not decoded): walk it
        pass
    return list(_github_urls(card))


def _github_urls(value: Any, depth: int = 0) -> Iterator[str]:
    """GitHub URLs anywhere in card data (normalised to owner/repo later, in the pipeline)."""
    if depth > 6:
        return
    if isinstance(value, str):
        if "github.com" in value:
            yield from _split_urls(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _github_urls(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from _github_urls(v, depth + 1)


def _split_urls(text: str) -> Iterator[str]:
    for token in text.replace("(", " ").replace(")", " ").split():
        if "github.com/" in token:
            yield token


def parse_owner(
    body: bytes, *, name: str, kind: str, endpoint: str, source_url: str | None, seen_at: str
) -> OwnerItem:
    """``/api/organizations/{name}/overview`` or ``/api/users/{name}/overview`` -> owner."""
    data = load_json(body, dict)
    owner_type = "user" if kind == "user" or data.get("type") == "user" else "org"
    verified = data.get("isVerified")
    return OwnerItem(
        _id=make_id(HUB, name),
        hub=HUB,
        name=str(data.get("name") or name),
        type=owner_type,
        fullname=data.get("fullname") if isinstance(data.get("fullname"), str) else None,
        url=f"{endpoint.rstrip('/')}/{name}",
        # Users cannot be verified on the Hub: false, not unknown.
        is_verified=verified if isinstance(verified, bool) else (
            False if owner_type == "user" else None),
        is_pro=data.get("isPro") if isinstance(data.get("isPro"), bool) else None,
        plan=data.get("plan") if isinstance(data.get("plan"), str) else None,
        num_models=as_int(data.get("numModels")),
        num_users=as_int(data.get("numUsers")),
        num_followers=as_int(data.get("numFollowers")),
        orgs=org_names(data.get("orgs")) if owner_type == "user" else [],
        raw=data,
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url},
    )


def org_names(value: Any) -> list[str]:
    """Names in a user overview's ``orgs`` (``[{name, fullname, avatarUrl}]``); entries of
    another shape are skipped, not guessed at."""
    if not isinstance(value, list):
        return []
    return dedupe([o["name"] for o in value
                   if isinstance(o, dict) and isinstance(o.get("name"), str) and o["name"]])


# ``extra.overview`` of a user recognised by the organisations' 404 (``owners=orgs``).
OVERVIEW_SKIPPED = "skipped"


def user_without_overview(name: str, *, endpoint: str, seen_at: str,
                          source_url: str | None) -> OwnerItem:
    """An owner of listed models the organisations' endpoint does not know: a user, recorded
    without the user overview that would cost a second call. Users cannot be verified."""
    return OwnerItem(
        _id=make_id(HUB, name), hub=HUB, name=name, type="user", is_verified=False,
        url=f"{endpoint.rstrip('/')}/{name}",
        extra={"overview": OVERVIEW_SKIPPED, "type_from": "no organization overview (404)"},
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url},
    )


def unknown_owner(name: str, *, endpoint: str, seen_at: str, reason: str) -> OwnerItem:
    """An owner the Hub has no overview for (deleted account, legacy canonical model)."""
    return OwnerItem(
        _id=make_id(HUB, name), hub=HUB, name=name, type="unknown",
        url=f"{endpoint.rstrip('/')}/{name}", extra={"overview_error": reason},
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": None},
    )
