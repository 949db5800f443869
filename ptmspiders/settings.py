"""Scrapy settings for ptmspiders: Scrapy's own, and the project's components.

The project's own settings (``PTM_*`` and the hub base URLs, which default to the environment
variable of the same name) are declared, with their defaults and rules, in
:mod:`ptmspiders.config`; docs/settings.md lists them. Tokens are never settings: they are read
from the environment by ``HubAuthMiddleware`` only, so they cannot reach Scrapy's "Overridden
settings" log line.
"""

import os

BOT_NAME = "ptmspiders"
SPIDER_MODULES = ["ptmspiders.spiders"]
NEWSPIDER_MODULE = "ptmspiders.spiders"
# `scrapy crawl` refuses wrong `-a` arguments in one line before the crawl starts, and exits
# non-zero when the crawl ended incomplete (ptmspiders/outcome.py).
COMMANDS_MODULE = "ptmspiders.commands"

USER_AGENT = "ptmspiders/0.1 (research crawler of pre-trained model hubs)"
# The hubs' APIs publish rate limits, which RateLimitMiddleware honours; robots.txt covers
# pages.
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = os.environ.get("PTM_LOG_LEVEL", "INFO")
FEED_EXPORT_ENCODING = "utf-8"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

CONCURRENT_REQUESTS = 16
# Hubs are read over http(s) only: a hub-given link or redirect to file://, s3://, ftp:// or
# data: must never reach a handler that reads local files or other services
# (ptmspiders/origins.py refuses such links before a request is built; this is the backstop).
DOWNLOAD_HANDLERS = {"file": None, "s3": None, "ftp": None, "data": None}
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = 60

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    # First: a request the spider re-aims is dropped before any other middleware (the rate
    # limiter's budget included) sees it.
    "ptmspiders.middlewares.queued_rewrite.QueuedRewriteMiddleware": 50,
    # Before the credentials, the retries and the rate limiter: a refused redirect costs nothing.
    "ptmspiders.middlewares.origin.SameOriginRedirectMiddleware": 60,
    "ptmspiders.middlewares.auth.HubAuthMiddleware": 450,
    "ptmspiders.middlewares.retry.RetryMiddleware": 550,
    "ptmspiders.middlewares.ratelimit.RateLimitMiddleware": 950,
}

SPIDER_MIDDLEWARES = {
    # The same limit (URLLENGTH_LIMIT), but a dropped request is counted and makes the crawl
    # incomplete instead of vanishing (ptmspiders/middlewares/urllength.py).
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
    "ptmspiders.middlewares.urllength.UrlLengthMiddleware": 800,
}

ITEM_PIPELINES = {
    "ptmspiders.pipelines.NormalizePipeline": 300,
    "ptmspiders.pipelines.ValidatePipeline": 400,
    "ptmspiders.pipelines.StorePipeline": 800,
}

EXTENSIONS = {
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

# Crawl health (ptmspiders/monitors.py): Spidermon monitors on the stats at the end of a crawl,
# summarised in the log and in the crawl record (``health``).
SPIDERMON_ENABLED = True
SPIDERMON_SPIDER_CLOSE_MONITORS = ["ptmspiders.monitors.CrawlHealthSuite"]
SPIDERMON_EXPECTED_FINISH_REASONS = ["finished"]

# The speed work (ptmspiders/perf, docs/performance.md): a Scrapy add-on that configures each
# piece whose PTM_PERF_<PIECE> switch is on (all are, by default).
ADDONS = {"ptmspiders.perf.addon.PerfAddon": 0}
