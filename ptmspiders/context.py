"""What one crawl's components share, in one extension: :class:`CrawlContext`.

The store, its writer, the listing checkpoints, the crawl's identity and history counts, the
answers to "is this the hub's first crawl" and the Hugging Face enricher are each made once per
crawl and used by several components (pipelines, extensions, the spider). They live on this
extension, which the project's add-on (``ptmspiders/addon.py``) puts in every crawl, found
through Scrapy's public ``Crawler.get_extension`` by :func:`crawl_context`, from
``spider_opened`` on (components built before that, the other extensions, ask for it in their
signal handlers).

The store is opened on first use and closed, after its writer is drained, when the engine stops.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.crawler import Crawler

from ptmspiders.checkpoint import FILENAME, Checkpoints
from ptmspiders.config import PENDING_BATCHES, PtmSettings, ptm_settings
from ptmspiders.stores import Store, open_store, writer_process
from ptmspiders.stores.base import now_iso
from ptmspiders.stores.writer import BackgroundWriter, StoreWriter

if TYPE_CHECKING:
    from ptmspiders.hf_enrichment import HfEnricher

# How a model compares with its stored document (ptmspiders/history.py).
KINDS = ("new", "changed", "unchanged", "renamed", "reappeared")


@dataclass
class CrawlState:
    """The crawl's identity, and what history's write hook and extension count during it."""

    crawl_id: str
    started_at: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    dropped: set[str] = field(default_factory=set)
    renamed_away: dict[str, str] = field(default_factory=dict)  # old id -> new id
    # The hub had no stored model when the crawl began: its models are the baseline that
    # later crawls are compared with, counted as new but without a record each.
    baseline: bool = False


class CrawlContext:
    """The extension that holds one crawl's shared state (see the module's docstring)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.settings: PtmSettings = ptm_settings(crawler)
        started = now_iso()
        name = getattr(crawler.spidercls, "name", "spider")
        stamp = started.replace("-", "").replace(":", "").replace(".", "")
        self.history = CrawlState(crawl_id=f"{stamp}-{name}-{uuid.uuid4().hex[:6]}",
                                  started_at=started)
        self.enricher: HfEnricher | None = None  # hf_enrichment.enricher() builds it
        self._first_crawl: dict[str, bool] = {}
        self._store: Store | None = None
        self._writer: StoreWriter | None = None
        self._checkpoints: Checkpoints | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlContext:
        return cls(crawler)

    # -- the store and its writer ---------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The crawl's one store (``PTM_STORE_URI``), opened on first use: pipelines, history
        and the spider see the same connection (and, for ``mongomock://``, the same data)."""
        if self._store is None:
            self.use_store(open_store(self.settings.store_uri))
        assert self._store is not None
        return self._store

    def use_store(self, store: Store) -> None:
        """Make ``store`` the crawl's store (closed with the crawl)."""
        self._store = store
        # Connected now, after the extensions that use the store at engine_stopped (the
        # lock's release), so that it closes after them.
        self.crawler.signals.connect(self.close_store, signal=signals.engine_stopped)

    @property
    def writer(self) -> StoreWriter:
        """The crawl's one writer over :attr:`store`, drained before the store closes."""
        if self._writer is None:
            store, s = self.store, self.settings
            kind = ("process" if s.store_writer == "process" and writer_process.supported(store)
                    else "inline" if s.store_writer == "inline" else "thread")
            pending = s.store_writer_max_pending or PENDING_BATCHES[kind]
            if kind == "process":
                self._writer = writer_process.ProcessWriter(
                    store, pending, transaction_size=s.store_transaction_size,
                    max_age=s.store_flush_seconds)
            else:
                self._writer = BackgroundWriter(
                    store, store.for_thread() if kind == "thread" else None, pending,
                    transaction_size=s.store_transaction_size, max_age=s.store_flush_seconds)
        return self._writer

    def sync_writes(self) -> None:
        """Barrier before reading back what this crawl wrote (no-op when nothing was)."""
        if self._writer is not None:
            self._writer.sync()

    def close_store(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def first_crawl_of(self, hub: str) -> bool:
        """Whether the store held no model of ``hub`` when the crawl began.

        Asked first before the crawl writes a model (history at ``spider_opened``, the spider
        in ``start()``) and answered once per hub, so both agree: a hub's first crawl has no
        stored model to compare a page or a batch with."""
        if hub not in self._first_crawl:
            self._first_crawl[hub] = not self.store.exists("models", {"hub": hub})
        return self._first_crawl[hub]

    # -- listing checkpoints -------------------------------------------------------------------
    @property
    def checkpoints(self) -> Checkpoints:
        """The crawl's checkpoint tracker (inactive without ``JOBDIR``)."""
        if self._checkpoints is None:
            jobdir = self.crawler.settings.get("JOBDIR")
            path = None
            if jobdir:
                Path(jobdir).mkdir(parents=True, exist_ok=True)
                path = Path(jobdir) / FILENAME
            self._checkpoints = tracker = Checkpoints(path)
            if tracker.enabled:
                # Dropped or failed items will never be stored: their pages may settle.
                self.crawler.signals.connect(self._settle_dropped, signal=signals.item_dropped)
                self.crawler.signals.connect(self._settle_dropped, signal=signals.item_error)
        return self._checkpoints

    def _settle_dropped(self, item: Any, **kwargs: Any) -> None:
        _id = getattr(item, "_id", None)
        if isinstance(_id, str) and self._checkpoints is not None:
            self._checkpoints.settled([_id])


def crawl_context(crawler: Crawler) -> CrawlContext:
    """The crawl's :class:`CrawlContext` (from ``spider_opened`` on)."""
    context = crawler.get_extension(CrawlContext)
    if context is None:
        raise RuntimeError("ptmspiders.context.CrawlContext is not enabled (ptmspiders.addon."
                           "ProjectAddon adds it): the store, history and checkpoints need it")
    return context
