"""Stores, chosen by ``PTM_STORE_URI``: ``sqlite:///path`` (default) or ``mongodb://...``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptmspiders.config import PtmSettings, ptm_settings
from ptmspiders.stores.base import COLLECTIONS, Doc, Store, StoreError, redact_uri

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

DEFAULT_STORE_URI: str = PtmSettings.model_fields["store_uri"].default

__all__ = ["COLLECTIONS", "DEFAULT_STORE_URI", "Doc", "Store", "StoreError", "crawler_store",
           "first_crawl_of", "open_store", "redact_uri"]


def open_store(uri: str, *, readonly: bool = False,
               server_timeout_s: float | None = None) -> Store:
    """The store at ``uri``. ``readonly`` (``ptm``'s reading commands): an existing store,
    opened so that nothing is created or written. For MongoDB, ``server_timeout_s`` bounds the
    wait for a server."""
    if uri.startswith("sqlite://"):
        from ptmspiders.stores.sqlite import SQLiteStore

        return SQLiteStore(uri, readonly=readonly)
    if uri.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        from ptmspiders.stores.mongo import SERVER_TIMEOUT_S, MongoStore

        return MongoStore(uri, readonly=readonly,
                          server_timeout_s=server_timeout_s or SERVER_TIMEOUT_S)
    raise StoreError(
        f"unsupported PTM_STORE_URI {redact_uri(uri)!r}: use sqlite:///path or mongodb://host/db"
    )


def crawler_store(crawler: Crawler) -> Store:
    """The crawl's one store, opened on first use and closed when the engine stops.

    Shared so that pipelines and incremental logic see the same connection (and, for
    ``mongomock://``, the same in-memory data).
    """
    store: Store | None = getattr(crawler, "_ptm_store", None)
    if store is None:
        from scrapy import signals

        store = open_store(ptm_settings(crawler).store_uri)
        crawler._ptm_store = store  # type: ignore[attr-defined]

        def _close() -> None:
            store_ = getattr(crawler, "_ptm_store", None)
            if store_ is not None:
                store_.close()
                crawler._ptm_store = None  # type: ignore[attr-defined]

        crawler.signals.connect(_close, signal=signals.engine_stopped, weak=False)
    return store


def first_crawl_of(crawler: Crawler, hub: str) -> bool:
    """Whether the crawl's store held no model of ``hub`` when the crawl began.

    Asked first before the crawl writes a model (history at ``spider_opened``, the spider in
    ``start()``) and answered once per crawl and hub, so both agree: a hub's first crawl has
    no stored model to compare a page or a batch with."""
    answers: dict[str, bool] | None = getattr(crawler, "_ptm_first_crawl", None)
    if answers is None:
        answers = {}
        crawler._ptm_first_crawl = answers  # type: ignore[attr-defined]
    if hub not in answers:
        answers[hub] = not crawler_store(crawler).exists("models", {"hub": hub})
    return answers[hub]
