"""JSON Schema validation: what reaches a store is what the README promises.

Invalid items are dropped with a reason and counted as ``ptm/dropped/<reason>``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema_rs
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from ptmspiders.items import to_doc

logger = logging.getLogger(__name__)

Validator = Callable[[Any], Any]
_VALIDATORS: dict[str, Validator] = {}
_FAST: dict[str, Callable[[Any], bool]] = {}


def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("ptmspiders").joinpath(f"schema/{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def validator(name: str) -> Validator:
    """Compiled once per process: fastjsonschema generates Python code for the schema."""
    v = _VALIDATORS.get(name)
    if v is None:
        v = _VALIDATORS[name] = fastjsonschema.compile(load_schema(name))
    return v


def fast_check(name: str) -> Callable[[Any], bool]:
    """jsonschema-rs (Rust) for the common case, a valid document: about 5x faster than the
    generated Python code. Its verdict "invalid" is never trusted alone (see schema_error)."""
    check = _FAST.get(name)
    if check is None:
        check = _FAST[name] = jsonschema_rs.validator_for(load_schema(name)).is_valid
    return check


def schema_error(name: str, doc: dict[str, Any]) -> str | None:
    """``None`` when valid, else a short reason such as ``invalid_downloads``."""
    try:
        if fast_check(name)(doc):
            return None
    except (ValueError, TypeError):  # a value that is not JSON: the full validator decides
        pass
    try:
        validator(name)(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = [p for p in (exc.path or []) if p != "data"]
        if exc.rule == "required":
            return "missing_field"
        field = str(path[0]) if path else (exc.rule or "document")
        return f"invalid_{field}"
    return None


class ValidatePipeline:
    # Valid items are counted here and added to the stats every this many: one StatsCollector
    # call per item (through Scrapy's spider-argument wrapper) took ~3% of the crawl's thread
    # in a scripts/bench.py --py-spy profile at N=100,000.
    REPORT_EVERY = 1000

    def __init__(self, crawler: Crawler) -> None:
        assert crawler.stats is not None
        self.stats = crawler.stats
        self.valid: dict[str, int] = {}
        self.unreported = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ValidatePipeline:
        return cls(crawler)

    async def process_item(self, item: Any) -> Any:
        name = getattr(item, "schema_name", None)
        if name is None:
            return item
        doc = to_doc(item)
        reason = schema_error(name, doc)
        if reason is not None:
            self.stats.inc_value(f"ptm/dropped/{reason}")
            self.stats.inc_value("ptm/dropped")
            raise DropItem(f"{reason}: {getattr(item, '_id', '?')}")
        collection = item.collection
        self.valid[collection] = self.valid.get(collection, 0) + 1
        self.unreported += 1
        if self.unreported >= self.REPORT_EVERY:
            self.report()
        return item

    def report(self) -> None:
        for collection, n in self.valid.items():
            self.stats.inc_value(f"ptm/valid/{collection}", n)
        self.valid.clear()
        self.unreported = 0

    def close_spider(self) -> None:
        self.report()
