"""Crawl health: each Spidermon monitor on stats (pass and fail), and whole crawls whose
record holds the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scrapy import Spider
from scrapy.utils.test import get_crawler
from spidermon.runners import MonitorRunner

from ptmspiders.monitors import (
    HEALTH_STAT,
    CrawlHealth,
    CrawlHealthSuite,
    HealthLimits,
    request_health,
)
from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.stores import open_store
from tests.conftest import run_crawl
from tests.mockhub import MockHub
from tests.mockhub.faults import fill_models
from tests.mockhub.huggingface import encode_cursor

CLEAN: dict[str, Any] = {"finish_reason": "finished", "item_scraped_count": 100}


def health(stats: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """Run the project's close suite on ``stats``; return what it left in ``ptm/health``."""
    crawler = get_crawler(Spider, settings_dict=settings)
    assert crawler.stats is not None
    crawler.stats.set_stats(dict(stats))
    spider = Spider("test")
    MonitorRunner().run(CrawlHealthSuite(crawler=crawler), stats=crawler.stats.get_stats(),
                        crawler=crawler, spider=spider, stats_history=[], job=None)
    result = crawler.stats.get_value(HEALTH_STAT)
    assert isinstance(result, dict)
    return result


def failed(result: dict[str, Any]) -> dict[str, str]:
    return {f["monitor"]: f["reason"] for f in result["failed"]}


def test_clean_stats_pass() -> None:
    assert health(CLEAN) == {"passed": True, "failed": []}


@pytest.mark.parametrize(("extra", "monitor", "words"), [
    ({"finish_reason": "shutdown"}, "FinishReasonMonitor", "shutdown"),
    ({"ptm/failed/http_503": 2, "ptm/failed/owner": 2}, "FailedRequestsMonitor", "http_503=2"),
    ({"ptm/dropped/invalid": 30, "ptm/dropped": 30}, "DroppedItemsMonitor", "invalid=30"),
    ({"ptm/incomplete": True, "ptm/incomplete/listing": 1}, "IncompleteMonitor", "listing=1"),
    ({"ptm/store/failed/models": 5}, "StoreFailuresMonitor", "models=5"),
    ({"ptm/refused_link": 1}, "RefusedLinksMonitor", "1 links refused"),
])
def test_each_monitor_fails_on_its_stat(extra: dict[str, Any], monitor: str,
                                        words: str) -> None:
    result = health({**CLEAN, **extra})
    assert result["passed"] is False
    assert list(failed(result)) == [monitor]
    assert words in failed(result)[monitor]


@pytest.mark.parametrize(("extra", "settings"), [
    ({"ptm/failed/owner": 2}, {"PTM_HEALTH_MAX_FAILED_REQUESTS": 2}),
    ({"ptm/dropped/invalid": 5, "ptm/dropped": 5}, {}),  # under 10% of 105 items
    ({"ptm/dropped/invalid": 30, "ptm/dropped": 30}, {"PTM_HEALTH_MAX_DROPPED_RATIO": 0.5}),
    ({"ptm/refused_link": 3}, {"PTM_HEALTH_MAX_REFUSED_LINKS": 3}),
    ({"finish_reason": "closespider_itemcount"},
     {"SPIDERMON_EXPECTED_FINISH_REASONS": ["finished", "closespider_itemcount"]}),
    ({"ptm/store/failed/models": 0, "ptm/incomplete": False}, {}),  # zeros are no failure
])
def test_thresholds_let_a_monitor_pass(extra: dict[str, Any], settings: dict[str, Any]) -> None:
    assert health({**CLEAN, **extra}, **settings)["passed"] is True


@pytest.mark.parametrize(("name", "value"), [
    ("PTM_HEALTH_MAX_FAILED_REQUESTS", -1), ("PTM_HEALTH_MAX_DROPPED_RATIO", 1.5),
    ("PTM_HEALTH_MAX_REFUSED_LINKS", -2)])
def test_bad_thresholds_are_refused_at_start(name: str, value: Any) -> None:
    crawler = get_crawler(Spider, settings_dict={name: value, "SPIDERMON_ENABLED": True})
    with pytest.raises(ValueError, match=name):
        CrawlHealth.from_crawler(crawler)
    with pytest.raises(ValueError, match=name):
        HealthLimits.from_crawler(crawler)


def test_the_suite_runs_once_when_requested_then_closed() -> None:
    crawler = get_crawler(Spider, settings_dict={
        "SPIDERMON_ENABLED": True,
        "SPIDERMON_SPIDER_CLOSE_MONITORS": ["ptmspiders.monitors.CrawlHealthSuite"]})
    assert crawler.stats is not None
    ext = CrawlHealth.from_crawler(crawler)
    spider = Spider("test")
    ext.spider_opened(spider)
    crawler.stats.set_stats({**CLEAN, "ptm/incomplete": True})
    assert request_health(crawler, spider) == {"passed": False, "failed": [
        {"monitor": "IncompleteMonitor", "reason": "the crawl is incomplete (no reason given)"}]}
    crawler.stats.set_value("ptm/incomplete", False)
    ext.spider_closed(spider)  # already checked: the verdict history recorded stands
    assert crawler.stats.get_value(HEALTH_STAT)["passed"] is False


def test_without_spidermon_history_records_no_verdict() -> None:
    crawler = get_crawler(Spider, settings_dict={"SPIDERMON_ENABLED": False})
    assert request_health(crawler, Spider("test")) is None


FAST = ["-s", "PTM_HF_PAGE_SIZE=20", "-s", "PTM_RETRY_TIMES=1",
        "-s", "PTM_RETRY_BACKOFF_BASE=0.05", "-s", "PTM_RETRY_BACKOFF_MAX=0.2"]


def crawl_record(tmp_path: Path) -> dict[str, Any]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        (record,) = list(store.find("crawls"))
    return record


@pytest.mark.crawl
def test_a_clean_crawl_records_its_health(mockhub: MockHub, tmp_path: Path) -> None:
    fill_models(mockhub, 40, owners=2)
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST)
    assert crawl_record(tmp_path)["health"] == {"passed": True, "failed": []}
    assert "Crawl health: passed" in result.stderr


@pytest.mark.crawl
def test_a_broken_listing_fails_the_crawl_health(mockhub: MockHub, tmp_path: Path) -> None:
    fill_models(mockhub, 60, owners=2)
    mockhub.faults.add("503", attempts=None, prefix="/api/models",  # type: ignore[attr-defined]
                       contains=f"cursor={encode_cursor(40)}")
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST, expect_exit=EXIT_INCOMPLETE)
    health = crawl_record(tmp_path)["health"]
    assert health["passed"] is False
    monitors = {f["monitor"]: f["reason"] for f in health["failed"]}
    assert "IncompleteMonitor" in monitors
    assert "FailedRequestsMonitor" in monitors
    assert "Crawl health: IncompleteMonitor: the crawl is incomplete" in result.stderr
    assert "Traceback" not in result.stderr  # the verdict, not unittest's report
