"""Retries for what is usually transient at a hub: 5xx, timeouts, dropped connections, and
malformed answers (HTML or truncated JSON where JSON was expected).

Replaces Scrapy's ``RetryMiddleware`` (switched off in settings), which would retry a 429 blindly
and ignore ``Retry-After``: 429s belong to :mod:`ptmspiders.middlewares.ratelimit`, which sits
nearer the downloader and waits them out without spending this budget. Here each retry waits an
exponential backoff with jitter (``PTM_RETRY_BACKOFF_BASE * 2**n``, at most
``PTM_RETRY_BACKOFF_MAX``), carried in the retried request's meta and awaited in
``process_request``: no thread sleeps and other requests go on meanwhile. After
``PTM_RETRY_TIMES`` retries the failure is logged with its URL and counted
(``ptm/failed/<reason>``); a malformed answer is then passed on so the spider logs and counts
``ptm/bad_response/<reason>``.

Requests that expect JSON say so with ``meta["ptm_expect"] = "list" | "object" | "any"``
(see ``PtmSpider.json_request``). A file read whose git blob sha is known in advance also says
``meta["ptm_git_blob"]``: a malformed body with exactly that sha is the file as committed, which
no retry can change, so it goes to the spider at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    NotConfigured,
    ResponseDataLossError,
)
from scrapy.http import Response
from scrapy.statscollectors import StatsCollector
from scrapy.utils.misc import load_object
from twisted.internet import error as tx_error
from twisted.web.client import ResponseFailed

from ptmspiders.github import git_blob_sha
from ptmspiders.ratelimit_headers import parse_retry_after
from ptmspiders.responses import BadResponse, load_json

logger = logging.getLogger(__name__)

EXPECT: dict[str, type | tuple[type, ...] | None] = {
    "list": list, "object": dict, "any": None,
}
NOT_BEFORE_META = "ptm_not_before"  # wall-clock time (survives a JOBDIR restart)
GIT_BLOB_META = "ptm_git_blob"  # the blob sha a raw file read should have


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


def malformed_reason(response: Response, expect: str | None) -> str | None:
    """Why a 2xx answer that should be JSON is unusable, or ``None`` if it is fine."""
    if expect is None or not 200 <= response.status < 300:
        return None
    if expect not in EXPECT:
        raise ValueError(f'meta["ptm_expect"]={expect!r}: expected one of {", ".join(EXPECT)}')
    if "dataloss" in response.flags:
        return "truncated_body"
    try:
        load_json(response.body, EXPECT[expect], keep=True)
    except BadResponse as exc:
        return exc.reason
    return None


class RetryMiddleware:
    def __init__(self, crawler: Crawler, *, times: int, http_codes: set[int], base: float,
                 cap: float, priority_adjust: int, exceptions: tuple[type[BaseException], ...]
                 ) -> None:
        assert crawler.stats is not None
        self.stats: StatsCollector = crawler.stats
        self.times = times
        self.http_codes = http_codes
        self.base = base
        self.cap = cap
        self.priority_adjust = priority_adjust
        self.exceptions = exceptions
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # replaceable in tests

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RetryMiddleware:
        s = crawler.settings
        if not s.getbool("PTM_RETRY_ENABLED", True):
            raise NotConfigured("PTM_RETRY_ENABLED is off")
        times = s.getint("PTM_RETRY_TIMES", 5)
        base = s.getfloat("PTM_RETRY_BACKOFF_BASE", 1.0)
        cap = s.getfloat("PTM_RETRY_BACKOFF_MAX", 60.0)
        codes = {int(c) for c in s.getlist("PTM_RETRY_HTTP_CODES",
                                           [500, 502, 503, 504, 522, 524, 408])}
        if times < 0 or base < 0 or cap < base:
            raise ValueError("PTM_RETRY_TIMES must be >= 0 and 0 <= PTM_RETRY_BACKOFF_BASE <= "
                             "PTM_RETRY_BACKOFF_MAX")
        if codes & {429}:
            raise ValueError("PTM_RETRY_HTTP_CODES must not hold 429: rate limits are waited "
                             "out by RateLimitMiddleware, not retried")
        exceptions = tuple(load_object(e) if isinstance(e, str) else e
                           for e in s.getlist("RETRY_EXCEPTIONS"))
        return cls(crawler, times=times, http_codes=codes, base=base, cap=cap,
                   priority_adjust=s.getint("PTM_RETRY_PRIORITY_ADJUST", -1),
                   exceptions=exceptions)

    async def process_request(self, request: Request) -> None:
        not_before = request.meta.get(NOT_BEFORE_META)
        if not_before is None:
            return
        wait = min(float(not_before) - time.time(), self.cap)
        if wait > 0:
            await self.sleep(wait)

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry"):
            return response
        if response.status in self.http_codes:
            reason = f"http_{response.status}"
        elif "dataloss" in response.flags:  # with DOWNLOAD_FAIL_ON_DATALOSS off
            reason = "data_loss"
        else:
            bad = malformed_reason(response, request.meta.get("ptm_expect"))
            if bad is None:
                return response
            blob = request.meta.get(GIT_BLOB_META)
            if blob and git_blob_sha(response.body) == blob:
                self.stats.inc_value(f"ptm/retry/skipped/committed_{bad}")
                return response  # malformed as committed: the spider names and counts it
            reason = f"bad_response/{bad}"
        # A 503 that names its own wait (maintenance) is retried no sooner than it asks.
        asked = parse_retry_after(response.headers.get("Retry-After"), time.time())
        retry = self._retry(request, reason, at_least=asked)
        if retry is not None:
            return retry
        if reason.startswith("bad_response/"):
            # The spider names the URL and counts ptm/bad_response/<reason>.
            logger.warning("Gave up retrying %s after %d attempts: %s", request.url,
                           int(request.meta.get("retry_times", 0)) + 1, reason)
        else:
            self._give_up(request, reason)
        return response

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if request.meta.get("dont_retry") or not isinstance(exception, self.exceptions):
            return None
        reason = exception_reason(exception)
        retry = self._retry(request, reason)
        if retry is None:
            self._give_up(request, reason, exception)
        return retry

    def _retry(self, request: Request, reason: str, at_least: float | None = None
               ) -> Request | None:
        attempt = int(request.meta.get("retry_times", 0)) + 1
        limit = request.meta.get("max_retry_times", self.times)
        if attempt > limit:
            return None
        delay = backoff(attempt, self.base, self.cap)
        if at_least is not None:
            delay = max(delay, min(at_least, self.cap))
        retry = request.replace(dont_filter=True,
                                priority=request.priority + self.priority_adjust)
        retry.meta["retry_times"] = attempt
        retry.meta[NOT_BEFORE_META] = time.time() + delay
        self.stats.inc_value("ptm/retry/count")
        self.stats.inc_value(f"ptm/retry/reason/{reason}")
        logger.debug("Retrying %s in %.2f s (attempt %d of %d): %s", request.url, delay,
                     attempt, limit, reason)
        return retry

    def _give_up(self, request: Request, reason: str, exc: Any = None) -> None:
        self.stats.inc_value(f"ptm/failed/{reason}")
        attempts = int(request.meta.get("retry_times", 0)) + 1
        logger.error("Giving up on %s after %d attempts: %s%s", request.url, attempts, reason,
                     f" ({exc})" if exc is not None else "")
