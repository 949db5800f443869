"""``item_scraped_count`` without a receiver of Scrapy's ``item_scraped`` signal.

Scrapy sends ``item_scraped`` through asyncio: one coroutine, one Task and a ``gather`` per
connected receiver and item. In a plain crawl the only receiver is
:class:`scrapy.extensions.corestats.CoreStats`, and only to count; at hub scale that dispatch
took a fifth of the crawl's thread (``py-spy record --gil`` of a 200,000-model sweep), in the
sweep and in its pipeline-less baseline alike. An item that the item processor returns is the
item Scrapy then reports as scraped, so :class:`CountingItemProcessor` counts it there and
:class:`CoreStats` (which replaces Scrapy's) does all the rest of Scrapy's ``CoreStats`` but
leaves the signal alone. Receivers that need the item itself (feed exports, ``CLOSESPIDER_*``)
still get the signal.

Both must be configured (the project settings do): with either missing, or Scrapy's own
``CoreStats`` still enabled, the count falls back to the signal, so it is never lost or doubled.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.extensions.corestats import CoreStats as ScrapyCoreStats
from scrapy.pipelines import ItemPipelineManager
from scrapy.settings import BaseSettings
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object

logger = logging.getLogger(__name__)

STAT = "item_scraped_count"


def _core_stats(settings: BaseSettings) -> tuple[bool, bool]:
    """Whether an enabled extension is this module's CoreStats (or a subclass), and whether one
    is Scrapy's (or a subclass of it that is not ours): that one counts the signal itself."""
    ours = theirs = False
    for path in build_component_list(settings.getwithbase("EXTENSIONS")):
        ext = load_object(path)
        if isinstance(ext, type) and issubclass(ext, CoreStats):
            ours = True
        elif isinstance(ext, type) and issubclass(ext, ScrapyCoreStats):
            theirs = True
    return ours, theirs


def counted_by_processor(settings: BaseSettings) -> bool:
    """Whether this crawl counts scraped items in the item processor instead of the signal:
    the processor is a :class:`CountingItemProcessor`, this module's :class:`CoreStats` is
    enabled and Scrapy's is not (it would count every item a second time)."""
    processor = load_object(settings["ITEM_PROCESSOR"])
    if not (isinstance(processor, type) and issubclass(processor, CountingItemProcessor)):
        return False
    ours, theirs = _core_stats(settings)
    return ours and not theirs


class CountingItemProcessor(ItemPipelineManager):
    """Scrapy's item pipeline manager, counting the items its stages let through.

    The count reaches the stats every ``REPORT_EVERY`` items (one stats call per item costs
    too, see :class:`ptmspiders.pipelines.validate.ValidatePipeline`) and in full when the
    spider closes, after the last item and before the ``spider_closed`` receivers read it."""

    REPORT_EVERY = 1000

    def __init__(self, *middlewares: Any, crawler: Crawler | None = None) -> None:
        super().__init__(*middlewares, crawler=crawler)
        self.counting = crawler is not None and counted_by_processor(crawler.settings)
        self.stats = crawler.stats if crawler is not None else None
        self.unreported = 0

    async def process_item_async(self, item: Any) -> Any:
        item = await super().process_item_async(item)
        if self.counting:
            self.unreported += 1
            if self.unreported >= self.REPORT_EVERY:
                self.report()
        return item

    def report(self) -> None:
        if self.unreported and self.stats is not None:
            self.stats.inc_value(STAT, self.unreported)
        self.unreported = 0

    async def close_spider_async(self) -> None:
        try:
            await super().close_spider_async()
        finally:
            self.report()


class CoreStats(ScrapyCoreStats):
    """Scrapy's ``CoreStats`` (start and finish times, responses, dropped items), with scraped
    items counted by :class:`CountingItemProcessor` when that is the item processor."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CoreStats:
        if _core_stats(crawler.settings)[1]:
            raise NotConfigured("Scrapy's CoreStats is enabled: it keeps the core stats")
        o = super().from_crawler(crawler)  # Scrapy's receivers, whatever its version connects
        if counted_by_processor(crawler.settings):
            crawler.signals.disconnect(o.item_scraped, signal=signals.item_scraped)
        else:
            logger.debug("ITEM_PROCESSOR does not count items: counting the item_scraped signal")
        return o
