"""Retries for what is usually transient at a hub: 5xx, timeouts, dropped connections, and
malformed answers (HTML or truncated JSON where JSON was expected).

A subclass of Scrapy's ``RetryMiddleware`` (which it replaces in ``DOWNLOADER_MIDDLEWARES``): each
retry is Scrapy's :func:`~scrapy.downloadermiddlewares.retry.get_retry_request` (the attempt
count and its limit, ``max_retry_times``, the priority, the ``Retrying``/``Gave up retrying``
log lines, the ``ptm/retry/...`` stats), and ``dont_retry`` and ``RETRY_EXCEPTIONS`` mean what
they mean in Scrapy. Only these rules are ours:

- 429 is never retried here (``PTM_RETRY_HTTP_CODES`` may not hold it):
  :mod:`ptmspiders.middlewares.ratelimit`, nearer the downloader, waits it out without spending
  this budget.
- Each retry waits an exponential backoff with jitter (``PTM_RETRY_BACKOFF_BASE * 2**n``, at most
  ``PTM_RETRY_BACKOFF_MAX``; a ``Retry-After`` within that cap), carried in the retried request's
  meta and awaited in ``process_request``: no thread sleeps and other requests go on meanwhile.
- Requests that expect JSON say so with ``meta["ptm_expect"] = "list" | "object" | "any"`` (see
  ``PtmSpider.json_request``); a malformed answer is retried like a 5xx and, after the last
  attempt, passed on so the spider logs and counts ``ptm/bad_response/<reason>``. A file read
  whose git blob sha is known in advance also says ``meta["ptm_git_blob"]``: a malformed body
  with exactly that sha is the file as committed, which no retry can change, so it goes to the
  spider at once.
- A download failure or retried status that outlasts its retries is counted as
  ``ptm/failed/<reason>``, with short reasons (``http_503``, ``timeout``, ``data_loss``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Self

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware as ScrapyRetryMiddleware
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    NotConfigured,
    ResponseDataLossError,
)
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from twisted.internet import error as tx_error
from twisted.web.client import ResponseFailed

from ptmspiders.config import ptm_settings
from ptmspiders.github import git_blob_sha
from ptmspiders.hub_answers import BadResponse, load_json
from ptmspiders.perf.addon import enabled
from ptmspiders.ratelimit_headers import parse_retry_after

logger = logging.getLogger(__name__)

EXPECT: dict[str, type | tuple[type, ...] | None] = {
    "list": list, "object": dict, "any": None,
}
NOT_BEFORE_META = "ptm_not_before"  # wall-clock time (survives a JOBDIR restart)
GIT_BLOB_META = "ptm_git_blob"  # the blob sha a raw file read should have
STATS_BASE = "ptm/retry"  # get_retry_request's count, reason_count/<reason>, max_reached
# Scrapy's settings that ours stand for: set, they would be silently overridden.
OURS_FOR_SCRAPYS = {"RETRY_ENABLED": "PTM_RETRY_ENABLED", "RETRY_TIMES": "PTM_RETRY_TIMES",
                    "RETRY_HTTP_CODES": "PTM_RETRY_HTTP_CODES"}


def exception_reason(exc: BaseException) -> str:
    """A short stats word for a download exception."""
    if isinstance(exc, ResponseDataLossError):
        return "data_loss"
    if isinstance(exc, DownloadTimeoutError):
        return "timeout"
    if isinstance(exc, CannotResolveHostError):
        return "dns"
    if isinstance(exc, DownloadConnectionRefusedError | DownloadFailedError):
        return "connection"
    if isinstance(exc, ResponseFailed):
        reasons = getattr(exc, "reasons", []) or []
        if any("_DataLoss" in type(getattr(r, "value", r)).__name__ for r in reasons):
            return "data_loss"
        return "connection"
    if isinstance(exc, tx_error.TimeoutError | TimeoutError | tx_error.TCPTimedOutError):
        return "timeout"
    if isinstance(exc, tx_error.DNSLookupError):
        return "dns"
    if isinstance(exc, tx_error.ConnectError | tx_error.ConnectionLost | tx_error.ConnectionDone
                  | ConnectionError):
        return "connection"
    name = type(exc).__name__
    if "DataLoss" in name:
        return "data_loss"
    return name.lower()


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential, capped, half jittered."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def malformed_reason(response: Response, expect: str | None, *, keep: bool = True
                     ) -> str | None:
    """Why a 2xx answer that should be JSON is unusable, or ``None`` if it is fine; ``keep``:
    hand the decoded body to the spider's decoding (:func:`ptmspiders.hub_answers.load_json`)."""
    if expect is None or not 200 <= response.status < 300:
        return None
    if expect not in EXPECT:
        raise ValueError(f'meta["ptm_expect"]={expect!r}: expected one of {", ".join(EXPECT)}')
    if "dataloss" in response.flags:
        return "truncated_body"
    try:
        load_json(response.body, EXPECT[expect], keep=keep)
    except BadResponse as exc:
        return exc.reason
    return None


def retry_settings(crawler: Crawler) -> BaseSettings:
    """The crawl's settings with ``PTM_RETRY_*`` handed to Scrapy's middleware under its own
    names (``RETRY_ENABLED``, ``RETRY_TIMES``, ``RETRY_HTTP_CODES``)."""
    settings = crawler.settings
    for scrapys, ours in OURS_FOR_SCRAPYS.items():
        if (settings.getpriority(scrapys) or 0) > 0:  # set above Scrapy's default
            raise ValueError(f"{scrapys} is not read by this project: set {ours} instead")
    s = ptm_settings(crawler)
    if not s.retry_enabled:
        raise NotConfigured("PTM_RETRY_ENABLED is off")
    own = BaseSettings(settings)  # an unfrozen copy, each setting at its priority
    own.update({"RETRY_ENABLED": True, "RETRY_TIMES": s.retry_times,
                "RETRY_HTTP_CODES": s.retry_http_codes}, priority="cmdline")
    return own


class RetryMiddleware(ScrapyRetryMiddleware):
    """Scrapy's ``RetryMiddleware`` with backoff, malformed answers and ``ptm/`` stats."""

    def __init__(self, settings: BaseSettings, backoff_base: float,
                 backoff_max: float) -> None:
        super().__init__(settings)
        self.base = backoff_base
        self.cap = backoff_max
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # replaceable in tests
        self.decode_once = enabled(settings, "PTM_PERF_DECODE_ONCE")
        self.stats: StatsCollector

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        s = ptm_settings(crawler)
        o = cls(retry_settings(crawler), s.retry_backoff_base, s.retry_backoff_max)
        o.crawler = crawler
        assert crawler.stats is not None
        o.stats = crawler.stats
        return o

    async def process_request(self, request: Request) -> None:
        not_before = request.meta.get(NOT_BEFORE_META)
        if not_before is None:
            return
        wait = min(float(not_before) - time.time(), self.cap)
        if wait > 0:
            await self.sleep(wait)

    def process_response(self, request: Request, response: Response,
                         spider: Spider | None = None) -> Request | Response:
        if request.meta.get("dont_retry"):
            return response
        if response.status in self.retry_http_codes:
            reason = f"http_{response.status}"
        elif "dataloss" in response.flags:  # with DOWNLOAD_FAIL_ON_DATALOSS off
            reason = "data_loss"
        else:
            bad = malformed_reason(response, request.meta.get("ptm_expect"),
                                   keep=self.decode_once)
            if bad is None:
                return response
            blob = request.meta.get(GIT_BLOB_META)
            if blob and git_blob_sha(response.body) == blob:
                self.stats.inc_value(f"ptm/retry/skipped/committed_{bad}")
                return response  # malformed as committed: the spider names and counts it
            # Given up, it goes on to the spider, which names the URL and counts
            # ptm/bad_response/<reason>: Scrapy's give-up line is then a warning.
            retry = self.retry_later(request, f"bad_response/{bad}", logging.WARNING)
            return retry or response
        # A 503 that names its own wait (maintenance) is retried no sooner than it asks.
        asked = parse_retry_after(response.headers.get("Retry-After"), time.time())
        retry = self.retry_later(request, reason, at_least=asked)
        if retry is None:
            self.stats.inc_value(f"ptm/failed/{reason}")
        return retry or response

    def process_exception(self, request: Request, exception: Exception,
                          spider: Spider | None = None) -> Request | Response | None:
        if request.meta.get("dont_retry") or not isinstance(exception,
                                                             self.exceptions_to_retry):
            return None
        reason = exception_reason(exception)
        retry = self.retry_later(request, reason)
        if retry is None:
            self.stats.inc_value(f"ptm/failed/{reason}")
        return retry

    def retry_later(self, request: Request, reason: str, give_up_level: int | None = None,
                    at_least: float | None = None) -> Request | None:
        """Scrapy's retry of ``request``, to be sent after its backoff; ``None`` when its
        retries are spent (Scrapy has then logged the give-up)."""
        assert self.crawler.spider is not None
        meta = request.meta
        retry = get_retry_request(
            request, spider=self.crawler.spider, reason=reason,
            max_retry_times=meta.get("max_retry_times", self.max_retry_times),
            priority_adjust=meta.get("priority_adjust", self.priority_adjust),
            give_up_log_level=meta.get("give_up_log_level",
                                       give_up_level or self.give_up_log_level),
            logger=logger, stats_base_key=STATS_BASE)
        if retry is None:
            return None
        delay = backoff(retry.meta["retry_times"], self.base, self.cap)
        if at_least is not None:
            delay = max(delay, min(at_least, self.cap))
        retry.meta[NOT_BEFORE_META] = time.time() + delay
        logger.debug("Retry of %s waits %.2f s", request.url, delay)
        return retry
