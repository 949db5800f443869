"""item_scraped_count from the item processor instead of a receiver of item_scraped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydispatch.dispatcher import getAllReceivers, liveReceivers
from scrapy import signals
from scrapy.exceptions import DropItem, NotConfigured
from scrapy.extensions.corestats import CoreStats as ScrapyCoreStats
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

from ptmspiders.perf.itemcount import CoreStats, CountingItemProcessor, counted_by_processor

COUNTING = {
    "ITEM_PROCESSOR": "ptmspiders.perf.itemcount.CountingItemProcessor",
    "EXTENSIONS": {"scrapy.extensions.corestats.CoreStats": None,
                   "ptmspiders.perf.itemcount.CoreStats": 0},
}


class DropOdd:
    async def process_item(self, item: dict[str, int]) -> dict[str, int]:
        if item["n"] % 2:
            raise DropItem("odd")
        return item


def receivers(crawler: Any, signal: object) -> list[Any]:
    return list(liveReceivers(getAllReceivers(crawler.signals.sender, signal)))


class OurStats(CoreStats):
    pass


class TheirStats(ScrapyCoreStats):
    pass


def test_a_subclass_of_our_core_stats_is_ours() -> None:
    assert counted_by_processor(Settings({**COUNTING, "EXTENSIONS": {
        "scrapy.extensions.corestats.CoreStats": None, OurStats: 0}}))


@pytest.mark.parametrize("override", [
    {"ITEM_PROCESSOR": "scrapy.pipelines.ItemPipelineManager"},  # the processor does not count
    {"EXTENSIONS": {"ptmspiders.perf.itemcount.CoreStats": 0}},  # Scrapy's CoreStats still on
    {"EXTENSIONS": {"scrapy.extensions.corestats.CoreStats": None}},  # no CoreStats of ours
    {"EXTENSIONS": {"scrapy.extensions.corestats.CoreStats": None,  # a subclass of Scrapy's
                    "ptmspiders.perf.itemcount.CoreStats": 0, TheirStats: 1}},
])
def test_any_other_configuration_counts_the_signal(override: dict[str, Any]) -> None:
    assert not counted_by_processor(Settings({**COUNTING, **override}))


def test_core_stats_leave_the_signal_alone_when_the_processor_counts() -> None:
    crawler = get_crawler(settings_dict=COUNTING)
    CoreStats.from_crawler(crawler)
    assert receivers(crawler, signals.item_scraped) == []
    assert len(receivers(crawler, signals.item_dropped)) == 1
    assert len(receivers(crawler, signals.response_received)) == 1


def test_core_stats_count_the_signal_under_another_processor() -> None:
    crawler = get_crawler(settings_dict={
        **COUNTING, "ITEM_PROCESSOR": "scrapy.pipelines.ItemPipelineManager"})
    CoreStats.from_crawler(crawler)
    assert len(receivers(crawler, signals.item_scraped)) == 1


def test_core_stats_step_aside_for_scrapys() -> None:
    crawler = get_crawler(settings_dict={
        "EXTENSIONS": {"ptmspiders.perf.itemcount.CoreStats": 0}})  # Scrapy's is in the base
    with pytest.raises(NotConfigured):
        CoreStats.from_crawler(crawler)


def run_items(settings: dict[str, Any], n: int) -> Any:
    crawler = get_crawler(settings_dict={**settings, "ITEM_PIPELINES": {DropOdd: 100}})
    assert crawler.stats is not None
    crawler.stats.open_spider()
    processor = CountingItemProcessor.from_crawler(crawler)

    async def feed() -> tuple[int, list[int]]:
        await processor.open_spider_async()
        passed: list[int] = []
        dropped = 0
        for i in range(n):
            try:
                passed.append((await processor.process_item_async({"n": i}))["n"])
            except DropItem:
                dropped += 1
        return dropped, passed

    dropped, passed = asyncio.run(feed())
    assert dropped == n // 2 and len(passed) == n - n // 2
    return crawler, processor


def test_items_that_pass_every_stage_are_counted_in_batches_and_in_full_at_close() -> None:
    every = CountingItemProcessor.REPORT_EVERY
    crawler, processor = run_items(COUNTING, 2 * every + 10)
    stats = crawler.stats
    # every + 5 items passed: one batch is reported so far; dropped items never count
    assert stats.get_value("item_scraped_count") == every
    asyncio.run(processor.close_spider_async())
    assert stats.get_value("item_scraped_count") == every + 5
    asyncio.run(processor.close_spider_async())  # closing again reports nothing twice
    assert stats.get_value("item_scraped_count") == every + 5


def test_a_processor_that_should_not_count_leaves_the_stat_to_the_signal() -> None:
    crawler, processor = run_items({}, 10)  # Scrapy's CoreStats: it counts the signal
    asyncio.run(processor.close_spider_async())
    assert crawler.stats.get_value("item_scraped_count") is None
