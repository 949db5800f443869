"""Batched writes to the configured store (``PTM_STORE_URI``).

Items are buffered per collection and written in one transaction / bulk call per batch, and at
least every ``PTM_STORE_FLUSH_SECONDS``, so a killed crawl loses at most that much. With
``JOBDIR``, each flush tells the listing checkpoints (:mod:`ptmspiders.checkpoint`) which ids are
now durable, so a resumed crawl refetches exactly the pages whose models were still buffered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from ptmspiders.checkpoint import crawler_checkpoints
from ptmspiders.items import to_doc
from ptmspiders.stores import Doc, Store, crawler_store, redact_uri

logger = logging.getLogger(__name__)


class StorePipeline:
    def __init__(self, crawler: Crawler, batch_size: int, flush_seconds: float) -> None:
        assert crawler.stats is not None
        self.crawler = crawler
        self.stats = crawler.stats
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.buffers: dict[str, list[Doc]] = {}
        self.last_flush = time.monotonic()
        self.store: Store | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        s = crawler.settings
        if not s.getbool("PTM_STORE_ENABLED", True):
            raise NotConfigured("PTM_STORE_ENABLED is off")
        batch = s.getint("PTM_STORE_BATCH_SIZE", 500)
        flush = s.getfloat("PTM_STORE_FLUSH_SECONDS", 5.0)
        if batch < 1 or flush <= 0:
            raise ValueError("PTM_STORE_BATCH_SIZE must be >= 1 and PTM_STORE_FLUSH_SECONDS > 0")
        return cls(crawler, batch, flush)

    def open_spider(self) -> None:
        self.store = crawler_store(self.crawler)
        logger.info("Storing items in %s", redact_uri(self.store.uri))

    def process_item(self, item: Any) -> Any:
        collection = getattr(item, "collection", None)
        if collection is None:
            return item
        buf = self.buffers.setdefault(collection, [])
        buf.append(to_doc(item))
        if len(buf) >= self.batch_size or time.monotonic() - self.last_flush > self.flush_seconds:
            self.flush()
        return item

    def flush(self) -> None:
        assert self.store is not None
        durable: list[str] = []
        for collection, docs in self.buffers.items():
            if docs:
                written = self.store.upsert(collection, docs)
                self.stats.inc_value(f"ptm/stored/{collection}", written)
                durable.extend(d["_id"] for d in docs)
                docs.clear()
        self.last_flush = time.monotonic()
        if durable:
            crawler_checkpoints(self.crawler).settled(durable)

    def close_spider(self) -> None:
        if self.store is not None:
            self.flush()
