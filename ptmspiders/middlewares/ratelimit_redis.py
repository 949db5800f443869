"""One quota for many workers: the throttle's buckets kept in Redis (``PTM_FRONTIER``).

A token's rate limit is global, so N workers crawling with one ``HF_TOKEN`` must share one
window per origin and bucket. Each bucket's state (``Bucket.state()``, the same fields the
in-process throttle keeps) is one JSON value under
``ptm:ratelimit:{credential hash}:{origin}|{bucket}``; every step of the state machine
(reserve, observe, a 429, a lost probe) is load -> the same ``Bucket`` method -> store, made
atomic by optimistic concurrency (WATCH/MULTI/EXEC, retried on a conflict). There is one
implementation of the window logic, ``Bucket``; Redis only keeps its state.

The credential hash is the first 16 hex digits of SHA-256 of the credential sent to that origin
(``HF_TOKEN``, ``GITHUB_TOKEN``, the Kaggle user name) or ``anon``: workers with one token share
a window, workers with different tokens have their own, and the token never reaches Redis.
Shared state needs a shared clock: these buckets run on wall time (``time.time()``), so the
workers' machines must keep their clocks in sync (NTP). A worker waiting for another's probe
cannot be woken by it: it looks at the shared state every ``poll`` seconds instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import RedisError, WatchError
from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response

from ptmspiders.config import frontier_problem, ptm_settings, redacted
from ptmspiders.hubs import SERVICES
from ptmspiders.middlewares.ratelimit import (
    AnswerStep,
    Bucket,
    HubRule,
    RateLimitMiddleware,
    T,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "ptm:ratelimit"
# The credential each service's requests carry (see middlewares/auth.py): it names the quota.
CREDENTIALS = {s.key: s.credentials for s in SERVICES.values() if s.credentials}
MAX_ATTEMPTS = 100  # optimistic transactions per step before the step fails
CLOSE_REASON = "shared_ratelimit_unavailable"


class SharedStateError(Exception):
    """The shared bucket state could not be read or written."""


def credential_hash(value: str | None) -> str:
    """What names a quota in Redis keys: a hash of the credential, never the credential."""
    if not value:
        return "anon"
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def hub_identities(env: Mapping[str, str], auth_enabled: bool = True) -> dict[str, str]:
    """The credential hash of each hub's requests (``anon`` when they carry none)."""
    identities = {}
    for hub, names in CREDENTIALS.items():
        present = auth_enabled and all(env.get(n) for n in names)
        identities[hub] = credential_hash(env[names[0]] if present else None)
    return identities


def check_frontier(url: str) -> str:
    """``PTM_FRONTIER`` as given, if it is a Redis URL; else a ValueError of one line."""
    problem = frontier_problem(url)
    if problem is not None:
        raise ValueError(f"PTM_FRONTIER={redacted(url)!r}: {problem}")
    return url


def ping_frontier(url: str) -> None:
    """That ``PTM_FRONTIER`` is a Redis URL and Redis answers; else a ValueError of one line
    (``scrapy crawl`` asks before the crawl starts: ptmspiders/commands/crawl.py)."""
    check_frontier(url)
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5) as r:
            r.ping()
    except (RedisError, OSError, ValueError) as exc:
        raise ValueError(f"PTM_FRONTIER={redacted(url)}: Redis does not answer ({exc}); "
                         "the crawl needs it for its frontier and shared rate limits") from None


class SharedRateLimitMiddleware(RateLimitMiddleware):
    """The throttle with its buckets in Redis, shared by every worker that names the same
    ``PTM_FRONTIER``."""

    poll = 0.05

    def __init__(self, crawler: Crawler, rules: list[HubRule], *, url: str,
                 identities: dict[str, str], burst: float, max_waits: int,
                 default_wait: float, min_wait: float, probe_timeout: float) -> None:
        super().__init__(crawler, rules, burst=burst, max_waits=max_waits,
                         default_wait=default_wait, min_wait=min_wait,
                         probe_timeout=probe_timeout)
        self.url = url
        self.identities = identities
        self.clock = time.time  # one clock for every worker (machines NTP-synced)
        self.client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url)
        self.initial: dict[str, dict[str, Any]] = {}  # a bucket's state before any answer
        self.locks: dict[str, asyncio.Lock] = {}
        self.failed = False
        self._closing: asyncio.Task[None] | None = None
        crawler.signals.connect(self.close, signal=signals.spider_closed)

    @classmethod
    def connect(cls, crawler: Crawler, rules: list[HubRule], url: str,
                env: Mapping[str, str], **options: Any) -> SharedRateLimitMiddleware:
        """Check the URL and that Redis answers, before the crawl starts."""
        ping_frontier(url)
        auth = ptm_settings(crawler).auth_enabled
        mw = cls(crawler, rules, url=url, identities=hub_identities(env, auth), **options)
        logger.info("Rate limits shared through Redis at %s", redacted(url))
        return mw

    def redis_key(self, bucket: Bucket) -> str:
        identity = self.identities.get(self.bucket_hubs.get(bucket.key, ""), "anon")
        return f"{KEY_PREFIX}:{identity}:{bucket.key}"

    def ttl(self, bucket: Bucket, now: float) -> int:
        """Seconds the state outlives its last write: a few windows past all it knows."""
        horizon = max(bucket.blocked_until, bucket.window_end or 0.0, bucket.probe_sent_at)
        return math.ceil(max(3 * bucket.window, horizon - now + bucket.window, 60.0))

    async def run(self, bucket: Bucket, op: Callable[[Bucket], T]) -> T:
        """Load the bucket's shared state, run ``op`` on it, store it: atomically."""
        key = self.redis_key(bucket)
        initial = self.initial.setdefault(bucket.key, bucket.state())
        # One step at a time per bucket in this process: the local Bucket is the scratch
        # copy each step loads the state into.
        lock = self.locks.setdefault(bucket.key, asyncio.Lock())
        async with lock:
            try:
                return await self._transaction(key, bucket, initial, op)
            except (RedisError, OSError) as exc:
                self._fail(f"Redis at {redacted(self.url)} failed: {exc}")
                raise SharedStateError(str(exc)) from None

    async def _transaction(self, key: str, bucket: Bucket, initial: dict[str, Any],
                           op: Callable[[Bucket], T]) -> T:
        for attempt in range(MAX_ATTEMPTS):
            async with self.client.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                raw = await pipe.get(key)
                before = json.loads(raw) if raw else initial
                bucket.load(before)
                result = op(bucket)
                after = bucket.state()
                if raw and after == before:
                    return result  # nothing changed: no write, no conflict for others
                pipe.multi()
                pipe.set(key, json.dumps(after), ex=self.ttl(bucket, self.clock()))
                try:
                    await pipe.execute()
                except WatchError:
                    self.stats.inc_value("ptm/ratelimit/shared_conflicts")
                    await asyncio.sleep(random.uniform(0, min(0.001 * 2 ** attempt, 0.02)))
                    continue
                return result
        self._fail(f"{MAX_ATTEMPTS} conflicting updates in a row on {key}")
        raise SharedStateError(f"{MAX_ATTEMPTS} conflicts on {key}")

    def _fail(self, why: str) -> None:
        """Without the shared state the quota cannot be kept: stop the crawl (once)."""
        self.stats.inc_value("ptm/ratelimit/shared_errors")
        if self.failed:
            return
        self.failed = True
        logger.error("Shared rate limits unavailable (%s): closing the crawl", why)
        if self.crawler.crawling:
            self._closing = asyncio.get_running_loop().create_task(
                self.crawler.engine.close_spider_async(reason=CLOSE_REASON))

    async def close(self) -> None:
        await self.client.aclose()

    # -- downloader middleware API: the same steps, awaiting the shared state ---------------
    async def process_request(self, request: Request) -> None:
        try:
            await super().process_request(request)
        except SharedStateError:
            raise IgnoreRequest(f"shared rate limit state unavailable: {request.url}") from None

    async def process_response(  # type: ignore[override]
            self, request: Request, response: Response) -> Request | Response:
        step = self._answer(request, response)
        if step is None:
            return response
        try:
            outcome = await self.run(step.bucket, step.apply)
        except SharedStateError:
            return response  # the answer itself is good; the crawl is closing
        return step.finish(outcome)

    async def process_exception(  # type: ignore[override]
            self, request: Request, exception: Exception) -> None:
        step: AnswerStep | None = self._exception_step(request)
        if step is None:
            return
        try:
            outcome = await self.run(step.bucket, step.apply)
        except SharedStateError:
            return
        step.finish(outcome)
