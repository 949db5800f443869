"""ONNX Model Zoo: ``ONNX_HUB_MANIFEST.json`` of ``onnx/models`` -> one item per entry.

The manifest is what ``onnx.hub`` reads. Model names repeat across opsets (116 names for 184
entries), the weight path does not, so it is the hub id. Weights live in git LFS: the raw URL
gives a pointer, downloads go through ``media.githubusercontent.com``, checked against
``model_sha`` (SHA-256).
"""

from __future__ import annotations

from typing import Any

from ptmspiders.github import RepoRef
from ptmspiders.hub_answers import BadResponse, load_json
from ptmspiders.items import ModelItem, make_id
from ptmspiders.normalize import as_int, dedupe

HUB = "onnx_zoo"
MANIFEST = "ONNX_HUB_MANIFEST.json"
MEDIA_URL = "https://media.githubusercontent.com/media"

# ``validated/<domain>/<category>/...`` categories -> task names of the other hubs.
CATEGORY_TASKS: dict[str, tuple[str, ...]] = {
    "vision/classification": ("image-classification",),
    "vision/object_detection_segmentation": ("object-detection", "image-segmentation"),
    "vision/style_transfer": ("image-to-image",),
    "vision/super_resolution": ("image-to-image",),
    "vision/body_analysis": ("body-analysis",),
    "text/machine_comprehension": ("question-answering",),
}


def parse_manifest(body: bytes, *, repo: RepoRef, path: str, blob_sha: str | None,
                   source_url: str | None, seen_at: str
                   ) -> tuple[list[ModelItem], list[tuple[str, str]]]:
    """Items of the manifest, and the entries that could not be read (label, reason).

    Raises :class:`BadResponse` when the manifest as a whole is unusable.
    """
    data = load_json(body, list)
    items: list[ModelItem] = []
    rejects: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, entry in enumerate(data):
        label = f"entry {index}"
        try:
            item = parse_entry(entry, repo=repo, path=path, blob_sha=blob_sha,
                               source_url=source_url, seen_at=seen_at)
        except BadResponse as exc:
            if isinstance(entry, dict) and isinstance(entry.get("model"), str):
                label = f"entry {index} ({entry['model']})"
            rejects.append((label, exc.reason))
            continue
        if item._id in seen:
            rejects.append((f"{label} ({item.hub_id})", "duplicate_model_path"))
            continue
        seen.add(item._id)
        items.append(item)
    return items, rejects


def parse_entry(entry: Any, *, repo: RepoRef, path: str, blob_sha: str | None,
                source_url: str | None, seen_at: str) -> ModelItem:
    if not isinstance(entry, dict):
        raise BadResponse("entry_not_object")
    name, model_path = entry.get("model"), entry.get("model_path")
    if not isinstance(name, str) or not name.strip():
        raise BadResponse("entry_without_model")
    if not isinstance(model_path, str) or not model_path.strip():
        raise BadResponse("entry_without_model_path")
    meta = entry.get("metadata")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BadResponse("metadata_not_object")
    opset = entry.get("opset_version")
    if opset is not None and as_int(opset) is None:
        raise BadResponse("bad_opset_version", repr(opset))

    tags = [t for t in meta.get("tags") or [] if isinstance(t, str)]
    parts = model_path.split("/")
    category = "/".join(parts[1:3]) if len(parts) > 3 else ""
    tasks = list(CATEGORY_TASKS.get(category, ()))
    if not tasks and len(parts) > 3:
        tasks = [parts[2].replace("_", "-")]
    files = [{"path": model_path, "size": as_int(meta.get("model_bytes")),
              "sha256": _sha(meta.get("model_sha"))}]
    if isinstance(meta.get("model_with_data_path"), str):
        files.append({"path": meta["model_with_data_path"],
                      "size": as_int(meta.get("model_with_data_bytes")),
                      "sha256": _sha(meta.get("model_with_data_sha"))})
    onnx_version = entry.get("onnx_version")
    extra: dict[str, Any] = {
        "opset_version": as_int(opset),
        "onnx_version": str(onnx_version) if onnx_version is not None else None,
        "io_ports": meta.get("io_ports") if isinstance(meta.get("io_ports"), dict) else None,
        "download_url": f"{MEDIA_URL}/{repo.owner}/{repo.repo}/{repo.ref}/{model_path}",
        "category": category or None,
        "path": path,
        "blob_sha": blob_sha,
    }
    if isinstance(meta.get("extra_ports"), dict):
        extra["extra_ports"] = meta["extra_ports"]
    folder = "/".join(parts[:-2]) if len(parts) > 2 and parts[-2] == "model" else None
    return ModelItem(
        _id=make_id(HUB, model_path),
        hub=HUB,
        hub_id=model_path,
        name=name.strip(),
        title=name.strip(),
        owner=repo.owner,
        url=repo.html_url(folder, "tree") if folder else repo.html_url(model_path),
        owner_url=f"https://github.com/{repo.owner}",
        tasks=tasks,
        libraries=["onnx"],
        tags=dedupe(tags),
        github_repos=[repo.full_name],
        files=files,
        extra=extra,
        raw=entry,
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url},
    )


def _sha(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and value.strip() else None
