"""Streaming exports of the ``models`` collection: JSONL, Parquet and PTMTorrent's schema.

Documents stream from the store cursor and leave in batches, so an export of two million models
needs the memory of one batch. Parquet columns follow ``schema/model.schema.json`` (objects and
lists of objects become JSON text columns), so every batch has the same Arrow schema.
``ptmtorrent`` writes the unified schema of the PTMTorrent dataset (``ptmSchema.json``: ModelHub,
ModelName, ModelOwner, ModelURL, ModelOwnerURL, LatestGitCommitSHA, ModelTask, ModelArchitecture,
ModelPaperDOIs, Datasets) as one JSON array, so scripts written for PTMTorrent read ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from ptmspiders.hubs import HUBS
from ptmspiders.pipelines.validate import load_schema

FORMATS = ("jsonl", "parquet", "ptmtorrent")

ARXIV_DOI_PREFIX = "10.48550/arXiv."  # arXiv's DataCite DOIs


Progress = Callable[[int], None]


def _noop(n: int) -> None:
    return None


def write_jsonl(docs: Iterable[Mapping[str, Any]], out: IO[bytes],
                progress: Progress = _noop) -> int:
    n = 0
    for doc in docs:
        out.write(orjson.dumps(doc, default=str) + b"\n")
        n += 1
        progress(1)
    return n


# -- Parquet -------------------------------------------------------------------------------------

def column_kinds(schema_name: str = "model") -> dict[str, str]:
    """Top-level field -> string | int | float | bool | strings | json, from the JSON Schema."""
    kinds: dict[str, str] = {}
    for name, spec in load_schema(schema_name)["properties"].items():
        kinds[name] = _kind(spec)
    if schema_name == "model":
        kinds.setdefault("removed_at", "string")
    return kinds


def _kind(spec: Mapping[str, Any]) -> str:
    types = spec.get("type")
    found = {types} if isinstance(types, str) else set(types or [])
    found.discard("null")
    if not found and "enum" in spec:
        return "string"
    if found == {"string"}:
        return "string"
    if found == {"integer"}:
        return "int"
    if found == {"number"}:
        return "float"
    if found == {"boolean"}:
        return "bool"
    if found == {"array"} and spec.get("items", {}).get("type") == "string":
        return "strings"
    return "json"


def arrow_schema(kinds: Mapping[str, str]) -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(),
             "bool": pa.bool_(), "strings": pa.list_(pa.string()), "json": pa.string()}
    return pa.schema([(name, types[kind]) for name, kind in kinds.items()])


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        return orjson.dumps(value, default=str).decode()
    if kind == "strings":
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value) if float(value).is_integer() else None
    if kind == "float":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else None
    if kind == "bool":
        return value if isinstance(value, bool) else None
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def write_parquet(docs: Iterable[Mapping[str, Any]], path: Path, *, batch_size: int = 5000,
                  progress: Progress = _noop, schema_name: str = "model") -> int:
    """One row per document, written ``batch_size`` rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = column_kinds(schema_name)
    schema = arrow_schema(kinds)
    n = 0
    columns: dict[str, list[Any]] = {name: [] for name in kinds}

    def flush(writer: Any) -> None:
        if columns["_id"]:
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            for values in columns.values():
                values.clear()

    with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        for doc in docs:
            for name, kind in kinds.items():
                columns[name].append(_cell(doc.get(name), kind))
            n += 1
            progress(1)
            if len(columns["_id"]) >= batch_size:
                flush(writer)
        flush(writer)
    return n


# -- PTMTorrent ----------------------------------------------------------------------------------

def paper_doi(paper: str) -> str | None:
    """Our ``doi:``/``arxiv:`` ids -> a DOI (arXiv papers have DataCite DOIs)."""
    kind, _, value = paper.partition(":")
    if not value:
        return None
    if kind == "doi":
        return value
    if kind == "arxiv":
        return ARXIV_DOI_PREFIX + value
    return None


def _hub_base(doc: Mapping[str, Any]) -> str | None:
    url, hub_id = doc.get("url"), doc.get("hub_id")
    if isinstance(url, str) and isinstance(hub_id, str) and url.endswith("/" + hub_id):
        return url[: -len(hub_id) - 1]
    return None


def _datasets(doc: Mapping[str, Any]) -> list[dict[str, str]]:
    out = []
    base = _hub_base(doc) if doc.get("hub") == "huggingface" else None
    for name in doc.get("datasets") or []:
        owner, _, short = str(name).rpartition("/")
        entry = {"DatasetName": short or str(name), "DatasetOwner": owner,
                 "DatasetURL": f"{base}/datasets/{name}" if base else "",
                 "DatasetOwnerURL": f"{base}/{owner}" if base and owner else ""}
        out.append(entry)
    return out


def ptmtorrent_record(doc: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One document in PTMTorrent's unified schema; ``index`` (from 1) is its ``id``."""
    hub = str(doc.get("hub"))
    known = HUBS.get(hub)  # names and home pages as PTMTorrent had them (hubs.py)
    hub_name, hub_url = (known.name, known.home) if known else (hub, "")
    crawl = doc.get("crawl") if isinstance(doc.get("crawl"), dict) else {}
    record: dict[str, Any] = {
        "id": index,
        "ModelHub": {
            "ModelHubName": hub_name,
            "ModelHubURL": hub_url,
            "MetadataFilePath": str((crawl or {}).get("source_url") or ""),
            "MetadataObjectID": index,
        },
        "ModelName": str(doc.get("name") or doc.get("hub_id") or ""),
        "ModelOwner": str(doc.get("owner") or ""),
        "ModelURL": str(doc.get("url") or ""),
        "ModelOwnerURL": str(doc.get("owner_url") or ""),
        "Datasets": _datasets(doc),
        "ModelPaperDOIs": [d for d in (paper_doi(p) for p in doc.get("papers") or []) if d],
        "LatestGitCommitSHA": str(doc.get("latest_commit_sha") or ""),
    }
    tasks = doc.get("tasks") or []
    if tasks:
        record["ModelTask"] = str(tasks[0])
    architecture = (doc.get("architectures") or [None])[0] or doc.get("model_type")
    if architecture:
        record["ModelArchitecture"] = str(architecture)
    return record


def write_ptmtorrent(docs: Iterable[Mapping[str, Any]], out: IO[bytes],
                     progress: Progress = _noop) -> int:
    """A JSON array written element by element (never held whole in memory)."""
    out.write(b"[")
    n = 0
    for doc in docs:
        n += 1
        out.write((b",\n" if n > 1 else b"\n") + orjson.dumps(ptmtorrent_record(doc, n)))
        progress(1)
    out.write(b"\n]\n" if n else b"]\n")
    return n


def export(docs: Iterator[Mapping[str, Any]], fmt: str, out: Path | IO[bytes], *,
           progress: Progress = _noop, batch_size: int = 5000,
           schema_name: str = "model") -> int:
    """``schema_name``: the JSON Schema of the documents (``model`` or ``package``), which
    gives the Parquet columns."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if not isinstance(out, Path):
            raise ValueError("parquet needs a file path, not standard output")
        return write_parquet(docs, out, batch_size=batch_size, progress=progress,
                             schema_name=schema_name)
    if isinstance(out, Path):
        with out.open("wb") as fh:
            return export(docs, fmt, fh, progress=progress)
    if fmt == "jsonl":
        return write_jsonl(docs, out, progress)
    return write_ptmtorrent(docs, out, progress)

