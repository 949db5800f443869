"""``ptm report``: the reuse and risk measurements, recomputed from the stored documents.

``build_report`` reads the store through its ``find`` interface only, so a SQLite and a MongoDB
store holding the same documents give the same numbers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptmspiders.args import list_arg
from ptmspiders.hubs import HUBS, unknown_hubs
from ptmspiders.report import metrics as m
from ptmspiders.report import render
from ptmspiders.stores import Store, redact_uri

__all__ = ["add_parser", "build_report", "compute_from_store"]


# Model fields the measurements read as values; the other counted fields are only tested for
# absence, so a slim copy keeps just whether they are there (``raw`` and co. are dropped).
VALUE_FIELDS = frozenset({"_id", "hub", "owner", "tasks", "card", "downloads", "likes",
                          "base_models", "datasets", "github_repos", "risk"})


def slim_model(doc: dict[str, Any]) -> dict[str, Any]:
    """What the measurements need of a model document, so a large store fits in memory."""
    out = {k: doc[k] for k in VALUE_FIELDS if k in doc}
    for field in m.MISSING_FIELDS:
        if field not in VALUE_FIELDS and field in doc:
            out[field] = None if doc[field] in (None, "", [], {}) else True
    out["files"] = [{"path": f["path"]} for f in doc.get("files") or []
                    if isinstance(f, dict) and isinstance(f.get("path"), str)]
    return out


def compute_from_store(store: Store, hubs: Sequence[str] = ()) -> tuple[m.Result, dict[str, int]]:
    """The ten measurements over the store's models, owners and commits of ``hubs`` (all when
    empty) and the packages of those models, and how many documents of each were read.
    Documents are streamed and slimmed."""
    def read(collection: str, slim: Any = None) -> list[dict[str, Any]]:
        wheres: list[dict[str, Any] | None] = [{"hub": h} for h in hubs] or [None]
        return [slim(d) if slim else d for where in wheres for d in store.find(collection, where)]

    models = read("models", slim_model)
    owners, commits = read("owners"), read("commits")
    # A package document (one per model, same _id) carries every file's scan; the measure
    # needs only its summary, and only for the models read.
    ids = {d["_id"] for d in models}
    packages = [{"_id": d["_id"], "scan": d.get("scan")} for d in store.find("packages")
                if d.get("_id") in ids]
    counts = {"models": len(models), "owners": len(owners), "commits": len(commits),
              "packages": len(packages)}
    return m.compute(models, owners, commits, packages), counts


def build_report(store: Store, out: Path, hubs: Sequence[str] = ()) -> m.Result:
    """Write ``index.html``, ``metrics.json`` and the CSV tables into ``out``."""
    unknown = unknown_hubs(hubs)
    if unknown:
        raise ValueError(f"unknown hub(s): {', '.join(unknown)}; "
                         f"expected some of {', '.join(HUBS)}")
    out.mkdir(parents=True, exist_ok=True)
    result, counts = compute_from_store(store, hubs)
    meta = {"store": redact_uri(store.uri), "hubs": list(hubs), "documents": counts,
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "top_share": m.TOP_SHARE}
    render.write_json(out / "metrics.json", result, meta)
    render.write_csvs(out, result)
    render.write_html(out / "index.html", result, meta, render.figures(result),
                      render.tables(result))
    return result


def cmd_report(store: Store, args: argparse.Namespace) -> int:
    from ptmspiders.cli import UsageError  # which imports this module

    hubs = [h for value in args.hub or [] for h in list_arg(value)]
    if not args.out.strip():  # Path("") is the current folder: a dozen files landed there
        raise UsageError("--out is empty: name the report's folder")
    try:
        build_report(store, Path(args.out), hubs)
    except ValueError as exc:  # ptm's one line: a hub name's escapes are not sent as is
        raise UsageError(str(exc)) from None
    print(f"Report written to {Path(args.out) / 'index.html'} (with metrics.json and CSVs)")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``ptm report`` on the ``ptm`` command's subparsers."""
    p = sub.add_parser("report", help="the reuse and risk studies: HTML, metrics.json, CSVs")
    p.add_argument("--out", default="reports/latest", help="output folder (default %(default)s)")
    p.add_argument("--hub", action="append",
                   help="only these hubs (repeat or comma-separate); default all")
    p.set_defaults(func=cmd_report)
