#!/usr/bin/env python
"""Benchmark the crawl's three item pipeline stages per model, as a crawl runs them.

Where ``scripts/bench_stages.py`` times the functions, this runs the stages themselves
(``NormalizePipeline``, ``ValidatePipeline``, ``StorePipeline`` into a fresh SQLite store, in
``ITEM_PIPELINES`` order, so the store takes the document the validation stage checked) on
synthetic Hub models (``tests.mockhub.synthetic``), each item through the three ``process_item``
calls in turn. Prints the microseconds of thread CPU per model of each stage, the best of
``--repeat`` passes (the store's writer runs on its own thread, outside this measure)::

    .venv/bin/python scripts/bench_pipelines.py --pages 10 --repeat 5
    .venv/bin/python scripts/bench_pipelines.py --pages 1 --repeat 1 --json pipelines.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = ("normalize", "validate", "store")


def measure(entries: list[Any], workdir: Path) -> dict[str, float]:
    """Seconds of this thread's CPU in each stage over all entries (one pass)."""
    from scrapy.utils.misc import build_from_crawler

    from ptmspiders.context import crawl_context
    from ptmspiders.parsers import huggingface as hf
    from ptmspiders.pipelines import NormalizePipeline, StorePipeline, ValidatePipeline
    from ptmspiders.spiders.hf_models import HfModelsSpider
    from tests.conftest import process, ptm_crawler

    pipelines = {NormalizePipeline: 300, ValidatePipeline: 400, StorePipeline: 800}
    crawler = ptm_crawler(HfModelsSpider, {
        "PTM_STORE_URI": f"sqlite:///{workdir}/bench.sqlite", "ITEM_PIPELINES": pipelines})
    crawler.stats.open_spider()
    stages = [build_from_crawler(cls, crawler) for cls in pipelines]
    store = stages[2]
    store.open_spider()
    items = [hf.parse_model(e, endpoint="https://huggingface.co", source_url=None,
                            seen_at="2026-01-01T00:00:00.000Z") for e in entries]
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.thread_time
    try:
        for item in items:
            t0 = clock()
            process(stages[0], item)
            t1 = clock()
            process(stages[1], item)
            t2 = clock()
            process(store, item)
            t3 = clock()
            spent["normalize"] += t1 - t0
            spent["validate"] += t2 - t1
            spent["store"] += t3 - t2
    finally:
        store.close_spider()
        crawl_context(crawler).close_store()
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10, help="list pages of 1,000 models")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the best one counts")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.repeat < 1:
        parser.error("--pages and --repeat must be at least 1")

    import logging

    from ptmspiders.config import default
    from ptmspiders.hub_answers import load_json
    from ptmspiders.parsers import huggingface as hf
    from tests.mockhub.synthetic import PAGE_SIZE, SyntheticCatalogue

    logging.disable(logging.INFO)
    offset = 50_000  # past the trending models, as scripts/bench_stages.py
    catalogue = SyntheticCatalogue(offset + args.pages * PAGE_SIZE, seed=0)
    entries = [e for p in range(args.pages) for e in load_json(
        catalogue.page(offset + p * PAGE_SIZE, PAGE_SIZE, hf.DEFAULT_EXPAND), list)]
    gc.collect()
    gc.freeze()
    gc.set_threshold(*default("PTM_GC_THRESHOLDS"))
    best: dict[str, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            workdir = Path(tmp) / str(k)
            workdir.mkdir()
            spent = measure(entries, workdir)
            best = spent if best is None else {s: min(best[s], spent[s]) for s in STAGES}
    assert best is not None
    us = {s: round(best[s] / len(entries) * 1e6, 2) for s in STAGES}
    print(f"{len(entries):,} models, best of {args.repeat}: microseconds per model "
          "(thread CPU)")
    for s in STAGES:
        print(f"  {s:<12}{us[s]:8.2f}")
    print(f"  {'total':<12}{sum(us.values()):8.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "models": len(entries), "repeat": args.repeat, "us_per_model": us,
            "us_per_model_total": round(sum(us.values()), 2)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
