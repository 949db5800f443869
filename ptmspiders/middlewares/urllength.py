"""Requests too long for a URL are dropped loudly: logged, counted, and the crawl incomplete.

Scrapy's ``UrlLengthMiddleware`` drops a request whose URL exceeds ``URLLENGTH_LIMIT`` with an
INFO line, and with it whatever the request carried (an item riding in ``cb_kwargs``, the
documents of a catalogue file). Spiders check hub-given names before they build a request and
record a gap instead (``ptmspiders.spiders.base.url_too_long``); this subclass is the net for
any request that still gets here: the spider's ``request_too_long(request)`` hook decides
(``PtmSpider``'s counts ``ptm/gaps/url_too_long`` and records the crawl incomplete, so history
infers no removal from what was not fetched).
"""

from __future__ import annotations

from typing import Any

from scrapy import Request
from scrapy.http import Response
from scrapy.spidermiddlewares.urllength import UrlLengthMiddleware as ScrapyUrlLength


class UrlLengthMiddleware(ScrapyUrlLength):
    def get_processed_request(self, request: Request, response: Response | None
                              ) -> Request | None:
        processed = super().get_processed_request(request, response)
        if processed is None:
            hook: Any = getattr(self.crawler.spider, "request_too_long", None)
            if hook is not None:
                hook(request)
        return processed
