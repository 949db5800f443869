"""Validation: what reaches a store is what the published schemas promise.

Each document is validated once, after normalisation, by its pydantic class
(``ptmspiders/items.py``). Invalid items are dropped with a reason and counted as
``ptm/dropped/<reason>``.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

from pydantic import ValidationError
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from ptmspiders.items import DOCUMENTS, to_doc

logger = logging.getLogger(__name__)


def load_schema(name: str) -> dict[str, Any]:
    """The published JSON Schema ``name`` (generated from the document class)."""
    text = resources.files("ptmspiders").joinpath(f"schema/{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_error(name: str, doc: dict[str, Any]) -> str | None:
    """``None`` when ``doc`` is a valid ``name`` document, else a short reason:
    ``missing_field``, or ``invalid_<field>`` for the first top-level field in error."""
    try:
        DOCUMENTS[name].__pydantic_validator__.validate_python(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        if first["type"] == "missing":
            return "missing_field"
        loc = first["loc"]
        return f"invalid_{loc[0]}" if loc else "invalid_document"
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
        # The last valid item and its document: StorePipeline, when it comes right after this
        # stage, stores that document instead of building it again.
        self.last: tuple[Any, dict[str, Any]] | None = None

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
        self.last = (item, doc)
        return item

    def report(self) -> None:
        for collection, n in self.valid.items():
            self.stats.inc_value(f"ptm/valid/{collection}", n)
        self.valid.clear()
        self.unreported = 0

    def close_spider(self) -> None:
        self.report()
        self.last = None
