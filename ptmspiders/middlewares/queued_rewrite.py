"""Let a spider re-aim a queued request with what it learnt while the request waited.

A request is built when its need is found, but sent much later when the crawl runs under a
quota: the Hugging Face owner look-ups of a first sweep wait hours behind each other, and the
user overviews answered meanwhile name organisations that other queued look-ups would otherwise
ask at the users' endpoint first (a 404, then a second call). Requests with ``meta["ptm_reaim"]``
go to the spider's ``reaim(request)`` as they leave the scheduler; a request it returns replaces
them (Scrapy schedules it and drops the old one), ``None`` sends them as they are.
"""

from __future__ import annotations

from collections.abc import Callable

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from ptmspiders.config import ptm_settings

REAIM_META = "ptm_reaim"


class QueuedRewriteMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> QueuedRewriteMiddleware:
        if not ptm_settings(crawler).reaim_enabled:
            raise NotConfigured("PTM_REAIM_ENABLED is off")
        return cls(crawler)

    def process_request(self, request: Request) -> Request | None:
        if not request.meta.get(REAIM_META):
            return None
        hook: Callable[[Request], Request | None] | None = getattr(
            self.crawler.spider, "reaim", None)
        replacement = hook(request) if hook is not None else None
        # The same request back would be scheduled again, and again: sent as it is instead.
        return None if replacement is request else replacement
