"""Batched writes to the configured store (``PTM_STORE_URI``).

Each document is encoded for its store as it comes (SQLite: its JSON text, see
:class:`ptmspiders.stores.base.Encoded`), buffered per collection, and handed to the writer per
batch at least every ``PTM_STORE_FLUSH_SECONDS``; the writer commits at least that often too, so
a killed crawl loses at most about twice that. Batches are written behind the crawl on a thread
(:mod:`ptmspiders.stores.writer`). With ``JOBDIR``, each committed batch tells the listing
checkpoints (:mod:`ptmspiders.checkpoint`) which ids are now durable, so a resumed crawl
refetches exactly the pages whose models were not yet written.

A document larger than ``PTM_MAX_DOC_BYTES`` as encoded is cut to fit (:mod:`ptmspiders.doc_size`)
before it is buffered: the model is kept, what was cut is recorded in ``extra.truncated`` and
counted as ``ptm/truncated/<field>``. The SQLite store's encoding gives the size for free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, NotConfigured

from ptmspiders import doc_size
from ptmspiders.config import ptm_settings
from ptmspiders.context import CrawlContext, crawl_context
from ptmspiders.items import to_doc
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.spiders.base import mark_crawl_incomplete
from ptmspiders.stores import redact_uri
from ptmspiders.stores.base import Doc, Encoded, WriteDoc, doc_id
from ptmspiders.stores.writer import StoreWriteError, StoreWriter

logger = logging.getLogger(__name__)


class StorePipeline:
    def __init__(self, crawler: Crawler, batch_size: int, flush_seconds: float,
                 max_doc_bytes: int = doc_size.DEFAULT_MAX_DOC_BYTES) -> None:
        assert crawler.stats is not None
        self.crawler = crawler
        self.stats = crawler.stats
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_doc_bytes = max_doc_bytes  # 0: no bound
        self.buffers: dict[str, list[WriteDoc]] = {}
        self.last_flush = time.monotonic()
        self.context: CrawlContext | None = None
        self.writer: StoreWriter | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        s = ptm_settings(crawler)
        if not s.store_enabled:
            raise NotConfigured("PTM_STORE_ENABLED is off")
        return cls(crawler, s.store_batch_size, s.store_flush_seconds, s.max_doc_bytes)

    def open_spider(self) -> None:
        self.context = crawl_context(self.crawler)
        logger.info("Storing items in %s", redact_uri(self.context.store.uri))
        self.writer = self.context.writer

    async def process_item(self, item: Any) -> Any:
        collection = getattr(item, "collection", None)
        if collection is None:
            return item
        assert self.writer is not None
        doc = to_doc(item)
        try:
            encoded = self.writer.encode(doc)
            if self.max_doc_bytes:
                # SQLite's encoding has the size; a store that takes plain documents is
                # measured as JSON (which also finds what it could not hold, as above).
                size = (len(encoded.data) if isinstance(encoded, Encoded)
                        else doc_size.size_of(doc))
                if size > self.max_doc_bytes:
                    encoded = self.writer.encode(self._fit(item, doc, size))
        except TypeError as exc:  # orjson's JSONEncodeError: e.g. an integer beyond 64 bits
            self._drop("unencodable", f"{doc.get('_id', '?')}: {exc}", exc)
        buf = self.buffers.setdefault(collection, [])
        buf.append(encoded)
        if len(buf) >= self.batch_size or time.monotonic() - self.last_flush > self.flush_seconds:
            self.flush()
        return item

    def _fit(self, item: Any, doc: Doc, size: int) -> Doc:
        """``doc`` cut to ``PTM_MAX_DOC_BYTES``, valid still, and set on the item too (so that
        what follows this stage sees what is stored); a drop when that cannot be."""
        _id = doc.get("_id", "?")
        new, cuts = doc_size.fit(doc, size, self.max_doc_bytes)
        name = getattr(item, "schema_name", None)
        left = doc_size.size_of(new)
        if left > doc_size.HARD_MAX_DOC_BYTES:
            self._drop("oversized", f"{str(_id)[:200]}: even its identity exceeds what a store "
                       "can hold")
        if left > self.max_doc_bytes:
            # Its identity alone is over the bound (a model id of a megabyte): kept, the rest
            # cut, since dropping it would lose the model's one record.
            self.stats.inc_value("ptm/oversized_identity")
        reason = schema_error(name, new) if name is not None else None
        if reason is not None:
            self._drop("oversized", f"{str(_id)[:200]}: cut to fit PTM_MAX_DOC_BYTES, it was "
                       f"{reason}")
        fields = doc_size.fields_cut(cuts)
        self.stats.inc_value("ptm/truncated")
        for field in fields:
            self.stats.inc_value(f"ptm/truncated/{field}")
        logger.warning("Cut %.200s from %d bytes to fit PTM_MAX_DOC_BYTES=%d: %s", _id, size,
                       self.max_doc_bytes, ", ".join(fields))
        if not isinstance(item, dict):
            for field in fields:
                setattr(item, field, new[field])
            if "extra" in new:
                item.extra = new["extra"]
        return new

    def _drop(self, reason: str, detail: str, cause: BaseException | None = None) -> NoReturn:
        self.stats.inc_value(f"ptm/dropped/{reason}")
        self.stats.inc_value("ptm/dropped")
        raise DropItem(f"{reason}: {detail}") from cause

    def flush(self) -> None:
        assert self.writer is not None
        self.last_flush = time.monotonic()
        for collection, docs in self.buffers.items():
            if docs:
                self.buffers[collection] = []
                self._guard(self.writer.submit, collection, docs,
                            self._written(collection, docs))

    def _guard(self, call: Callable[..., None], *args: Any) -> bool:
        """A failed write is logged and counted; the crawl and the other batches go on."""
        try:
            call(*args)
        except StoreWriteError as exc:
            self.stats.inc_value(f"ptm/store/failed/{exc.collection}", exc.count)
            logger.error("Store write failed: %s", exc)
            # What the hub listed is not all stored: no removals, and a non-zero exit.
            mark_crawl_incomplete(self.crawler, "store_write_failed")
            return False
        return True

    def _written(self, collection: str, docs: list[WriteDoc]) -> Callable[[int], None]:
        # Only the ids wait for the commit (up to PTM_STORE_TRANSACTION_SIZE documents' worth):
        # holding the documents until then would multiply the crawl's memory.
        ids = [doc_id(d) for d in docs]
        assert self.context is not None
        checkpoints = self.context.checkpoints

        def done(written: int) -> None:
            self.stats.inc_value(f"ptm/stored/{collection}", written)
            checkpoints.settled(ids)
        return done

    def close_spider(self) -> None:
        if self.writer is not None:
            self.flush()
            while not self._guard(self.writer.sync):
                pass  # every failure of the last batches is reported, not only the first
            # Non-zero: the store, not the hub or the parsing, set the crawl's pace.
            self.stats.set_value("ptm/store/wait_seconds", round(self.writer.waited, 3))
            self.stats.set_value("ptm/store/writer_busy_seconds", round(self.writer.busy, 3))
            for name, value in self.writer.counters().items():
                self.stats.set_value(f"ptm/store/{name}", value)
