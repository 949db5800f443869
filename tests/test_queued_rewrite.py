"""QueuedRewriteMiddleware through get_crawler: which requests reach the spider's hook, and what a
returned request does."""

from __future__ import annotations

import pytest
from scrapy import Request, Spider
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler

from ptmspiders.middlewares.queued_rewrite import REAIM_META, QueuedRewriteMiddleware


class HookSpider(Spider):
    name = "hook"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[str] = []

    def reaim(self, request):
        self.seen.append(request.url)
        if request.url.endswith("/old"):
            return request.replace(url=request.url[:-4] + "/new")
        if request.url.endswith("/same"):
            return request
        return None


def middleware(spidercls=HookSpider, settings=None):
    crawler = get_crawler(spidercls, settings or {})
    crawler.spider = crawler._create_spider()
    return QueuedRewriteMiddleware.from_crawler(crawler), crawler.spider


def test_flagged_requests_are_replaced_by_what_the_hook_returns():
    mw, spider = middleware()
    out = mw.process_request(Request("http://h/old", meta={REAIM_META: True}))
    assert isinstance(out, Request) and out.url == "http://h/new"
    assert mw.process_request(Request("http://h/new", meta={REAIM_META: True})) is None
    # A hook that hands the request itself back does not get it rescheduled forever.
    assert mw.process_request(Request("http://h/same", meta={REAIM_META: True})) is None
    assert spider.seen == ["http://h/old", "http://h/new", "http://h/same"]


def test_unflagged_requests_never_reach_the_hook():
    mw, spider = middleware()
    assert mw.process_request(Request("http://h/old")) is None
    assert spider.seen == []


class PlainSpider(Spider):
    name = "plain"


def test_a_spider_without_the_hook_gets_its_requests_as_they_are():
    mw, _ = middleware(PlainSpider)
    assert mw.process_request(Request("http://h/old", meta={REAIM_META: True})) is None


def test_the_switch_turns_it_off():
    crawler = get_crawler(HookSpider, {"PTM_REAIM_ENABLED": False})
    with pytest.raises(NotConfigured):
        QueuedRewriteMiddleware.from_crawler(crawler)
