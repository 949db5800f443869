"""Stores, chosen by ``PTM_STORE_URI``: ``sqlite:///path`` (default) or ``mongodb://...``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ptmspiders.config import PtmSettings
from ptmspiders.stores.base import (
    COLLECTIONS,
    Doc,
    Store,
    StoreError,
    driver_message,
    redact_uri,
)

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

DEFAULT_STORE_URI: str = PtmSettings.model_fields["store_uri"].default

__all__ = ["COLLECTIONS", "DEFAULT_STORE_URI", "Doc", "Store", "StoreError", "crawler_store",
           "driver_message", "first_crawl_of", "is_store_file", "open_store", "redact_uri"]


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


def is_store_file(uri: str, path: Path) -> bool:
    """Whether ``path`` is (or links to) a file of the SQLite store at ``uri``: its database,
    WAL, shared memory or journal. Writing an export or a feed there destroyed the store."""
    if not uri.startswith("sqlite://") or not path.exists():
        return False
    from ptmspiders.stores.sqlite import sqlite_path

    db = sqlite_path(uri)
    return db != ":memory:" and any(
        Path(db + suffix).exists() and os.path.samefile(path, db + suffix)
        for suffix in ("", "-wal", "-shm", "-journal"))


def crawler_store(crawler: Crawler) -> Store:
    """The crawl's one store (:attr:`ptmspiders.context.CrawlContext.store`)."""
    from ptmspiders.context import crawl_context  # which imports this package

    return crawl_context(crawler).store


def first_crawl_of(crawler: Crawler, hub: str) -> bool:
    """Whether the crawl's store held no model of ``hub`` when the crawl began
    (:meth:`ptmspiders.context.CrawlContext.first_crawl_of`)."""
    from ptmspiders.context import crawl_context

    return crawl_context(crawler).first_crawl_of(hub)
