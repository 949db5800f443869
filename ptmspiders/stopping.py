"""Whether the crawl is shutting down (SIGTERM, Ctrl-C), for whatever holds a request or a
callback for long.

Scrapy's graceful stop sends no signal before it waits for every request in progress and every
callback still running (``spider_closed`` comes after that wait). A request held for a
rate-limit window (up to an hour on GitHub's anonymous quota) or a callback awaiting a
transfer would hold the shutdown just as long: those waits race :func:`until_stopping`, which
watches the crawler's public ``crawling`` flag (Scrapy clears it as the stop begins).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from scrapy.crawler import Crawler

POLL = 0.5  # seconds between looks at the engine while something waits


def stopping(crawler: Crawler) -> bool:
    """True once a stop of the running crawl has begun (``Crawler.stop_async`` clears
    ``crawling`` first; a crawl that ends by itself keeps it set)."""
    if crawler.crawling:
        return False
    try:
        engine = crawler.engine
    except RuntimeError:  # no crawl started (a component built on its own, as in tests)
        return False
    return engine is not None and engine.spider is not None


async def until_stopping(crawler: Crawler, poll: float = POLL) -> None:
    """Returns once the crawl is stopping."""
    while not stopping(crawler):
        await asyncio.sleep(poll)


async def unless_stopping(crawler: Crawler, waiting: Awaitable[Any]) -> bool:
    """Await ``waiting``; ``False`` (and ``waiting`` cancelled) if the crawl began stopping
    first."""
    if stopping(crawler):
        if asyncio.iscoroutine(waiting):
            waiting.close()
        return False
    work = asyncio.ensure_future(waiting)
    watch = asyncio.ensure_future(until_stopping(crawler))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
    if work.done() and not work.cancelled():
        work.result()  # its exception, if any
        return True
    return False
