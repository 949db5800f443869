"""Validation: what reaches a store is what the published schemas promise.

One validator: jsonschema-rs against the JSON Schemas generated from the document classes
(``ptmspiders/items.py``), once per item, after normalisation. Invalid items are dropped with a
reason and counted as ``ptm/dropped/<reason>``. Pydantic's own validation of the same classes
(``items.validate``) would do, but it builds a copy of every object it checks (each file entry,
``raw``): 2.5 to 7 times the cost per model (docs/performance.md, "Model layer").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

import jsonschema_rs
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from ptmspiders.items import to_doc

logger = logging.getLogger(__name__)

_VALIDATORS: dict[str, Any] = {}
_PLAIN = (str, int, float, bool, type(None))


def load_schema(name: str) -> dict[str, Any]:
    """The published JSON Schema ``name`` (generated from its document class)."""
    text = resources.files("ptmspiders").joinpath(f"schema/{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def validator(name: str) -> Any:
    """Built once per process."""
    v = _VALIDATORS.get(name)
    if v is None:
        v = _VALIDATORS[name] = jsonschema_rs.validator_for(load_schema(name))
    return v


def schema_error(name: str, doc: dict[str, Any]) -> str | None:
    """``None`` when ``doc`` is a valid ``name`` document, else a short reason:
    ``missing_field``, or ``invalid_<field>`` for the top-level field in error."""
    check = validator(name)
    try:
        if check.is_valid(doc):
            return None
        error = next(iter(check.iter_errors(doc)))
    except (ValueError, TypeError):  # a value that is not JSON (a set, an object)
        field = next((k for k, v in doc.items() if not _is_json(v)), None)
        return None if field is None else f"invalid_{field}"
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required):
        return "missing_field"
    path = error.instance_path
    return f"invalid_{path[0]}" if path else "invalid_document"


def _is_json(value: Any, is_plain: Callable[[Any, Any], bool] = isinstance) -> bool:
    if is_plain(value, _PLAIN):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    return False


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
