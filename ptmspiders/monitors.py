"""Crawl health: Spidermon monitors run once at the end of every crawl, on its stats.

The suite (:class:`CrawlHealthSuite`) checks the finish reason (Spidermon's own
``FinishReasonMonitor``) and the project's ``ptm/...`` stats: requests that failed for good,
items dropped by reason, an incomplete listing, store write failures and refused links. Its
action (:class:`RecordHealth`) logs a short summary and leaves it in the stats under
``ptm/health`` (``{"passed": bool, "failed": [{"monitor", "reason"}]}``), where the history
extension reads it for the crawl record.

:class:`CrawlHealth` is Spidermon's extension (``SPIDERMON_ENABLED``,
``SPIDERMON_SPIDER_CLOSE_MONITORS``) made to run its close monitors exactly once, either when
the history extension asks for them through the :data:`health_requested` signal (so that the
record it writes holds the result, whatever the order of the two ``spider_closed`` handlers)
or at ``spider_closed`` when nobody asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from scrapy import Spider
from scrapy.crawler import Crawler
from spidermon import Monitor, MonitorSuite
from spidermon.contrib.scrapy.extensions import Spidermon
from spidermon.contrib.scrapy.monitors import FinishReasonMonitor
from spidermon.core.actions import Action
from spidermon.runners import MonitorRunner

from ptmspiders.config import ptm_settings

logger = logging.getLogger(__name__)

HEALTH_STAT = "ptm/health"  # the summary: {"passed": bool, "failed": [...]}
HEALTH_FAILED_STAT = "ptm/health/failed"  # how many monitors failed (a scalar, recorded)

#: Sent by the history extension before it writes the crawl record (``spider=``).
health_requested = object()


@dataclass(frozen=True)
class HealthLimits:
    """The thresholds of the monitors (``PTM_HEALTH_*`` settings), validated."""

    max_failed_requests: int
    max_dropped_ratio: float
    max_refused_links: int

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> HealthLimits:
        s = ptm_settings(crawler)
        return cls(s.health_max_failed_requests, s.health_max_dropped_ratio,
                   s.health_max_refused_links)


def counts_under(stats: Any, prefix: str) -> dict[str, float]:
    """The non-zero numeric stats whose keys start with ``prefix``, by the rest of the key."""
    return {key.removeprefix(prefix): value for key, value in stats.items()
            if key.startswith(prefix) and isinstance(value, int | float)
            and not isinstance(value, bool) and value}


def listed(counts: dict[str, float]) -> str:
    return ", ".join(f"{name}={n:g}" for name, n in sorted(counts.items()))


class StatsMonitor(Monitor):
    """A monitor of the crawl's stats with the project's validated thresholds."""

    longMessage = False  # the reason alone, not "True is not false : <reason>"

    @property
    def stats(self) -> Any:
        return self.data.stats

    @property
    def limits(self) -> HealthLimits:
        return HealthLimits.from_crawler(self.data.crawler)


class FailedRequestsMonitor(StatsMonitor):
    """Requests that failed for good (``ptm/failed/*``): what the crawl could not fetch."""

    def test_no_request_failed_for_good(self) -> None:
        failed = counts_under(self.stats, "ptm/failed/")
        limit = self.limits.max_failed_requests
        # ptm/failed/<reason> counts each failure once per reason kind (e.g. owner and
        # http_503): the worst reason is the number of requests lost.
        worst = max(failed.values(), default=0)
        self.assertLessEqual(worst, limit, msg=f"requests failed for good ({listed(failed)}), "
                             f"over PTM_HEALTH_MAX_FAILED_REQUESTS={limit}")


class DroppedItemsMonitor(StatsMonitor):
    """Items dropped (``ptm/dropped/<reason>``), each reason against a share of the items."""

    def test_drops_within_ratio(self) -> None:
        dropped = counts_under(self.stats, "ptm/dropped/")
        seen = self.stats.get("item_scraped_count", 0) + self.stats.get("ptm/dropped", 0)
        ratio = self.limits.max_dropped_ratio
        over = {reason: n for reason, n in dropped.items() if n > ratio * seen}
        self.assertFalse(over, msg=f"items dropped ({listed(over)} of {seen}), over "
                         f"PTM_HEALTH_MAX_DROPPED_RATIO={ratio} for a reason")


class IncompleteMonitor(StatsMonitor):
    """The listing ended incomplete (``ptm/incomplete``): removals could not be inferred."""

    def test_listing_complete(self) -> None:
        reasons = counts_under(self.stats, "ptm/incomplete/")
        self.assertFalse(self.stats.get("ptm/incomplete"),
                         msg=f"the crawl is incomplete ({listed(reasons) or 'no reason given'})")


class StoreFailuresMonitor(StatsMonitor):
    """Writes the store refused (``ptm/store/failed/<collection>``): documents lost."""

    def test_no_store_write_failed(self) -> None:
        failed = counts_under(self.stats, "ptm/store/failed/")
        self.assertFalse(failed, msg=f"store writes failed ({listed(failed)})")


class RefusedLinksMonitor(StatsMonitor):
    """Links or redirects off the hub's origin that were refused (``ptm/refused_link``)."""

    def test_refused_links_within_limit(self) -> None:
        refused = self.stats.get("ptm/refused_link", 0)
        limit = self.limits.max_refused_links
        self.assertLessEqual(refused, limit, msg=f"{refused} links refused, over "
                             f"PTM_HEALTH_MAX_REFUSED_LINKS={limit}")


def failure_reason(error: str | None) -> str:
    """The assertion message of a failed monitor (the last line of unittest's traceback)."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "failed"
    return last.removeprefix("AssertionError: ")


class RecordHealth(Action):
    """Logs the suite's verdict in a few lines and stores it in the stats (``ptm/health``)."""

    def run_action(self) -> None:
        failed = [{"monitor": type(r.item).__name__, "reason": failure_reason(r.error)}
                  for r in self.result.monitors_failed_results]
        names = sorted({type(r.item).__name__ for r in self.result.monitor_results})
        health = {"passed": not failed, "failed": failed}
        stats = self.data.crawler.stats
        stats.set_value(HEALTH_STAT, health)
        stats.set_value(HEALTH_FAILED_STAT, len(failed))
        if not failed:
            logger.info("Crawl health: passed (%s)", ", ".join(names))
            return
        logger.warning("Crawl health: FAILED %d of %d monitors", len(failed), len(names))
        for f in failed:
            logger.warning("Crawl health: %s: %s", f["monitor"], f["reason"])


class CrawlHealthSuite(MonitorSuite):
    """The project's close monitors (``SPIDERMON_SPIDER_CLOSE_MONITORS``)."""

    monitors = [FinishReasonMonitor, FailedRequestsMonitor, DroppedItemsMonitor,
                IncompleteMonitor, StoreFailuresMonitor, RefusedLinksMonitor]
    monitors_finished_actions = [RecordHealth]


class CrawlHealth(Spidermon):
    """Spidermon's extension, with its close monitors run once: when history asks for them
    (:data:`health_requested`), else at ``spider_closed``.

    They run under Spidermon's plain :class:`MonitorRunner`, not its Scrapy runner, whose
    report (some forty lines, each failure with a traceback at ERROR, through the deprecated
    ``Spider.log``) no setting turns off: the suite's action logs the verdict in a few lines."""

    checked: set[str]  # the spiders whose close monitors ran

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlHealth:
        HealthLimits.from_crawler(crawler)  # a bad threshold stops the crawl at once
        ext: CrawlHealth = super().from_crawler(crawler)
        ext.checked = set()
        crawler.signals.connect(ext.check, signal=health_requested)
        return ext

    def check(self, spider: Spider) -> None:
        """Run the close monitors of ``spider`` unless they already ran."""
        if spider.name in self.checked:
            return
        self.checked.add(spider.name)
        assert self.crawler.stats is not None
        data = {"stats": self.crawler.stats.get_stats(), "crawler": self.crawler,
                "spider": spider, "stats_history": getattr(spider, "stats_history", []),
                "job": None}
        for suite in self.spider_closed_suites:
            MonitorRunner().run(suite, **data)

    def spider_closed(self, spider: Spider) -> None:
        self.check(spider)
        for task in self.periodic_tasks.get(spider, []):
            task.stop()


def request_health(crawler: Crawler, spider: Spider) -> dict[str, Any] | None:
    """Run the crawl's close monitors now (once) and return their verdict, or None when
    Spidermon is off."""
    crawler.signals.send_catch_log(health_requested, spider=spider)
    assert crawler.stats is not None
    health = crawler.stats.get_value(HEALTH_STAT)
    return health if isinstance(health, dict) else None
