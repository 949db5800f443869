"""The ``ptm`` command: look at what the spiders stored, on either store.

Exit codes scripts can trust: 0 ok, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ptmspiders.stores import DEFAULT_STORE_URI, Doc, Store, StoreError, open_store


class UsageError(Exception):
    """A wrong argument: exit code 2."""


def store_uri(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get("PTM_STORE_URI") or DEFAULT_STORE_URI)


def dotted(doc: Doc, field: str) -> Any:
    value: Any = doc
    for part in field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def print_table(rows: Sequence[Doc], fields: Sequence[str], out: Any = sys.stdout) -> None:
    cells = [[_cell(dotted(r, f)) for f in fields] for r in rows]
    widths = [max([len(f), *(len(c[i]) for c in cells)]) for i, f in enumerate(fields)]
    print("  ".join(f.ljust(w) for f, w in zip(fields, widths, strict=True)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)), file=out)


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        text = ""
    elif isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_stats(store: Store, args: argparse.Namespace) -> int:
    per_hub: Counter[str] = Counter()
    for doc in store.find("models"):
        per_hub[str(doc.get("hub"))] += 1
    owners: Counter[str] = Counter()
    verified = 0
    for doc in store.find("owners"):
        owners[str(doc.get("hub"))] += 1
        verified += bool(doc.get("is_verified"))
    result = {
        "store": store.uri,
        "models": dict(sorted(per_hub.items())),
        "models_total": sum(per_hub.values()),
        "owners": dict(sorted(owners.items())),
        "owners_verified": verified,
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(f"Store: {store.uri}")
    print_table([{"hub": h, "models": n, "owners": owners.get(h, 0)}
                 for h, n in sorted(per_hub.items())], ["hub", "models", "owners"])
    print(f"Total: {result['models_total']} models, {sum(owners.values())} owners "
          f"({verified} verified)")
    return 0


def parse_filter(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"FILTER is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("FILTER must be a JSON object, e.g. '{\"hub\": \"huggingface\"}'")
    return value


def cmd_query(store: Store, args: argparse.Namespace) -> int:
    where = parse_filter(args.filter)
    for key, value in where.items():
        if key.startswith("$") or isinstance(value, dict):
            raise UsageError(f"operator filters are not supported yet: {key}")
    docs: Iterable[Doc] = store.find(args.collection, where)
    rows = list(docs)
    if args.sort:
        for key in reversed(args.sort.split(",")):
            desc = key.startswith("-")
            name = key.lstrip("+-")
            rows.sort(key=lambda d: (dotted(d, name) is None, dotted(d, name) or 0), reverse=False)
            if desc:
                rows.sort(key=lambda d: (dotted(d, name) is not None, dotted(d, name) or 0),
                          reverse=True)
    if args.limit is not None:
        rows = rows[: args.limit]
    fields = args.fields.split(",") if args.fields else None
    if fields:
        rows = [{f: dotted(r, f) for f in fields} for r in rows]
    if args.table:
        print_table(rows, fields or ["_id", "hub", "owner", "downloads", "license"])
    else:
        for r in rows:
            sys.stdout.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptm", description=__doc__.splitlines()[0])
    parser.add_argument("--store",
                        help=f"store URI (default $PTM_STORE_URI or {DEFAULT_STORE_URI})")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stats", help="models per hub, owners")
    p.add_argument("--json", action="store_true", help="one JSON object for scripts")
    p.set_defaults(func=cmd_stats)
    p = sub.add_parser("query", help="documents matching a MongoDB-style FILTER, as JSONL")
    p.add_argument("filter", metavar="FILTER", help="JSON object, e.g. '{\"hub\": \"tfhub\"}'")
    p.add_argument("--collection", default="models")
    p.add_argument("--fields", help="comma-separated (dotted) fields to print")
    p.add_argument("--sort", help="comma-separated fields; prefix - for descending")
    p.add_argument("--limit", type=int)
    p.add_argument("--table", action="store_true", help="a table for people instead of JSONL")
    p.set_defaults(func=cmd_query)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with open_store(store_uri(args)) as store:
            return int(args.func(store, args))
    except UsageError as exc:
        print(f"ptm: error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"ptm: store error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
