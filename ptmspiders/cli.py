"""The ``ptm`` command: look at what the spiders stored, the same way on either store.

Exit codes scripts can trust: 0 ok, 1 failure, 2 usage error (bad argument or filter). Every
error is one line ``ptm: error: ...`` on stderr, never a traceback. Commands only read: the
store is opened read-only and nothing in it is created.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from ptmspiders import config
from ptmspiders.export import FORMATS, export
from ptmspiders.hubs import HUBS, unknown_hubs
from ptmspiders.parsers.huggingface import OVERVIEW_SKIPPED
from ptmspiders.query import INT64_MAX, QueryError, check_json_depth, dotted, parse_sort
from ptmspiders.safe_output import escape_controls, escape_json_controls
from ptmspiders.stores import (
    COLLECTIONS,
    DEFAULT_STORE_URI,
    Doc,
    Store,
    StoreError,
    driver_message,
    is_store_file,
    open_store,
    redact_uri,
)

EXAMPLES = """examples:
  ptm stats
  ptm query '{"hub": "huggingface", "downloads": {"$gt": 1000}}' --sort=-downloads --limit 5 \\
      --table --fields _id,owner,downloads,license
  ptm query '{"tags": {"$in": ["bert", "gpt2"]}, "removed_at": null}' --fields _id
  ptm export --format parquet --hub huggingface models.parquet
  ptm history huggingface:acme-ai/bert-base-cased --table
  ptm query '{"complete": false}' --collection packages --fields _id,revision,new_bytes
  ptm verify --dest data/packages
"""


# A reading command gives up on an unreachable MongoDB after this long (crawls wait longer).
SERVER_TIMEOUT_S = 5.0
# Default of ``--timeout``: how long MongoDB may work on one read (maxTimeMS).
READ_TIMEOUT_S = 300.0
# Longest error line: a driver's message can carry a whole topology description.
_MAX_MESSAGE = 400


class UsageError(Exception):
    """A wrong argument: exit code 2."""


def store_uri(args: argparse.Namespace) -> str:
    return str(args.store or config.default("PTM_STORE_URI"))


# -- output helpers ------------------------------------------------------------------------------

def print_table(rows: Sequence[Doc], fields: Sequence[str], out: IO[str] | None = None,
                max_width: int = 60) -> None:
    """Aligned columns; control characters from the hubs (an ANSI escape in a model id) are
    printed as escapes such as ``\\x1b``, never sent to the terminal."""
    out = out or sys.stdout
    cells = [[_cell(dotted(r, f) if f not in r else r[f], max_width) for f in fields]
             for r in rows]
    header = [escape_controls(f) for f in fields]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip(), file=out)


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        text = ""
    elif isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    text = escape_controls(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def write_jsonl(rows: Iterator[Doc]) -> int:
    n = 0
    for row in rows:
        sys.stdout.write(escape_json_controls(json.dumps(row, ensure_ascii=False,
                                                         default=str)) + "\n")
        n += 1
    return n


def progress_bar(args: argparse.Namespace, total: int | None, what: str) -> Any:
    """tqdm on stderr when stderr is a terminal or with --progress; otherwise nothing."""
    show = getattr(args, "progress", False) or sys.stderr.isatty()
    if not show:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, unit=what, file=sys.stderr, dynamic_ncols=True)


def _no_constant(name: str) -> Any:
    raise UsageError(f"FILTER has {name}: NaN and infinite numbers are not supported")


def parse_filter(text: str) -> dict[str, Any]:
    """The FILTER argument as a dict; its nesting is checked before ``json.loads`` recurses."""
    check_json_depth(text)
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise UsageError(f"FILTER is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("FILTER must be a JSON object, e.g. '{\"hub\": \"huggingface\"}'")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= INT64_MAX:
        raise argparse.ArgumentTypeError(f"must be between 0 and {INT64_MAX}, got {text}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < 10**7:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def split_fields(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [f.strip() for f in text.split(",") if f.strip()]


# -- commands ------------------------------------------------------------------------------------

def last_crawls(store: Store) -> list[Doc]:
    """The latest record of each spider (the crawls collection is one document per run)."""
    latest: dict[str, Doc] = {}
    for doc in store.query("crawls", {}, sort=[("started_at", -1)]):
        latest.setdefault(str(doc.get("spider")), doc)
    return [latest[name] for name in sorted(latest)]


def cmd_stats(store: Store, args: argparse.Namespace) -> int:
    per_hub: dict[str, dict[str, int]] = {}
    for hub in HUBS:
        n = store.count("models", {"hub": hub})
        owners = store.count("owners", {"hub": hub})
        collections = store.count("collections", {"hub": hub})
        if n or owners or collections:
            removed = store.count("models", {"hub": hub, "removed_at": {"$ne": None}})
            per_hub[hub] = {"models": n, "removed": removed, "owners": owners,
                            "collections": collections}
    verified = store.count("owners", {"is_verified": True})
    # Users that ``hf_models -a owners=orgs`` recognised without asking for their overview.
    skipped = store.count("owners", {"extra.overview": OVERVIEW_SKIPPED})
    crawls = last_crawls(store)
    result = {
        "store": redact_uri(store.uri),
        "hubs": per_hub,
        "models_total": sum(h["models"] for h in per_hub.values()),
        "removed_total": sum(h["removed"] for h in per_hub.values()),
        "owners_total": sum(h["owners"] for h in per_hub.values()),
        "owners_verified": verified,
        "owners_without_overview": skipped,
        "commits_total": store.count("commits"),
        "changes_total": store.count("changes"),
        "packages": package_stats(store),
        "last_crawls": [{k: c.get(k) for k in (
            "spider", "hub", "_id", "started_at", "finished_at", "finish_reason", "complete",
            "counts")} for c in crawls],
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    without = (f", {skipped} user{'s' if skipped != 1 else ''} without overview"
               if skipped else "")
    print(f"Store: {result['store']}")
    print_table([{"hub": h, **v} for h, v in per_hub.items()],
                ["hub", "models", "removed", "owners", "collections"])
    print(f"Total: {result['models_total']} models ({result['removed_total']} removed), "
          f"{result['owners_total']} owners ({verified} verified{without}), "
          f"{result['commits_total']} commits, {result['changes_total']} recorded changes")
    pk = result["packages"]
    assert isinstance(pk, dict)
    if pk["total"]:
        print(f"Packages: {pk['total']} ({pk['complete']} complete), {pk['files']} files, "
              f"{pk['bytes']} bytes ({pk['unique_bytes']} unique)")
    if crawls:
        print()
        print("Last crawl per spider:")
        rows = []
        for c in crawls:
            counts = c.get("counts") or {}
            # A restricted crawl (-a limit=..., packages) is never "complete" by design:
            # say why rather than print a false that reads as a failure.
            complete = c.get("complete")
            if not complete and c.get("restricted") and c.get("finish_reason") == "finished":
                complete = "restricted"
            rows.append({"spider": c.get("spider"), "finished_at": c.get("finished_at"),
                         "reason": c.get("finish_reason"), "complete": complete,
                         **{k: counts.get(k) for k in ("new", "changed", "unchanged",
                                                       "missing")}})
        print_table(rows, ["spider", "finished_at", "reason", "complete", "new", "changed",
                           "unchanged", "missing"])
    return 0


def cmd_query(store: Store, args: argparse.Namespace) -> int:
    where = parse_filter(args.filter)
    if args.collection not in COLLECTIONS:
        raise UsageError(f"unknown collection {args.collection[:40]!r} (one of "
                         f"{', '.join(COLLECTIONS)})")
    fields = split_fields(args.fields)
    rows = store.query(args.collection, where, fields=fields, sort=parse_sort(args.sort),
                       limit=args.limit)
    if fields:
        rows = ({f: r.get(f) for f in fields} for r in rows)
    if args.table:
        print_table(list(rows), fields or ["_id", "hub", "owner", "downloads", "license"])
    else:
        write_jsonl(rows)
    return 0


def cmd_export(store: Store, args: argparse.Namespace) -> int:
    where: dict[str, Any] = parse_filter(args.filter) if args.filter else {}
    if args.hub:
        unknown = unknown_hubs(args.hub)
        if unknown:
            raise UsageError(f"unknown hub {', '.join(unknown)}; expected one of "
                             f"{', '.join(HUBS)}")
        where = {"$and": [where, {"hub": {"$in": args.hub}}]} if where else {
            "hub": {"$in": args.hub}}
    if args.out == "-" and args.format == "parquet":
        raise UsageError("parquet needs a file, not standard output")
    if args.collection == "packages" and args.format == "ptmtorrent":
        raise UsageError("ptmtorrent is a format of models, not packages")
    total = store.count(args.collection, where)
    docs = store.query(args.collection, where)
    out: Path | IO[bytes] = sys.stdout.buffer if args.out == "-" else Path(args.out)
    if isinstance(out, Path) and out.parent and not out.parent.is_dir():
        raise UsageError(f"no such directory: {out.parent}")
    if isinstance(out, Path) and is_store_file(store.uri, out):
        # Opening it for writing emptied the store: "ptm only reads" must hold here too.
        raise UsageError(f"{args.out} is a file of the store itself: export to another file")
    with progress_bar(args, total, "model") as bar:
        n = export(docs, args.format, out, batch_size=args.batch_size,
                   progress=bar.update if bar is not None else lambda n: None,
                   schema_name=args.collection.removesuffix("s"))
    print(f"ptm: exported {n} {args.collection} as {args.format} to {args.out}",
          file=sys.stderr)
    return 0


def package_stats(store: Store) -> dict[str, int]:
    """Packages, complete ones, files on disk, bytes (per package, and each blob once)."""
    total = complete = files = size = 0
    blobs: dict[str, int] = {}
    for doc in store.query("packages", {}, fields=["complete", "bytes", "files"]):
        total += 1
        complete += doc.get("complete") is True
        size += int(doc.get("bytes") or 0)
        for f in doc.get("files") or []:
            if f.get("status") in ("downloaded", "present") and f.get("blob"):
                files += 1
                blobs[f["blob"]] = int(f.get("size") or 0)
    return {"total": total, "complete": complete, "files": files, "bytes": size,
            "unique_bytes": sum(blobs.values())}


def cmd_verify(store: Store, args: argparse.Namespace) -> int:
    from ptmspiders.packages.blobs import open_blobs
    from ptmspiders.packages.verify import verify

    dest = str(args.dest or config.default("PTM_PACKAGES_DIR"))
    if not dest.startswith("s3://") and not Path(dest).is_dir():
        raise UsageError(f"no packages folder at {dest} (pass --dest)")
    try:
        blobs = open_blobs(dest)
        blobs.check()
    except ValueError as exc:  # an object store that cannot be reached or used
        raise UsageError(str(exc)) from None
    with progress_bar(args, None, "B") as bar:
        report = verify(blobs, store.query("packages", {}),
                        progress=bar.update if bar is not None else lambda n: None)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for p in report.problems:
            print(f"{p['problem']}: {p.get('path') or p['blob']} ({p['package']})")
        counts = ", ".join(f"{n} {k}" for k, n in report.counts().items()) or "no problem"
        print(f"ptm verify: {report.packages} packages, {report.blobs} blobs "
              f"({report.bytes} bytes) re-hashed, {report.ok} ok; {counts}")
    return 1 if report.failed else 0


def model_ids(store: Store, model_id: str) -> list[str]:
    """The ``_id`` itself, or the models whose hub id it is (``acme/bert`` without a hub), and
    the ids they were renamed from, so a renamed model's history starts at its first name."""
    if store.count("changes", {"model_id": model_id}) or ":" in model_id:
        ids = {model_id}
    else:
        ids = store.ids("models", {"hub_id": model_id})
    for _ in range(20):  # follow renames back (a chain, not a loop)
        older = {r["renamed_from"] for r in store.query(
            "changes", {"model_id": {"$in": sorted(ids)}, "kind": "renamed"},
            fields=["renamed_from"]) if r.get("renamed_from")} - ids
        if not older:
            break
        ids |= older
    return sorted(ids)


def first_seen_rows(store: Store, ids: list[str], rows: list[Doc]) -> list[Doc]:
    """A ``first_seen`` row for each model whose arrival has no record: a hub's first
    (baseline) crawl writes none per model, so its history starts at ``crawl.first_seen``."""
    arrived = {r.get("model_id") for r in rows if r.get("kind") in ("new", "renamed")}
    out = []
    for _id, doc in sorted(store.get_many("models", [i for i in ids if i not in arrived],
                                          fields=["crawl"]).items()):
        first = (doc.get("crawl") or {}).get("first_seen")
        if first:
            out.append({"model_id": _id, "at": first, "kind": "first_seen", "crawl_id": None,
                        "fields": [], "values": {}, "lists": {}})
    return sorted(out, key=lambda r: (str(r["at"]), r["model_id"]))


def cmd_history(store: Store, args: argparse.Namespace) -> int:
    ids = model_ids(store, args.model_id)
    rows = list(store.query("changes", {"model_id": {"$in": ids}},
                            sort=[("at", 1), ("crawl_id", 1)], limit=args.limit))
    rows = (first_seen_rows(store, ids, rows) + rows)[:args.limit]
    if not rows:
        print(f"ptm: no history for {args.model_id}", file=sys.stderr)
        return 1
    if not args.table:
        write_jsonl(iter(rows))
        return 0
    table = []
    for r in rows:
        summary = [f"{k}: {_cell(v.get('old'), 24)} -> {_cell(v.get('new'), 24)}"
                   for k, v in (r.get("values") or {}).items()]
        summary += [f"{k}: +{len(v.get('added', []))} -{len(v.get('removed', []))}"
                    for k, v in (r.get("lists") or {}).items()]
        if r.get("renamed_from"):
            summary.insert(0, f"renamed from {r['renamed_from']}")
        if r.get("renamed_to"):
            summary.insert(0, f"renamed to {r['renamed_to']}")
        table.append({"at": r.get("at"), "kind": r.get("kind"), "model_id": r.get("model_id"),
                      "changes": "; ".join(summary) or ", ".join(r.get("fields") or [])})
    print_table(table, ["at", "kind", "model_id", "changes"], max_width=400)
    return 0


def cmd_crawls(store: Store, args: argparse.Namespace) -> int:
    where = {"spider": args.spider} if args.spider else {}
    rows = store.query("crawls", where, sort=[("started_at", -1)], limit=args.limit)
    if not args.table:
        write_jsonl(rows)
        return 0
    table = [{"_id": r["_id"], "finish_reason": r.get("finish_reason"),
              "complete": r.get("complete"), **(r.get("counts") or {})} for r in rows]
    print_table(table, ["_id", "finish_reason", "complete", "new", "changed", "unchanged",
                        "renamed", "missing"])
    return 0


# -- parser --------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with ``ptm``'s one-line errors (exit 2) instead of usage text and an error."""

    def error(self, message: str) -> NoReturn:
        error(f"{message} (see {self.prog} --help)")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ptm", description=(__doc__ or "ptm").splitlines()[0], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store",
                        help=f"store URI (default $PTM_STORE_URI or {DEFAULT_STORE_URI})")
    parser.add_argument("--timeout", type=positive_seconds, default=READ_TIMEOUT_S,
                        help="seconds MongoDB may spend on one read (maxTimeMS; default "
                             "%(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stats", help="models per hub, owners, last crawl per spider",
                       description="Models (and removed models) per hub, owners, and the "
                                   "last crawl of each spider.")
    p.add_argument("--json", action="store_true", help="one JSON object for scripts")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "query", help="documents matching a MongoDB FILTER (JSONL; --table for people)",
        description="Documents matching FILTER, in MongoDB query syntax: equality, $eq, $ne, "
                    "$gt, $gte, $lt, $lte, $in, $nin, $exists, $regex (RE2 syntax; $options "
                    "imsx), $all, $size, $not, $and, $or, $nor, dotted paths, array "
                    "membership, nested at most 32 levels. The same answer on SQLite and "
                    "MongoDB; anything else is an error (exit 2).",
        epilog="example: ptm query '{\"tasks\": \"fill-mask\", \"downloads\": {\"$gte\": 1000}}' "
               "--sort=-downloads --limit 5 --table --fields _id,downloads")
    p.add_argument("filter", metavar="FILTER", help="JSON object, e.g. '{\"hub\": \"tfhub\"}'")
    p.add_argument("--collection", default="models",
                   help=f"one of {', '.join(COLLECTIONS)} (default models)")
    p.add_argument("--fields", help="comma-separated (dotted) fields to print")
    p.add_argument("--sort", help="comma-separated fields; prefix - for descending "
                                  "(ties: by _id)")
    p.add_argument("--limit", type=non_negative)
    p.add_argument("--table", action="store_true", help="a table for people instead of JSONL")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser(
        "export", help="stream models to JSONL, Parquet or PTMTorrent's schema",
        description="Stream the models (optionally of some hubs or matching a filter) to OUT. "
                    "ptmtorrent writes PTMTorrent's unified schema as one JSON array.")
    p.add_argument("out", metavar="OUT", help="output file ('-' for stdout, not parquet)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--hub", action="append", help="only this hub (repeatable)")
    p.add_argument("--collection", choices=("models", "packages"), default="models",
                   help="models (default) or packages (the downloaded files' records)")
    p.add_argument("--filter", help="MongoDB filter (as ptm query)")
    p.add_argument("--batch-size", type=non_negative, default=5000,
                   help="rows per Parquet row group (default 5000)")
    p.add_argument("--progress", action="store_true",
                   help="progress bar on stderr even when it is not a terminal")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("history", help="how one model changed, crawl after crawl",
                       description="The change records of MODEL_ID (an _id such as "
                                   "huggingface:owner/name, or a hub id), oldest first.")
    p.add_argument("model_id", metavar="MODEL_ID")
    p.add_argument("--limit", type=non_negative)
    p.add_argument("--table", action="store_true", help="a table for people instead of JSONL")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("crawls", help="the crawl records, newest first",
                       description="One record per crawl: arguments, finish reason, complete "
                                   "or not, counts of new/changed/unchanged/missing models.")
    p.add_argument("--spider")
    p.add_argument("--limit", type=non_negative)
    p.add_argument("--table", action="store_true", help="a table for people instead of JSONL")
    p.set_defaults(func=cmd_crawls)
    p = sub.add_parser(
        "verify", help="re-hash every downloaded blob against the package records",
        description="Re-hash every blob of dest/blobs the packages collection names (each "
                    "once) and check every package folder still hard-links it. Exit 1 on any "
                    "mismatch, missing blob or broken link.")
    p.add_argument("--dest", help="packages folder or s3://bucket/prefix (default "
                                  "$PTM_PACKAGES_DIR or data/packages)")
    p.add_argument("--json", action="store_true", help="one JSON object for scripts")
    p.add_argument("--progress", action="store_true",
                   help="progress bar on stderr even when it is not a terminal")
    p.set_defaults(func=cmd_verify)
    from ptmspiders.report import add_parser as add_report_parser  # issue 7: the studies

    add_report_parser(sub)
    return parser


def open_existing(uri: str) -> Store:
    """Reading commands never create or change a store: a mistyped SQLite path is an error,
    not an empty new database; the store is opened read-only; an unreachable MongoDB is an
    error after :data:`SERVER_TIMEOUT_S`."""
    if uri.startswith("sqlite://"):
        from ptmspiders.stores.sqlite import sqlite_path

        path = sqlite_path(uri)
        if path != ":memory:" and not Path(path).is_file():
            raise StoreError(f"no SQLite store at {path} (crawl first, or pass --store)")
    return open_store(uri, readonly=True, server_timeout_s=SERVER_TIMEOUT_S)


def error(message: object) -> None:
    """One line on stderr, whatever the message holds (newlines, escapes, a long driver
    message)."""
    text = escape_controls(" ".join(str(message).split()))
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE - 1] + "…"
    print(f"ptm: error: {text}", file=sys.stderr)


def _store_failure(exc: Exception, uri: str) -> str:
    """A driver's exception as a sentence naming the store (without its password)."""
    name = type(exc).__name__
    if name in ("ServerSelectionTimeoutError", "NetworkTimeout", "AutoReconnect",
                "ConnectionFailure"):
        return (f"cannot reach MongoDB at {redact_uri(uri)} within {SERVER_TIMEOUT_S:g} s: "
                f"{driver_message(exc)}")
    if name == "ExecutionTimeout":
        return "MongoDB stopped the query at the --timeout limit (maxTimeMS): narrow it"
    return f"store {redact_uri(uri)}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """``ptm``; Ctrl-C ends any command with one line and the shell's status for SIGINT."""
    try:
        return run(argv)
    except KeyboardInterrupt:  # was a traceback, wherever the command was
        error("interrupted")
        return 130


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit 2 here
    uri = store_uri(args)
    from pymongo.errors import PyMongoError

    try:
        with open_existing(uri) as store:
            store.limit_reads(args.timeout)
            return int(args.func(store, args))
    except (UsageError, QueryError) as exc:
        error(exc)
        return 2
    except StoreError as exc:
        error(exc)
        return 1
    except BrokenPipeError:
        # A closed pipe (| head) is not a failure; keep Python from complaining at exit.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except (sqlite3.Error, PyMongoError) as exc:
        error(_store_failure(exc, uri))
        return 1
    except (OSError, ValueError) as exc:
        error(exc)
        return 1
    except Exception as exc:  # a bug: still one line; PTM_DEBUG=1 shows the traceback
        if os.environ.get("PTM_DEBUG"):
            raise
        error(f"unexpected {type(exc).__name__}: {exc} (PTM_DEBUG=1 shows where)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
