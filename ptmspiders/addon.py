"""The Scrapy add-on that puts the project's own components into every crawl.

A component dict given on the command line (``-s 'EXTENSIONS={...}'``,
``-s 'DOWNLOADER_MIDDLEWARES={...}'``) replaces the project's whole dict: the crawl then died at
start without the context its store needs, or ran without the hubs' throttle, the retries and the
redirect guard. The add-on adds each component of :data:`COMPONENTS` that the setting does not
name, so a user's components come on top of the project's; a ``None`` for one of them still
switches it off (and a priority moves it), except :data:`REQUIRED`, without which no item can be
stored.
"""

from __future__ import annotations

from typing import Any

from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings
from scrapy.utils.misc import load_object

# Import path -> order: the project's components, one dict per setting (COMPONENTS).
EXTENSIONS: dict[str, int | None] = {
    # What the crawl's components share: the store, its writer, checkpoints, history state
    # (ptmspiders/context.py). Its own signals connect as it is used, not in this order.
    "ptmspiders.context.CrawlContext": 10,
    # Built before the scheduler opens JOBDIR: it must reset what a killed run left there.
    "ptmspiders.checkpoint.KilledRunRecovery": 50,
    # Before history: its spider_opened takes the hub's lock before history writes, its
    # spider_closed tells history whether the lock held to the end.
    "ptmspiders.crawllock.CrawlLock": 450,
    "ptmspiders.history.CrawlHistory": 500,
    # Spidermon's extension; history asks it for the crawl's health before writing the record.
    "ptmspiders.monitors.CrawlHealth": 900,
}
DOWNLOADER_MIDDLEWARES: dict[str, int | None] = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,  # ours subclasses it (550)
    # First: a request the spider re-aims is dropped before any other middleware (the rate
    # limiter's budget included) sees it.
    "ptmspiders.middlewares.queued_rewrite.QueuedRewriteMiddleware": 50,
    # Before the credentials, the retries and the rate limiter: a refused redirect costs nothing.
    "ptmspiders.middlewares.origin.SameOriginRedirectMiddleware": 60,
    "ptmspiders.middlewares.auth.HubAuthMiddleware": 450,
    "ptmspiders.middlewares.retry.RetryMiddleware": 550,
    "ptmspiders.middlewares.ratelimit.RateLimitMiddleware": 950,
}
SPIDER_MIDDLEWARES: dict[str, int | None] = {
    # The same limit (URLLENGTH_LIMIT), but a dropped request is counted and makes the crawl
    # incomplete instead of vanishing (ptmspiders/middlewares/urllength.py).
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
    "ptmspiders.middlewares.urllength.UrlLengthMiddleware": 800,
}
# Setting -> its project components.
COMPONENTS: dict[str, dict[str, int | None]] = {
    "DOWNLOADER_MIDDLEWARES": DOWNLOADER_MIDDLEWARES,
    "SPIDER_MIDDLEWARES": SPIDER_MIDDLEWARES,
    "EXTENSIONS": EXTENSIONS,
}
REQUIRED = "ptmspiders.context.CrawlContext"


class ProjectAddon:
    """Adds the project's components that their settings do not name already."""

    def update_settings(self, settings: BaseSettings) -> None:
        for name, ours in COMPONENTS.items():
            current = settings.getdict(name)
            for path, order in ours.items():
                cls = load_object(path)
                if path == REQUIRED:
                    current = {k: v for k, v in current.items() if _component(k) is not cls}
                if not any(_component(k) is cls for k in current):
                    # By import path: a None must meet Scrapy's *_BASE entry under its key.
                    current[path] = order
            # At least the add-on's priority: above *_BASE, so that those None entries count.
            priority = max(settings.getpriority(name) or 0, SETTINGS_PRIORITIES["addon"])
            settings.set(name, current, priority)


def _component(key: Any) -> Any:
    return load_object(key) if isinstance(key, str) else key
