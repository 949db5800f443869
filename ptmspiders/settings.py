"""Scrapy settings for ptmspiders.

Hub base URLs are settings that default to the environment variable of the same name (the one
the hubs' own clients use), so tests and offline replays point them at 127.0.0.1. Tokens are
never settings: they are read from the environment by ``HubAuthMiddleware`` only, so they cannot
reach Scrapy's "Overridden settings" log line.
"""

import os

from ptmspiders import doc_size, hubs

BOT_NAME = "ptmspiders"
SPIDER_MODULES = ["ptmspiders.spiders"]
NEWSPIDER_MODULE = "ptmspiders.spiders"
# `scrapy crawl` refuses wrong `-a` arguments in one line before the crawl starts, and exits
# non-zero when the crawl ended incomplete (ptmspiders/outcome.py).
COMMANDS_MODULE = "ptmspiders.commands"

USER_AGENT = "ptmspiders/0.1 (research crawler of pre-trained model hubs)"
# The hubs' APIs publish rate limits, which PTM_THROTTLE honours; robots.txt covers pages.
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = os.environ.get("PTM_LOG_LEVEL", "INFO")
FEED_EXPORT_ENCODING = "utf-8"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

# Hub endpoints (see ../shared/HUBS.md); which hub is read at which: ptmspiders/hubs.py.
HF_ENDPOINT = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
GITHUB_API_URL = os.environ.get("GITHUB_API_URL", "https://api.github.com")
GITHUB_RAW_URL = os.environ.get("GITHUB_RAW_URL", "https://raw.githubusercontent.com")
MODELZOO_URL = os.environ.get("MODELZOO_URL", "https://modelzoo.co")
KAGGLE_API_URL = os.environ.get("KAGGLE_API_URL", "https://www.kaggle.com/api/v1")
# tfhub.dev's model URLs (the tensorflow_hub protocol, ?tf-hub-format=compressed): packages.
TFHUB_URL = os.environ.get("TFHUB_URL", "https://tfhub.dev")
# Git LFS media of GitHub repositories (ONNX Model Zoo weights); never sent a credential.
GITHUB_MEDIA_URL = os.environ.get("GITHUB_MEDIA_URL", "https://media.githubusercontent.com/media")

# Storage: sqlite:///relative/path, sqlite:////absolute/path, mongodb://host:port/db
PTM_STORE_URI = os.environ.get("PTM_STORE_URI", "sqlite:///data/ptm.sqlite")
PTM_STORE_ENABLED = True
PTM_AUTH_ENABLED = True
PTM_STORE_BATCH_SIZE = 500
PTM_STORE_FLUSH_SECONDS = 5.0
# A stored document's bound in bytes of JSON: past it, the largest fields are cut (recorded in
# extra.truncated, counted as ptm/truncated/<field>); the model is kept. 0: no bound.
PTM_MAX_DOC_BYTES = doc_size.DEFAULT_MAX_DOC_BYTES
# Batches are written on a thread behind the crawl (ptmspiders/stores/writer.py), at most
# PTM_STORE_WRITER_MAX_PENDING batches ahead of the store; off: written in the crawl's thread.
PTM_STORE_WRITER_THREAD = True
# Two: at hub scale the writer falls behind now and then, and every queued batch is 500
# documents alive in memory (peak RSS of a 1M sweep 159 MB with 2, 171-176 with 4; no slower).
PTM_STORE_WRITER_MAX_PENDING = 2
# The writer thread commits every this many documents (and at least every
# PTM_STORE_FLUSH_SECONDS): at hub scale each SQLite commit writes every index page its batches
# touched, so fewer, larger commits cost less per model (scripts/bench_store.py --transaction).
PTM_STORE_TRANSACTION_SIZE = 5000

# Hugging Face owners, once each (ptmspiders/spiders/hf_models.py OWNER_MODES): "orgs" asks
# the organisations' overview (one call per owner; users recognised by its 404, without their
# overview), "full" every user's overview too (a wrong guess of the kind costs a second call).
PTM_HF_OWNERS = "orgs"
# Queued requests re-aimed as they are sent (ptmspiders/middlewares/reaim.py): with
# owners=full, owner look-ups go straight to the organisations' endpoint for names a user
# overview has since listed.
PTM_REAIM_ENABLED = True
# Models per list page; the Hub's maximum (1000) keeps a sweep near one call per 1000 models.
PTM_HF_PAGE_SIZE = 1000
# Enrichment of models whose sha changed (ptmspiders/hf_enrichment.py): README card
# (resolver bucket), file tree with security scans (API), commits with signature status.
# Off by default so a plain list sweep stays about one call per 1000 models; the studies
# (ptm report) want all three: -s PTM_HF_CARDS=1 -s PTM_HF_FILES=1 -s PTM_HF_COMMITS=1.
PTM_HF_CARDS = False
PTM_HF_FILES = False
PTM_HF_COMMITS = False
# git: weightless clone + git log %G?, checked against the keyring PTM_HF_GNUPGHOME names
# (default: a throwaway one per crawl, empty, never ~/.gnupg); html: the commits page's
# "Verified" badge; api: no signatures.
PTM_HF_SIGNATURE_METHOD = "git"
PTM_HF_GNUPGHOME = os.environ.get("PTM_HF_GNUPGHOME", "")
PTM_HF_GIT_CONCURRENCY = 2
PTM_HF_GIT_TIMEOUT = 300.0
PTM_HF_COMMITS_MAX = 1000  # per model; 0 = the whole history

# Model packages (scrapy crawl packages, ptmspiders/packages): where blobs and package folders
# go, file transfers at once (worker threads), packages in progress at once, the largest small
# git file fetched through Scrapy (in memory; larger ones stream), the progress line's period.
PTM_PACKAGES_DIR = os.environ.get("PTM_PACKAGES_DIR", "data/packages")
PTM_PACKAGES_CONCURRENCY = 8
PTM_PACKAGES_CONCURRENT_PACKAGES = 16
PTM_PACKAGES_INLINE_MAX_BYTES = 16 * 1024 * 1024
PTM_PACKAGES_PROGRESS_INTERVAL = 60.0
PTM_PACKAGES_RETRY_WAIT = 1.0

# Kaggle Models: models per list page (1..100).
PTM_KAGGLE_PAGE_SIZE = 100
# modelzoo.co: headless Chromium for model pages the JSON API refuses (scrapy-playwright).
PTM_CHROMIUM_PATH = os.environ.get("PTM_CHROMIUM_PATH", "/usr/bin/chromium")
PTM_MODELZOO_BROWSER = True
PTM_MODELZOO_RENDER_TIMEOUT = 30.0
# Retries of a modelzoo API answer (5xx, HTML or malformed JSON) before the browser fallback
# (at most PTM_RETRY_TIMES): a refusal there is seldom transient and the fallback is at hand.
PTM_MODELZOO_API_RETRIES = 2
# GitHub-hosted catalogues (spiders/github_catalogue.py): repository (owner/repo) and ref.
PTM_PYTORCH_HUB_REPO = "pytorch/hub"
PTM_PYTORCH_HUB_REF = "master"
PTM_ONNX_ZOO_REPO = "onnx/models"
PTM_ONNX_ZOO_REF = "main"
PTM_TFHUB_REPO = "tensorflow/tfhub.dev"
PTM_TFHUB_REF = "master"
PTM_MODELHUB_REPO = "modelhub-ai/modelhub"
PTM_MODELHUB_REF = "master"

CONCURRENT_REQUESTS = 16
# Hubs are read over http(s) only: a hub-given link or redirect to file://, s3://, ftp:// or
# data: must never reach a handler that reads local files or other services
# (ptmspiders/origins.py refuses such links before a request is built; this is the backstop).
DOWNLOAD_HANDLERS = {"file": None, "s3": None, "ftp": None, "data": None}
# A redirect of a hub API request to another origin is refused (middlewares/origin.py).
PTM_SAME_ORIGIN_REDIRECTS_ENABLED = True
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = 60

# Rate limits (middlewares/ratelimit.py): each hub paced by its published budget per bucket.
PTM_RATELIMIT_ENABLED = True
# Hugging Face tier: anonymous|free|pro|team|enterprise; empty = free with HF_TOKEN, else
# anonymous. PTM_HF_QUOTAS overrides single buckets, e.g. {"api": 2500}.
PTM_HF_TIER = os.environ.get("PTM_HF_TIER", "")
PTM_HF_QUOTAS: dict[str, int] = {}
PTM_HF_WINDOW = hubs.HUGGINGFACE_API.window  # 300 s
PTM_GITHUB_QUOTA = 0  # 0 = GitHub's own: 5000/hour with GITHUB_TOKEN, else 60 (hubs.py)
PTM_GITHUB_WINDOW = hubs.GITHUB_API.window  # 3600 s
# Kaggle publishes no number: a conservative default until its answers say otherwise.
PTM_KAGGLE_QUOTA = 60
PTM_KAGGLE_WINDOW = hubs.KAGGLE_API.window  # 60 s
# Share of a window's quota that may go out at once; the rest is spread over the window.
PTM_RATELIMIT_BURST = 0.5
PTM_RATELIMIT_MAX_WAITS = 20  # 429 waits per request before it is given up (and counted)
PTM_RATELIMIT_DEFAULT_WAIT = 60.0  # a 429 that names no reset time
PTM_RATELIMIT_MIN_WAIT = 1.0
# Many workers, one crawl: a redis://host:port/db URL where the workers share their rate-limit
# windows (middlewares/ratelimit_redis.py); empty = each crawl paces itself alone.
PTM_FRONTIER = os.environ.get("PTM_FRONTIER", "")

# Retries (middlewares/retry.py): a subclass of Scrapy's RetryMiddleware in its place, with
# backoff and no 429 (waited out by the rate limiter). These stand for Scrapy's RETRY_ENABLED,
# RETRY_TIMES and RETRY_HTTP_CODES (refused if set); RETRY_EXCEPTIONS,
# RETRY_PRIORITY_ADJUST and RETRY_GIVE_UP_LOG_LEVEL apply as in Scrapy.
PTM_RETRY_ENABLED = True
PTM_RETRY_TIMES = 5
PTM_RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408]
PTM_RETRY_BACKOFF_BASE = 1.0
PTM_RETRY_BACKOFF_MAX = 60.0

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    # First: a request the spider re-aims is dropped before any other middleware (the rate
    # limiter's budget included) sees it.
    "ptmspiders.middlewares.reaim.ReaimMiddleware": 50,
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

# History (ptmspiders/history.py): a `crawls` record per run, `changes` per model and crawl,
# removed_at for models a complete crawl no longer saw. Models are compared with the store one
# store batch (PTM_STORE_BATCH_SIZE) at a time, just before the batch is written.
PTM_HISTORY_ENABLED = True
# A complete crawl that misses more than this share of a hub's listed models marks none removed
# (an empty or truncated listing must not retire the hub); raise it to accept mass removals.
PTM_HISTORY_MAX_MISSING_RATIO = 0.5

# One listing crawl of a hub at a time per store (ptmspiders/crawllock.py): a crawl of a hub
# whose lock another crawl holds waits up to PTM_LOCK_WAIT seconds for it, then refuses (exit
# status 4). A lock whose holder stopped renewing it expires after PTM_LOCK_TTL seconds (at
# once for a holder on the same host whose process is gone).
PTM_LOCK_ENABLED = True
PTM_LOCK_WAIT = 30.0
PTM_LOCK_TTL = 120.0

EXTENSIONS = {
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
# Fails when a count of requests failed for good (ptm/failed/<reason>) is over this.
PTM_HEALTH_MAX_FAILED_REQUESTS = 0
# Fails when one drop reason (ptm/dropped/<reason>) exceeds this share of the items.
PTM_HEALTH_MAX_DROPPED_RATIO = 0.1
# Fails when more links or redirects off the hub's origin were refused (ptm/refused_link).
PTM_HEALTH_MAX_REFUSED_LINKS = 0

# With JOBDIR: after a killed run, reset Scrapy's own queue and seen-requests file
# (ptmspiders/checkpoint.py); listings resume from their checkpoints.
PTM_KILLED_RUN_RECOVERY_ENABLED = True

# The speed work (ptmspiders/perf, docs/performance.md): a Scrapy add-on that configures each
# piece whose PTM_PERF_<PIECE> switch is on (all are, by default).
ADDONS = {"ptmspiders.perf.PerfAddon": 0}
# Its garbage-collector piece (PTM_PERF_GC).
PTM_GC_THRESHOLDS = (50_000, 20, 10)
PTM_GC_FREEZE = True
