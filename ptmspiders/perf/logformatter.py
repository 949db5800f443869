"""Scrapy's log lines, minus the per-item and per-response DEBUG ones nobody will see.

Scrapy filters DEBUG at its root handler, after each record is built (caller lookup,
``LogRecord``): at a few thousand items per second that was ~5% of a crawl's CPU. When the
configured level hides DEBUG, ``scraped`` and ``crawled`` return ``None``, which Scrapy reads
as "do not log"; every other message is Scrapy's own.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy.crawler import Crawler
from scrapy.logformatter import LogFormatter, LogFormatterResult


class PtmLogFormatter(LogFormatter):
    def __init__(self, debug: bool = True) -> None:
        self.debug = debug

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PtmLogFormatter:
        level = crawler.settings.get("LOG_LEVEL") or "DEBUG"
        number = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
        return cls(debug=not isinstance(number, int) or number <= logging.DEBUG)

    # Scrapy's stubs say the result is never None; its engine and scraper check for None.
    def scraped(  # type: ignore[override]
        self, item: Any, response: Any, spider: Any
    ) -> LogFormatterResult | None:
        return super().scraped(item, response, spider) if self.debug else None

    def crawled(  # type: ignore[override]
        self, request: Any, response: Any, spider: Any
    ) -> LogFormatterResult | None:
        return super().crawled(request, response, spider) if self.debug else None
