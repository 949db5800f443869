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
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

REAIM_META = "ptm_reaim"


class ReaimMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._hook: Callable[[Request], Request | None] | None = None
        self._looked_up = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ReaimMiddleware:
        if not crawler.settings.getbool("PTM_REAIM_ENABLED", True):
            raise NotConfigured("PTM_REAIM_ENABLED is off")
        return cls(crawler)

    def hook(self) -> Callable[[Request], Request | None] | None:
        if not self._looked_up:
            hook: Any = getattr(self.crawler.spider, "reaim", None)
            self._hook = hook if callable(hook) else None
            self._looked_up = True
        return self._hook

    def process_request(self, request: Request) -> Request | None:
        if not request.meta.get(REAIM_META):
            return None
        hook = self.hook()
        if hook is None:
            return None
        replacement = hook(request)
        if replacement is None or replacement is request:
            return None
        return replacement
