#!/usr/bin/env python
"""Benchmark the document layer per model, outside a crawl: building the item in the parser
(``parse_model``), its document (``to_doc``), and validating it, by the crawl's validator
(jsonschema-rs against the generated schema, ``schema_error``) and by pydantic with the same
class (``items.validate``, which the crawl does not use: this shows why).

Synthetic list pages (``tests.mockhub.synthetic``) as in ``scripts/bench_stages.py``; thread
CPU time, the best of ``--repeat`` passes, microseconds per model::

    .venv/bin/python scripts/bench_documents.py --pages 10 --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10, help="list pages of 1,000 models")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the best one counts")
    args = parser.parse_args(argv)

    from ptmspiders.hub_answers import load_json
    from ptmspiders.items import to_doc
    from ptmspiders.items import validate as validate_item
    from ptmspiders.parsers import huggingface as hf
    from ptmspiders.pipelines.normalize import normalize_model
    from ptmspiders.pipelines.validate import schema_error
    from tests.mockhub.synthetic import PAGE_SIZE, SyntheticCatalogue

    catalogue = SyntheticCatalogue(50_000 + args.pages * PAGE_SIZE, seed=0)
    entries = [e for p in range(args.pages) for e in load_json(
        catalogue.page(50_000 + p * PAGE_SIZE, PAGE_SIZE, hf.DEFAULT_EXPAND), list)]
    items = [normalize_model(hf.parse_model(e, endpoint="https://huggingface.co",
                                            source_url=None, seen_at="2026-01-01T00:00:00Z"))
             for e in entries]
    docs = [to_doc(i) for i in items]
    assert all(schema_error("model", d) is None for d in docs)

    def build() -> None:
        for e in entries:
            hf.parse_model(e, endpoint="https://huggingface.co", source_url=None,
                           seen_at="2026-01-01T00:00:00Z")

    def dump() -> None:
        for i in items:
            to_doc(i)

    def validate() -> None:
        for d in docs:
            schema_error("model", d)

    def validate_pydantic() -> None:
        for i in items:
            validate_item(i)

    print(f"{len(docs):,} models, best of {args.repeat}: microseconds per model (thread CPU)")
    for name, step in (("parse_model", build), ("to_doc", dump), ("validate", validate),
                       ("pydantic validate", validate_pydantic)):
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.thread_time()
            step()
            best = min(best, time.thread_time() - t0)
        print(f"  {name:<26}{best / len(docs) * 1e6:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
