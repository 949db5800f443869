"""What a packages crawl downloads: which models, which files, within which budget."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ptmspiders.query import parse_sort
from ptmspiders.stores.base import Store

# Formats that unpickle on load (code can run): PyTorch, joblib, NumPy object arrays, ...
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill",
                   ".mar", ".npy", ".npz", ".pdparams", ".nemo")
# Weights that load as data: safe to fetch for ``weights=safe``.
SAFE_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".ggml", ".onnx", ".tflite", ".msgpack",
                        ".pb", ".mlmodel", ".ort")
# Weights that are neither: Keras/HDF5 may hold Lambda-layer bytecode, archives anything.
OTHER_WEIGHT_SUFFIXES = (".h5", ".hdf5", ".keras", ".ot", ".model", ".tar", ".tar.gz",
                         ".tgz", ".zip")
WEIGHT_MODES = ("none", "safe", "all")
REVISION_MODES = ("pinned", "latest")
MODEL_FIELDS = ["_id", "hub", "hub_id", "name", "owner", "url", "latest_commit_sha",
                "downloads", "likes", "files", "extra", "github_repos", "model_type"]
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str | int | None, name: str) -> int | None:
    """``500G``, ``20M``, ``1.5T``, ``1024`` (bytes; K/M/G/T/P are powers of 1024)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise ValueError(f"{name}={text!r}: a size such as 500G, 20M or 1024")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def is_weight(path: str) -> bool:
    low = path.lower()
    return low.endswith(PICKLE_SUFFIXES + SAFE_WEIGHT_SUFFIXES + OTHER_WEIGHT_SUFFIXES)


def is_safe_weight(path: str) -> bool:
    return path.lower().endswith(SAFE_WEIGHT_SUFFIXES)


@dataclass(frozen=True)
class FileFilter:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    weights: str = "all"
    max_file_bytes: int | None = None

    def skip_reason(self, path: str, size: int | None) -> str | None:
        """Why this file is not fetched (``excluded``, ``weights``, ``max_file_bytes``)."""
        if self.include and not any(fnmatchcase(path, p) for p in self.include):
            return "excluded"
        if any(fnmatchcase(path, p) for p in self.exclude):
            return "excluded"
        if self.weights != "all" and is_weight(path) and (
                self.weights == "none" or not is_safe_weight(path)):
            return "weights"
        if self.max_file_bytes is not None and size is not None and size > self.max_file_bytes:
            return "max_file_bytes"
        return None


@dataclass
class Selection:
    hubs: list[str]
    filter: dict[str, Any] = field(default_factory=dict)
    sort: str | None = None
    limit: int | None = None
    top: float | None = None

    def ids(self, store: Store) -> list[str]:
        """The selected models' ids, in order. Only ids are held for a whole run; the
        documents are read a batch at a time as their packages start."""
        return [str(d["_id"]) for d in self.models(store, fields=["_id", "hub"])]

    def models(self, store: Store, fields: list[str] | None = None
               ) -> Iterator[dict[str, Any]]:
        """The models to package: per hub (filter, then ``top``), then ``sort`` and ``limit``
        over all of them. ``top=0.1``: the 10% most downloaded of each hub (by likes where
        the hub records no downloads), as PTMTorrent selected."""
        wanted = fields or MODEL_FIELDS
        sort_fields = [name for name, _ in parse_sort(self.sort)]
        base: dict[str, Any] = {"hub": {"$in": self.hubs}, "removed_at": None}
        if self.top is None:
            # One streamed query: the store sorts and limits (no list of a whole hub here).
            where = {"$and": [base, self.filter]} if self.filter else base
            yield from store.query("models", where, fields=wanted,
                                   sort=parse_sort(self.sort), limit=self.limit)
            return
        chosen: list[dict[str, Any]] = []
        for hub in self.hubs:
            where = {"hub": hub, "removed_at": None}
            if self.filter:
                where = {"$and": [where, self.filter]}
            n = store.count("models", where)
            key = "downloads" if store.exists(
                "models", {"$and": [where, {"downloads": {"$gt": 0}}]}) else "likes"
            chosen += list(store.query("models", where,
                                       fields=list(dict.fromkeys([*wanted, *sort_fields])),
                                       sort=[(key, -1)], limit=math.ceil(n * self.top)))
        for name, direction in reversed(parse_sort(self.sort)):
            present = [d for d in chosen if d.get(name) is not None]
            missing = [d for d in chosen if d.get(name) is None]
            present.sort(key=operator.itemgetter(name), reverse=direction < 0)
            chosen = present + missing
        yield from chosen[:self.limit] if self.limit is not None else chosen
