"""PtmLogFormatter: per-item and per-response DEBUG lines only when DEBUG is shown."""

from __future__ import annotations

import logging

import pytest
from scrapy import Request, Spider
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from ptmspiders.perf.logformatter import PtmLogFormatter


@pytest.mark.parametrize(("level", "logged"), [
    ("DEBUG", True), ("INFO", False), ("WARNING", False), (logging.DEBUG, True), (20, False),
])
def test_item_and_response_lines_follow_the_log_level(level, logged):
    crawler = get_crawler(Spider, {"LOG_LEVEL": level})
    formatter = PtmLogFormatter.from_crawler(crawler)
    spider = Spider("s")
    request = Request("http://127.0.0.1/x")
    response = Response("http://127.0.0.1/x", request=request)
    scraped = formatter.scraped({"a": 1}, response, spider)
    crawled = formatter.crawled(request, response, spider)
    assert (scraped is not None) is logged
    assert (crawled is not None) is logged
    if logged:
        assert scraped is not None and scraped["level"] == logging.DEBUG


def test_other_messages_are_scrapys_own():
    crawler = get_crawler(Spider, {"LOG_LEVEL": "INFO"})
    formatter = PtmLogFormatter.from_crawler(crawler)
    spider = Spider.from_crawler(crawler, "s")
    response = Response("http://127.0.0.1/x", request=Request("http://127.0.0.1/x"))
    from scrapy.exceptions import DropItem

    dropped = formatter.dropped({"a": 1}, DropItem("bad"), response, spider)
    assert dropped is not None and "bad" in str(dropped["args"]["exception"])

