"""The garbage collector tuned for long sweeps (``PTM_PERF_GC``).

A list page of the Hub decodes into about fifty thousand dicts and lists, and a sweep keeps a
few pages of them alive (items in the pipelines, batches waiting for the store). With
CPython's default thresholds (700, 10, 10) the collector then runs dozens of times per page and
every full collection walks every live object. Raising the young threshold to about one page
of containers, and freezing what start-up allocated (modules, classes, settings: objects that
never become garbage), keeps the collector's cost small without turning it off: cycles are
still found, a page later.

The thresholds are process-wide: applied when the first crawl in a process starts and restored
when the last one stops, so crawls run side by side (tests, ``CrawlerProcess``) share them.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.statscollectors import StatsCollector

from ptmspiders.config import ptm_settings

logger = logging.getLogger(__name__)


# Crawls of this process that applied the tuning, and the thresholds to restore after the last.
_active: list[InterpreterTuning] = []
_saved: tuple[int, ...] | None = None


class InterpreterTuning:
    """Raises the collector's thresholds and freezes start-up objects for the crawl; counts
    collections and their seconds (``ptm/gc/...``)."""

    def __init__(self, stats: StatsCollector, thresholds: tuple[int, int, int],
                 freeze: bool) -> None:
        self.stats = stats
        self.thresholds = thresholds
        self.freeze = freeze
        self.seconds = 0.0
        self.collections = 0
        self._started: float | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> InterpreterTuning:
        s = ptm_settings(crawler)
        if not s.perf_gc:
            raise NotConfigured("PTM_PERF_GC is off")
        assert crawler.stats is not None
        ext = cls(crawler.stats, s.gc_thresholds, s.gc_freeze)
        if ext.freeze and not _active:
            # Start-up's garbage goes now, with the start-up (imports, settings), not on the
            # crawl's clock: a full collection of ~130,000 objects takes ~50 ms. What the
            # engine and the spider allocate until engine_started is frozen with the rest.
            gc.collect()
        crawler.signals.connect(ext.engine_started, signal=signals.engine_started)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    def engine_started(self) -> None:
        global _saved
        if not _active:
            _saved = gc.get_threshold()
            if self.freeze:
                gc.freeze()  # collected in from_crawler; the little garbage since stays
            gc.set_threshold(*self.thresholds)
            if logger.isEnabledFor(logging.DEBUG):  # counting walks the frozen objects
                logger.debug("GC thresholds %s (were %s), %d objects frozen",
                             self.thresholds, _saved, gc.get_freeze_count())
        _active.append(self)
        gc.callbacks.append(self._measure)

    def spider_closed(self) -> None:
        # Collections of any thread of the process while this crawl ran (the stats are dumped
        # before engine_stopped).
        self.stats.set_value("ptm/gc/collections", self.collections)
        self.stats.set_value("ptm/gc/seconds", round(self.seconds, 3))

    def engine_stopped(self) -> None:
        global _saved
        if self._measure in gc.callbacks:
            gc.callbacks.remove(self._measure)
        if self in _active:
            _active.remove(self)
            if not _active and _saved is not None:
                gc.set_threshold(*_saved)
                gc.unfreeze()
                _saved = None

    def _measure(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1
            self._started = None
