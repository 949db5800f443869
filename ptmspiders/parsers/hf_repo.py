"""Hugging Face repository answers (file tree, commits API) and the risk of weight files.

The risk of a weight file is its serialisation format: pickle-based formats (``.bin``, ``.pt``,
``.pth``, ``.ckpt``, ``.pkl``, ...) run code when loaded, the others (``safetensors``, ``gguf``,
``onnx``, ...) only hold data. :func:`weight_formats` works on any hub's file list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from ptmspiders.hub_answers import BadResponse, load_json
from ptmspiders.normalize import as_int, iso_utc

# File name suffix -> serialisation format. Pickle-based formats are in PICKLE_FORMATS.
WEIGHT_SUFFIXES: dict[str, str] = {
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".ggml": "ggml",
    ".onnx": "onnx",
    ".ort": "onnx",
    ".tflite": "tflite",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".keras": "keras",
    ".pb": "tf_saved_model",
    ".mlmodel": "coreml",
    ".msgpack": "flax_msgpack",
    ".npz": "numpy",
    ".bin": "pickle",
    ".pt": "pickle",
    ".pth": "pickle",
    ".ckpt": "pickle",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "pickle",
    ".mar": "pickle",
    ".nemo": "pickle",
}
PICKLE_FORMATS = frozenset({"pickle"})
# ``.bin`` files that are not PyTorch pickles (fastText/word2vec binaries are, however, still
# opaque binaries: they are counted as pickle-based only when named like PyTorch checkpoints).
_NON_WEIGHT_NAMES = frozenset({"training_args.bin", "optimizer.bin", "scheduler.bin",
                               "rng_state.bin"})
# Hub scan verdicts that mean "do not load this file".
UNSAFE_SCAN = frozenset({"unsafe", "dangerous", "suspicious", "infected"})


def weight_format(path: str) -> str | None:
    """Serialisation format of a weight file, ``None`` for other files."""
    name = path.rsplit("/", 1)[-1].lower()
    if name in _NON_WEIGHT_NAMES:
        return None
    if ".mlpackage/" in path.lower():  # Core ML packages keep raw weights in ``weight.bin``
        return "coreml" if name.endswith((".bin", ".mlmodel")) else None
    dot = name.rfind(".")
    if dot < 0:
        return None
    return WEIGHT_SUFFIXES.get(name[dot:])


def weight_formats(paths: Iterable[str]) -> list[str]:
    """Sorted distinct weight formats among ``paths``."""
    return sorted({f for f in (weight_format(p) for p in paths) if f})


def file_risk(files: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The ``risk`` object of a model from its ``files`` entries (path, optional ``security``).

    ``pickle_only`` is ``None`` when the model has no weight file at all.
    """
    entries = [f for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]
    formats = weight_formats(f["path"] for f in entries)
    pickle_files = [f["path"] for f in entries if weight_format(f["path"]) in PICKLE_FORMATS]
    scanned = [f for f in entries if isinstance(f.get("security"), dict)]
    unsafe = [f["path"] for f in scanned if _scan_unsafe(f["security"])]
    return {
        "weight_formats": formats,
        "pickle_only": (set(formats) <= PICKLE_FORMATS) if formats else None,
        "pickle_files": pickle_files,
        "scanned_files": len(scanned),
        "unsafe_files": unsafe,
    }


def _scan_unsafe(security: dict[str, Any]) -> bool:
    values = [security.get("status"), security.get("pickle_level")]
    return bool(security.get("virus_found")) or any(
        isinstance(v, str) and v.lower() in UNSAFE_SCAN for v in values)


def tree_url(endpoint: str, repo_id: str, rev: str, *, expand: bool = True) -> str:
    query = urlencode([("recursive", "true"), ("expand", "true" if expand else "false")])
    return (f"{endpoint.rstrip('/')}/api/models/{quote(repo_id, safe='/')}/tree/"
            f"{quote(rev, safe='')}?{query}")


def commits_url(endpoint: str, repo_id: str, rev: str) -> str:
    return f"{endpoint.rstrip('/')}/api/models/{quote(repo_id, safe='/')}/commits/" \
           f"{quote(rev, safe='')}"


def readme_url(endpoint: str, repo_id: str, rev: str) -> str:
    return f"{endpoint.rstrip('/')}/{quote(repo_id, safe='/')}/resolve/{quote(rev, safe='')}" \
           "/README.md"


def parse_tree_page(body: bytes) -> list[dict[str, Any]]:
    """``files`` entries (path, size, sha256, security) of one tree page; folders skipped."""
    data = load_json(body, list)
    files: list[dict[str, Any]] = []
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise BadResponse("wrong_shape", "tree entry without path")
        if entry.get("type") == "directory":
            continue
        lfs_data = entry.get("lfs")
        lfs: dict[str, Any] = lfs_data if isinstance(lfs_data, dict) else {}
        sha = lfs.get("oid") if isinstance(lfs.get("oid"), str) else None
        doc: dict[str, Any] = {
            "path": entry["path"],
            "size": as_int(lfs.get("size", entry.get("size"))),
            "sha256": sha,
            "lfs": bool(lfs),
        }
        security = _security(entry.get("securityFileStatus"))
        if security is not None:
            doc["security"] = security
        files.append(doc)
    return files


def _security(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    av_data, pickle_data = value.get("avScan"), value.get("pickleImportScan")
    av: dict[str, Any] = av_data if isinstance(av_data, dict) else {}
    pickle: dict[str, Any] = pickle_data if isinstance(pickle_data, dict) else {}
    imports = [f"{i.get('module')}.{i.get('name')}" for i in pickle.get("imports") or []
               if isinstance(i, dict) and i.get("safety") in ("suspicious", "dangerous")]
    return {
        "status": value.get("status") if isinstance(value.get("status"), str) else None,
        "virus_found": av.get("virusFound") if isinstance(av.get("virusFound"), bool) else None,
        "pickle_level": pickle.get("highestSafetyLevel")
        if isinstance(pickle.get("highestSafetyLevel"), str) else None,
        "risky_imports": imports,
    }


def parse_commits_page(body: bytes) -> list[dict[str, Any]]:
    """Commits of one ``/api/models/{repo}/commits/{rev}`` page: id, title, date, authors."""
    data = load_json(body, list)
    commits = []
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise BadResponse("wrong_shape", "commit entry without id")
        authors = [a.get("user") for a in entry.get("authors") or []
                   if isinstance(a, dict) and isinstance(a.get("user"), str)]
        title = entry.get("title")
        commits.append({
            "sha": entry["id"],
            "title": title if isinstance(title, str) else None,
            "date": iso_utc(entry.get("date")),
            "authors": authors,
        })
    return commits
