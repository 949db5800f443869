#!/usr/bin/env python
"""Benchmark the sweep's own per-model code, stage by stage, outside a crawl.

Synthetic list pages (``tests.mockhub.synthetic``, 1,000 models each, as a sweep receives
them) go through what the crawl's thread does with them, without Scrapy or a reactor:
decoding the page (``load_json``), parsing its models (``parse_model``), normalising
(``normalize_model``), building and validating the document (``to_doc``, ``schema_error``) and
encoding it for SQLite (``SQLiteStore.encode``, on an in-memory store). Prints the
microseconds per model of each, the best of ``--repeat`` passes over the pages, with the
garbage collector tuned as in a crawl (``ptmspiders.perf.tuning``)::

    .venv/bin/python scripts/bench_stages.py
    .venv/bin/python scripts/bench_stages.py --pages 50 --repeat 7 --json stages.json

Inside a crawl the same code costs more per model (``scripts/bench.py`` measures the whole
sweep); this is for comparing one version of the code with another on the same machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = ("decode", "parse", "normalize", "validate", "encode")


def measure(pages: list[bytes], clock: Callable[[], float] = time.thread_time
            ) -> dict[str, float]:
    """Seconds spent in each stage over all pages (one pass)."""
    from ptmspiders.hub_answers import load_json
    from ptmspiders.items import to_doc
    from ptmspiders.parsers import huggingface as hf
    from ptmspiders.pipelines.normalize import normalize_model
    from ptmspiders.pipelines.validate import schema_error
    from ptmspiders.stores.sqlite import SQLiteStore

    store = SQLiteStore("sqlite:///:memory:")  # only its encode() runs: what a sweep binds
    spent = dict.fromkeys(STAGES, 0.0)
    try:
        for body in pages:
            t0 = clock()
            entries = load_json(body, list)
            t1 = clock()
            items = [hf.parse_model(e, endpoint="https://huggingface.co", source_url=None,
                                    seen_at="2026-01-01T00:00:00.000Z") for e in entries]
            t2 = clock()
            for item in items:
                normalize_model(item)
            t3 = clock()
            docs = [to_doc(item) for item in items]
            invalid = [d["_id"] for d in docs if schema_error("model", d) is not None]
            t4 = clock()
            for doc in docs:
                store.encode(doc)
            t5 = clock()
            if invalid:
                raise SystemExit(f"{len(invalid)} synthetic models failed validation, e.g. "
                                 f"{invalid[0]}: the benchmark would measure a drop path")
            for name, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                                     strict=True):
                spent[name] += seconds
    finally:
        store.close()
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20, help="list pages of 1,000 models")
    parser.add_argument("--offset", type=int, default=50_000,
                        help="first model of the first page (past the trending ones)")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the best one counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.repeat < 1 or args.offset < 0:
        parser.error("--pages and --repeat must be at least 1, --offset at least 0")

    from ptmspiders.config import default
    from ptmspiders.parsers import huggingface as hf

    DEFAULT_THRESHOLDS = default("PTM_GC_THRESHOLDS")
    from tests.mockhub.synthetic import PAGE_SIZE, SyntheticCatalogue

    n_models = args.offset + args.pages * PAGE_SIZE
    catalogue = SyntheticCatalogue(n_models, seed=args.seed)
    pages = [catalogue.page(args.offset + p * PAGE_SIZE, PAGE_SIZE, hf.DEFAULT_EXPAND)
             for p in range(args.pages)]
    gc.collect()
    gc.freeze()  # as a crawl does at start: the pages and modules are never garbage
    gc.set_threshold(*DEFAULT_THRESHOLDS)

    best: dict[str, float] | None = None
    for _ in range(args.repeat):
        spent = measure(pages)
        best = spent if best is None else {k: min(best[k], spent[k]) for k in STAGES}
    assert best is not None
    models = args.pages * PAGE_SIZE
    us = {k: round(best[k] / models * 1e6, 2) for k in STAGES}
    result: dict[str, Any] = {
        "models": models,
        "page_bytes_per_model": round(sum(map(len, pages)) / models),
        "us_per_model": us,
        "us_per_model_total": round(sum(us.values()), 2),
        "repeat": args.repeat,
    }
    width = max(map(len, STAGES)) + 2
    print(f"{models:,} models, {result['page_bytes_per_model']:,} bytes each in the list, "
          f"best of {args.repeat}: microseconds per model")
    for name in STAGES:
        print(f"  {name:<{width}}{us[name]:8.2f}")
    print(f"  {'total':<{width}}{result['us_per_model_total']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
