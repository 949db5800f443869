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

ITEM_PIPELINES = {
    "ptmspiders.pipelines.NormalizePipeline": 300,
    "ptmspiders.pipelines.ValidatePipeline": 400,
    "ptmspiders.pipelines.StorePipeline": 800,
}

# Crawl health (ptmspiders/monitors.py): Spidermon monitors on the stats at the end of a crawl,
# summarised in the log and in the crawl record (``health``).
SPIDERMON_ENABLED = True
SPIDERMON_SPIDER_CLOSE_MONITORS = ["ptmspiders.monitors.CrawlHealthSuite"]
SPIDERMON_EXPECTED_FINISH_REASONS = ["finished"]

# The project's middlewares (the throttle, retries, credentials, redirect guard) and
# extensions (the store's context, history, the hub lock, crawl health, killed-run recovery):
# an add-on adds them to whatever DOWNLOADER_MIDDLEWARES, SPIDER_MIDDLEWARES and EXTENSIONS
# say, so that a dict given on the command line extends them instead of replacing them
# (ptmspiders/addon.py).
# The speed work (ptmspiders/perf, docs/performance.md): a Scrapy add-on that configures each
# piece whose PTM_PERF_<PIECE> switch is on (all are, by default).
ADDONS = {"ptmspiders.addon.ProjectAddon": 0, "ptmspiders.perf.addon.PerfAddon": 0}
