#!/usr/bin/env python
"""Benchmark the SQLite store's write path alone, as the store grows.

Builds model documents the way a sweep does (synthetic list pages from ``tests.mockhub``,
``parse_models_page``, ``normalize_model``, ``to_doc``), then writes them in store batches the
way the writer thread does: history's comparison (``ModelComparison.compare``) and the upsert,
committed every ``--transaction`` models.
Prints the microseconds per model of each, per ``--every`` models, so the cost of random
index inserts at scale shows (``scripts/bench.py`` measures the whole crawl)::

    .venv/bin/python scripts/bench_store.py --n 200000
    .venv/bin/python scripts/bench_store.py --n 200000 --first-crawl   # history's baseline
    .venv/bin/python scripts/bench_store.py --n 200000 --indexes hub_uid
    .venv/bin/python scripts/bench_store.py --n 200000 --wal-autocheckpoint 1000
    .venv/bin/python scripts/bench_store.py --n 600000 --first-crawl --no-checkpoint-thread
    .venv/bin/python scripts/bench_store.py --n 300000 --transaction 500   # a commit per batch
    .venv/bin/python scripts/bench_store.py --n 300000 --pragma cache_size=-65536
    .venv/bin/python scripts/bench_store.py --n 1000000 --first-crawl --indexes hub,downloads \
        --index-after   # the other indexes built once, after the load
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="models written")
    parser.add_argument("--batch", type=int, default=500, help="models per store batch")
    parser.add_argument("--transaction", type=int, metavar="MODELS",
                        help="models per commit, as the writer thread groups batches "
                             "(default: PTM_STORE_TRANSACTION_SIZE's default)")
    parser.add_argument("--every", type=int, default=50_000, help="report interval (models)")
    parser.add_argument("--first-crawl", action="store_true",
                        help="history in baseline mode (a hub's first crawl)")
    parser.add_argument("--indexes", metavar="FIELDS",
                        help="comma-separated models fields to index instead of the store's "
                             "(e.g. hub_uid): what each secondary index costs")
    parser.add_argument("--index-after", action="store_true",
                        help="after the writes, build the store's models indexes that "
                             "--indexes left out, timing each (a bulk load's alternative)")
    parser.add_argument("--wal-autocheckpoint", type=int, metavar="PAGES",
                        help="SQLite's checkpoint interval instead of the store's "
                             "(SQLite's own default is 1000)")
    parser.add_argument("--pragma", action="append", default=[], metavar="NAME=VALUE",
                        help="a SQLite PRAGMA set on the store's connection after it opens "
                             "(repeatable), e.g. cache_size=-65536")
    parser.add_argument("--checkpoint-thread", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="checkpoint on a thread of its own, as the crawl's writer does "
                             "(off: SQLite's automatic checkpoint in the writing connection)")
    parser.add_argument("--workdir", help="where the store goes (default: a temp dir)")
    parser.add_argument("--json", metavar="PATH", help="write the rows here")
    args = parser.parse_args(argv)
    from ptmspiders.stores.writer import DEFAULT_TRANSACTION_SIZE

    if args.transaction is None:
        args.transaction = DEFAULT_TRANSACTION_SIZE
    if min(args.n, args.batch, args.every, args.transaction) < 1:
        parser.error("--n, --batch, --every and --transaction must be >= 1")

    from scrapy.utils.test import get_crawler

    from ptmspiders.config import default
    from ptmspiders.context import crawl_context
    from ptmspiders.history import ModelHistory, crawl_state
    from ptmspiders.items import to_doc
    from ptmspiders.parsers import huggingface as hf
    from ptmspiders.pipelines.normalize import normalize_model
    from ptmspiders.spiders.hf_models import HfModelsSpider
    from ptmspiders.stores import sqlite as sqlite_store
    from ptmspiders.stores.base import WriteDoc
    from ptmspiders.stores.sqlite import SQLiteStore
    from tests.mockhub.synthetic import SyntheticCatalogue

    gc.set_threshold(*default("PTM_GC_THRESHOLDS"))  # as a crawl runs (ptmspiders.perf.tuning)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ptm-bench-store-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "store.sqlite"
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    default_indexes = sqlite_store.INDEXED_FIELDS["models"]
    chosen = default_indexes
    if args.indexes is not None:
        chosen = tuple(f.strip() for f in args.indexes.split(",") if f.strip())
        sqlite_store.INDEXED_FIELDS = {**sqlite_store.INDEXED_FIELDS, "models": chosen}
    # As the crawl's writer thread writes: its connection's commits are checkpointed by a
    # thread of their own (--no-checkpoint-thread: by the committing connection itself).
    store = SQLiteStore(f"sqlite:///{path}", checkpoint_thread=args.checkpoint_thread)
    if args.wal_autocheckpoint is not None:
        store.conn.execute(f"PRAGMA wal_autocheckpoint={int(args.wal_autocheckpoint)}")
    for pragma in args.pragma:
        name, sep, value = pragma.partition("=")
        if not sep or not name.replace("_", "").isalpha() or not value.lstrip("-").isalnum():
            parser.error(f"--pragma takes NAME=VALUE, not {pragma!r}")
        store.conn.execute(f"PRAGMA {name}={value}")
    # The crawl's context extension (ptmspiders/context.py) holds the history's state.
    crawler = get_crawler(HfModelsSpider,
                          {"EXTENSIONS": {"ptmspiders.context.CrawlContext": 0}})
    crawl_context(crawler).use_store(store)
    history = ModelHistory(crawler, crawl_state(crawler))
    history.state.baseline = args.first_crawl
    comparison = history.comparison()
    catalogue = SyntheticCatalogue(args.n, 0)
    fields = ["_id", "id", *hf.DEFAULT_EXPAND]

    rows: list[dict[str, Any]] = []
    compare_s = upsert_s = 0.0
    done = since = uncommitted = 0
    page = 5000
    for start in range(0, args.n, page):
        body = b"[" + b",".join(catalogue.render(i, fields)
                                for i in range(start, min(args.n, start + page))) + b"]"
        items, _bad = hf.parse_models_page(body, endpoint="http://x", source_url="http://x",
                                           seen_at="2026-01-01T00:00:00.000Z")
        # Encoded as the crawl's thread hands them to the writer (SQLite's JSON bytes).
        docs: list[WriteDoc] = [store.encode(to_doc(normalize_model(item))) for item in items]
        for i in range(0, len(docs), args.batch):
            batch = docs[i:i + args.batch]
            if not uncommitted:
                store.begin()
            t = time.perf_counter()
            comparison.compare(store, batch)
            compare_s += time.perf_counter() - t
            t = time.perf_counter()
            store.upsert("models", batch)
            uncommitted += len(batch)
            if uncommitted >= args.transaction or done + len(batch) == args.n:
                store.commit()
                uncommitted = 0
            upsert_s += time.perf_counter() - t
            done += len(batch)
            since += len(batch)
            if since >= args.every or done == args.n:
                row = {"models": done, "compare_us": round(1e6 * compare_s / since, 1),
                       "upsert_us": round(1e6 * upsert_s / since, 1)}
                rows.append(row)
                print(f"{done:>10,} models  compare {row['compare_us']:7.1f} us/model  "
                      f"upsert {row['upsert_us']:7.1f} us/model", flush=True)
                compare_s = upsert_s = 0.0
                since = 0
    built: dict[str, float] = {}
    if args.index_after:
        for field in default_indexes:
            if field in chosen:
                continue
            chosen = (*chosen, field)
            sqlite_store.INDEXED_FIELDS = {**sqlite_store.INDEXED_FIELDS, "models": chosen}
            store._tables.discard("models")  # table() creates the indexes it lacks
            t = time.perf_counter()
            store.table("models")
            built[field] = round(time.perf_counter() - t, 2)
            print(f"index on {field} built in {built[field]:.1f} s", flush=True)
        if built:
            print(f"indexes built after the load: {sum(built.values()):.1f} s, "
                  f"{1e6 * sum(built.values()) / args.n:.1f} us/model")
    wal = Path(f"{path}-wal")  # SQLite reuses the file from its start: its size is the peak
    wal_mb = wal.stat().st_size / 2**20 if wal.exists() else 0.0
    print(f"WAL file before close: {wal_mb:,.0f} MB")
    counters = store.counters()
    if counters:
        print(f"checkpoint thread: {counters['checkpoints']} checkpoints, "
              f"{counters['checkpoint_seconds']:.1f} s")
    store.close()
    size = sum(p.stat().st_size for p in workdir.glob("store.sqlite*"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"store {size / 2**20:,.0f} MB, peak RSS {peak:,.0f} MB, {os.cpu_count()} CPUs")
    if not args.workdir:  # a temp dir: 4.8 GB per million models, gone with the run
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"n": args.n, "batch": args.batch, "transaction": args.transaction,
             "first_crawl": args.first_crawl,
             "indexes": args.indexes, "wal_autocheckpoint": args.wal_autocheckpoint,
             "pragmas": args.pragma, "checkpoint_thread": args.checkpoint_thread,
             "store_counters": counters, "wal_peak_mb": round(wal_mb, 1), "rows": rows,
             "indexes_built_after_s": built,
             "store_mb": round(size / 2**20, 1), "peak_rss_mb": round(peak, 1)}, indent=2)
            + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
