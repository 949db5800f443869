"""Pace every hub by its published budget, and wait out a 429 instead of retrying it blindly.

Each request is classified into a bucket keyed by origin (scheme, host, port) and bucket name:
the Hugging Face host has three (``api`` for ``/api/...``, ``resolvers`` for ``/{repo}/resolve/``,
``pages`` for the rest), the GitHub REST origin one (``core``; the raw host is not counted),
Kaggle's API one (the services, their buckets and published quotas: ``ptmspiders/hubs.py``).
A bucket is a fixed window: ``quota`` requests per ``window`` seconds, first from the settings
and those published quotas (HUBS.md's tier tables), then from what the hub says on every answer
(``RateLimit`` / ``RateLimit-Policy``, GitHub's ``X-RateLimit-*``).

How a request's send time is decided (``Bucket.reserve``): the first request of a bucket, of
every new window and after a 429 is a probe sent alone; its answer tells where the window ends
and how much is left (so a wrong guess of the window costs one request, never a burst). After
that, up to ``PTM_RATELIMIT_BURST`` of a window's quota goes out at once and the rest is spread
evenly over the time left in the window, so the remaining count reaches zero at the window's end
rather than early; when nothing is left, requests wait for the reset. On a 429 (or GitHub's
403 with nothing remaining, or a secondary limit with ``Retry-After``) the bucket waits exactly
until the window resets and the same request is sent again: the wait uses no retry and drops
nothing.

Waiting is an ``asyncio.sleep`` in the coroutine ``process_request`` of this middleware, placed
next to the downloader (order 950) so the moment a request leaves it is the moment it is sent;
other buckets keep their own clocks. Each bucket also gets its own downloader slot
(``download_slot`` meta), so a waiting bucket does not hold another bucket's concurrency. As
with Scrapy's own ``DOWNLOAD_DELAY``, waiting requests still count against
``CONCURRENT_REQUESTS``.

Every step of a bucket (reserve, observe, a 429, a lost probe) goes through ``run``: here it runs
on this process's ``Bucket`` at once; with ``PTM_FRONTIER`` set, ``ratelimit_redis`` runs the
same step on the state all workers share in Redis, so there is one window logic for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response
from scrapy.statscollectors import StatsCollector

from ptmspiders.config import PtmSettings, ptm_settings
from ptmspiders.hubs import GITHUB_API, HUGGINGFACE_API, KAGGLE_API, SERVICES
from ptmspiders.middlewares.auth import origin
from ptmspiders.ratelimit_headers import (
    parse_github_ratelimit,
    parse_ratelimit,
    parse_ratelimit_policy,
    parse_retry_after,
)
from ptmspiders.stopping import unless_stopping

logger = logging.getLogger(__name__)

# The budgets themselves are facts of the hubs' services (ptmspiders/hubs.py).
HF_TIERS = HUGGINGFACE_API.tiers
HF_BUCKETS = HUGGINGFACE_API.buckets
META_KEY = "ptm_ratelimit"  # (bucket key, reservation number) of the request in flight
WAITS_META = "ptm_ratelimit_waits"
# Bucket fields that are one worker's own, never shared (see Bucket.state).
LOCAL_FIELDS = frozenset({"key", "burst", "waited_window", "paced_window", "label"})
# A pace wait this long is logged (once a window): the crawl looks stalled meanwhile.
LONG_PACE = 30.0
T = TypeVar("T")


@dataclass
class Bucket:
    """One fixed-window budget, as a pure state machine over a monotonic clock."""

    key: str
    quota: int | None  # None: no known budget, only 429s and headers pace it
    window: float
    burst: float = 0.5
    window_end: float | None = None
    left: int = 0
    next_at: float = 0.0
    blocked_until: float = 0.0
    unknown: bool = True  # no answer read yet (or a 429 since): send one probe first
    probe_out: bool = False
    probe_sent_at: float = 0.0
    probe_seq: int = 0
    sent: int = 0
    roll_seq: int = 0  # reservations made before the current window began
    window_start: float | None = None
    waited_window: float | None = field(default=None, repr=False)
    paced_window: float | None = field(default=None, repr=False)
    label: str = ""  # for log lines: "huggingface api (https://huggingface.co:443)"

    @property
    def tolerance(self) -> float:
        return min(1.5, self.window / 4)

    def reserve(self, now: float) -> tuple[float, str] | None:
        """The send time of one more request and why it waits (``""``, ``probe``, ``pace``,
        ``budget`` or ``blocked``); ``None`` means: wait until the probe is answered."""
        t = max(now, self.next_at, self.blocked_until)
        why = "blocked" if self.blocked_until > now and t == self.blocked_until else ""
        if self.unknown:
            if self.probe_out:
                return None
            self.probe_out = True
            self.probe_sent_at = t
            self.sent += 1
            self.probe_seq = self.sent
            return t, why or "probe"
        if self.quota is None or self.window_end is None:
            self.sent += 1
            return t, why
        if self.left <= 0 or t >= self.window_end:
            # A new window (the budget is spent, or time ran out): its first request goes
            # alone, as a probe, so the hub's answer anchors the window before more is sent.
            t = max(t, self.window_end)
            self.window_start = self.window_end
            self.unknown = True
            self.probe_out = True
            self.probe_sent_at = t
            self.sent += 1
            self.probe_seq = self.sent
            self.roll_seq = self.sent - 1
            return t, "budget" if t > now else (why or "probe")
        self.sent += 1
        self.left -= 1
        if self.left > self.quota * (1 - self.burst):
            interval = 0.0
        else:
            interval = max(self.window_end - t, 0.0) / (self.left + 1)
        self.next_at = t + interval
        if not why and t > now:
            why = "pace"
        return t, why

    def observe(self, now: float, seq: int, remaining: int | None, reset: float | None,
                quota: int | None = None, window: float | None = None) -> None:
        """Learn from an answer to the request with reservation number ``seq``."""
        if quota is not None and quota > 0:
            self.quota = quota
        if window is not None and window > 0:
            self.window = window
        after = max(self.sent - seq, 0)  # reserved after this one: the server may not know
        if self.unknown:
            if seq != self.probe_seq:
                return  # sent before the state was lost: says nothing about the new window
            self.unknown = False
            self.probe_out = False
            if remaining is not None and reset is not None:
                end = now + reset
                if (window is None and self.window_start is not None
                        and end - self.window_start > self.tolerance):
                    self.window = end - self.window_start  # learnt from the boundary
                self.window_end = end
                self.left = remaining - after
            elif self.quota is not None:
                self.window_end = self.probe_sent_at + self.window
                self.left = self.quota - after - 1
            self.roll_seq = seq - 1
            return
        if remaining is None or reset is None:
            return
        end = now + reset
        if self.window_end is None or end > self.window_end + self.tolerance:
            self.window_end = end  # the hub is in a later window than assumed
            self.window_start = end - self.window
            self.roll_seq = max(self.roll_seq, seq - 1)
            self.left = remaining - after
        elif end >= self.window_end - self.tolerance:
            # Same window: never assume it ends earlier than first seen (a reset rounded down
            # would start the next window early), never more budget than the hub says.
            self.window_end = max(self.window_end, end)
            self.left = min(self.left, remaining - after)
        elif seq > self.roll_seq:
            # Sent in this window, yet the hub's window ends sooner: the window is shorter than
            # assumed (GitHub's headers give no length): learn it from the boundary.
            if self.window_start is not None and end - self.window_start > self.tolerance:
                self.window = end - self.window_start
            self.window_end = end
            self.left = min(self.left, remaining - after)
            self.next_at = min(self.next_at, now)  # the spacing came from the longer window

    def limited(self, now: float, wait: float) -> bool:
        """A 429: nothing until ``now + wait``, then one probe. True if this moved the wait."""
        until = now + wait
        moved = until > self.blocked_until + 0.5
        self.blocked_until = max(self.blocked_until, until)
        self.window_end = self.blocked_until
        self.left = 0
        self.next_at = 0.0
        self.unknown = True
        self.probe_out = False
        return moved

    def probe_lost(self, seq: int | None = None) -> None:
        """The probe ended without an answer (an exception): the next request probes."""
        if self.unknown and (seq is None or seq == self.probe_seq):
            self.probe_out = False

    def state(self) -> dict[str, Any]:
        """The window's state, as plain values: what workers sharing this bucket share (the
        key, the burst share, the label and the log bookkeeping stay each worker's own)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in LOCAL_FIELDS}

    def load(self, state: dict[str, Any]) -> None:
        """Take over a state written by ``state()`` (this or another worker's)."""
        for f in fields(self):
            if f.name not in LOCAL_FIELDS and f.name in state:
                setattr(self, f.name, state[f.name])


@dataclass(frozen=True)
class Reservation:
    """What ``Bucket.reserve`` granted one request, read off the bucket as it was granted."""

    now: float
    at: float
    why: str
    seq: int
    probe: bool
    window_end: float | None
    quota: int | None
    window: float


@dataclass
class AnswerStep:
    """What an answer does to its bucket (``apply``, run on the bucket's current state) and
    what follows from that (``finish``: the response or the request to send again)."""

    bucket: Bucket
    apply: Callable[[Bucket], Any]
    finish: Callable[[Any], Request | Response]


@dataclass(frozen=True)
class HubRule:
    """Which requests belong to a hub: a base URL (origin + path prefix) and its buckets."""

    hub: str
    origin: str
    path: str
    buckets: dict[str, int | None]
    window: float
    path_filter: tuple[str, ...] = ()
    exempt: bool = False  # matched so no other rule takes it, but never paced or counted

    def bucket_name(self, path: str) -> str | None:
        if not path.startswith(self.path):
            return None
        if self.path_filter and not path.startswith(self.path_filter):
            return None
        if self.hub == HUGGINGFACE_API.key:
            rest = path[len(self.path):]
            if rest.startswith("/api/"):
                return "api"
            if "/resolve/" in rest:
                return "resolvers"
            return "pages"
        return next(iter(self.buckets))


def _base(url: str) -> tuple[str, str]:
    return origin(url), urlsplit(url).path.rstrip("/")


def hub_rules(settings: PtmSettings, env_tokens: dict[str, bool]) -> list[HubRule]:
    """The hubs' budgets from settings, most specific base URL first."""
    tier = settings.hf_tier
    if not tier:
        tier = "free" if env_tokens.get(HUGGINGFACE_API.credentials[0]) else "anonymous"
    hf_quotas: dict[str, int | None] = dict(zip(HF_BUCKETS, HF_TIERS[tier], strict=True))
    hf_quotas.update(settings.hf_quotas)
    gh_tier = "token" if env_tokens.get(GITHUB_API.credentials[0]) else "anonymous"
    gh_quota = settings.github_quota or GITHUB_API.tiers[gh_tier][0]
    quotas: dict[str, dict[str, int | None]] = {
        HUGGINGFACE_API.key: hf_quotas,
        GITHUB_API.key: dict.fromkeys(GITHUB_API.buckets, gh_quota),
        KAGGLE_API.key: dict.fromkeys(KAGGLE_API.buckets, settings.kaggle_quota or None),
    }
    paced = [s for s in SERVICES.values() if s.buckets]
    windows: dict[str, float] = {}
    for s in paced:
        assert s.window_setting is not None
        windows[s.key] = settings.value(s.window_setting)
    bases = {s.key: _base(settings.value(s.url_setting)) for s in paced}
    hf_origin, hf_path = bases[HUGGINGFACE_API.key]
    gh_origin, gh_path = bases[GITHUB_API.key]
    # Where GitHub's API shares a base with the Hub (only on a test's single mock), tell them
    # apart by GitHub's own path roots.
    gh_filter: tuple[str, ...] = ()
    if (gh_origin, gh_path) == (hf_origin, hf_path):
        gh_filter = tuple(f"{gh_path}/{p}/" for p in ("repos", "rate_limit", "search", "orgs"))
    # Raw catalogue files are not counted against any quota (``exempt``): a rule of their own
    # keeps them out of a bucket whose base they share (the API's or the Hub's, on one test
    # mock), and wins a tie of bases. Otherwise, on one base, the service listed later in
    # hubs.py wins (as its credential does in middlewares/auth.py).
    rules = [HubRule(s.key, *bases[s.key], quotas.get(s.key) or dict.fromkeys(s.buckets),
                     windows[s.key], gh_filter if s is GITHUB_API else (), exempt=s.exempt)
             for s in reversed(paced)]
    return sorted(rules, key=lambda r: (-len(r.path), -len(r.path_filter), not r.exempt))


class RateLimitMiddleware:
    """The throttle with its buckets in this process (see ``ratelimit_redis`` for buckets
    shared by many workers through Redis, chosen by ``PTM_FRONTIER``)."""

    # Seconds between looks at a bucket while another process's probe is out; None: only
    # this process answers probes, which wakes the waiters at once.
    poll: float | None = None

    def __init__(self, crawler: Crawler, rules: list[HubRule], *, burst: float,
                 max_waits: int, default_wait: float, min_wait: float,
                 probe_timeout: float) -> None:
        assert crawler.stats is not None
        self.crawler = crawler
        self.stats: StatsCollector = crawler.stats
        self.rules = rules
        self.burst = burst
        self.max_waits = max_waits
        self.default_wait = default_wait
        self.min_wait = min_wait
        self.probe_timeout = probe_timeout
        self.buckets: dict[str, Bucket] = {}
        self.bucket_hubs: dict[str, str] = {}  # bucket key -> the hub whose rule made it
        self._answered: dict[str, asyncio.Event] = {}
        # The clocks, replaceable in tests.
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RateLimitMiddleware:
        import os

        s = ptm_settings(crawler)
        if not s.ratelimit_enabled:
            raise NotConfigured("PTM_RATELIMIT_ENABLED is off")
        tokens = {k: bool(os.environ.get(k)) for k in ("HF_TOKEN", "GITHUB_TOKEN")}
        rules = hub_rules(s, tokens)
        burst, max_waits = s.ratelimit_burst, s.ratelimit_max_waits
        default_wait, min_wait = s.ratelimit_default_wait, s.ratelimit_min_wait
        probe_timeout = crawler.settings.getfloat("DOWNLOAD_TIMEOUT") + 5
        frontier = s.frontier
        if frontier:
            # Many workers, one quota: the buckets live in Redis (ratelimit_redis.py).
            from ptmspiders.middlewares.ratelimit_redis import SharedRateLimitMiddleware

            return SharedRateLimitMiddleware.connect(
                crawler, rules, frontier, os.environ, burst=burst, max_waits=max_waits,
                default_wait=default_wait, min_wait=min_wait, probe_timeout=probe_timeout)
        return cls(crawler, rules, burst=burst, max_waits=max_waits, default_wait=default_wait,
                   min_wait=min_wait, probe_timeout=probe_timeout)

    # -- classification ---------------------------------------------------------------------
    def bucket_for(self, url: str, create: bool = False, name: str | None = None
                   ) -> Bucket | None:
        req_origin = origin(url)
        path = urlsplit(url).path
        for rule in self.rules:
            if rule.origin != req_origin:
                continue
            bucket_name = rule.bucket_name(path)
            if bucket_name is None:
                continue
            if rule.exempt:
                return None
            if name is not None and name != bucket_name and name in rule.buckets:
                bucket_name = name
            key = f"{req_origin}|{bucket_name}"
            if key not in self.buckets:
                self.buckets[key] = Bucket(key, rule.buckets.get(bucket_name), rule.window,
                                           self.burst,
                                           label=f"{rule.hub} {bucket_name} ({req_origin})")
                self.bucket_hubs[key] = rule.hub
            return self.buckets[key]
        # Another host: paced only once it has told us about a limit.
        key = f"{req_origin}|{name or 'default'}"
        if key not in self.buckets and create:
            self.buckets[key] = Bucket(key, None, 60.0, self.burst, unknown=False,
                                       label=f"{name or 'default'} ({req_origin})")
        return self.buckets.get(key)

    def _event(self, key: str) -> asyncio.Event:
        if key not in self._answered:
            self._answered[key] = asyncio.Event()
        return self._answered[key]

    def _wake(self, key: str) -> None:
        event = self._answered.pop(key, None)
        if event is not None:
            event.set()

    async def run(self, bucket: Bucket, op: Callable[[Bucket], T]) -> T:
        """Run one step of the bucket's state machine. Here the bucket is this process's
        own and the step runs at once (no suspension); the shared throttle overrides this
        to run it on the state every worker shares."""
        return op(bucket)

    # -- the steps, each run by ``run`` on the bucket's current state -----------------------
    def _reserve(self, bucket: Bucket) -> Reservation | float:
        """A send time for one request, or how long to wait at most for the probe's answer."""
        now = self.clock()
        if (bucket.unknown and bucket.probe_out
                and now >= bucket.probe_sent_at + self.probe_timeout):
            bucket.probe_lost()  # no answer for too long: its sender is gone
        reserved = bucket.reserve(now)
        if reserved is None:
            # The probe may itself wait for a reset first: time it from when it goes out.
            return max(bucket.probe_sent_at - now, 0.0) + self.probe_timeout
        at, why = reserved
        return Reservation(now, at, why, bucket.sent, bucket.unknown, bucket.window_end,
                           bucket.quota, bucket.window)

    # -- downloader middleware API ----------------------------------------------------------
    async def process_request(self, request: Request) -> None:
        bucket = self.bucket_for(request.url)
        if bucket is None:
            return
        request.meta["download_slot"] = bucket.key
        while True:
            got = await self.run(bucket, self._reserve)
            if isinstance(got, Reservation):
                break
            patience = got
            if self.poll is not None:
                # Another process's probe: look again soon after it can have been answered.
                patience = min(got, max(got - self.probe_timeout, 0.0) + self.poll)
            with contextlib.suppress(TimeoutError):
                if not await unless_stopping(self.crawler, asyncio.wait_for(
                        self._event(bucket.key).wait(), patience)):
                    self.stats.inc_value("ptm/ratelimit/dropped_at_shutdown")
                    raise IgnoreRequest("the crawl is stopping: not sent")
        request.meta[META_KEY] = (bucket.key, got.seq)
        if got.probe:  # this request is the probe
            self.stats.inc_value("ptm/ratelimit/probes")
        wait = got.at - got.now
        if wait <= 0:
            return
        if got.why == "budget" and bucket.waited_window != got.window_end:
            bucket.waited_window = got.window_end
            self.stats.inc_value("ptm/ratelimit/window_waits")
            logger.info("Rate limit: %s has used its %s requests of this %.0f s window; "
                        "waiting %.1f s for the reset", bucket.label or bucket.key, got.quota,
                        got.window, wait)
        elif got.why == "pace" and wait >= LONG_PACE and bucket.paced_window != got.window_end:
            bucket.paced_window = got.window_end
            left = max((got.window_end or got.now) - got.now, 0.0)
            logger.info("Rate limit: %s spreads what is left of its %s requests over the "
                        "%.0f s left in its window: one request every %.0f s (a token may "
                        "raise the quota)", bucket.label or bucket.key, got.quota, left, wait)
        self.stats.inc_value(f"ptm/ratelimit/delayed/{got.why or 'pace'}")
        self.stats.inc_value("ptm/ratelimit/delay_ms", round(wait * 1000))
        if not await unless_stopping(self.crawler, self.sleep(wait)):
            # A stop (SIGTERM, Ctrl-C) must not wait out a window: the request is dropped
            # (its errback runs) and its reservation given back if it was the probe.
            step = self._exception_step(request)
            if step is not None:  # through run(): the shared throttle's state is in Redis
                step.finish(await self.run(step.bucket, step.apply))
            self.stats.inc_value("ptm/ratelimit/dropped_at_shutdown")
            raise IgnoreRequest("the crawl is stopping: not sent")

    def process_response(self, request: Request, response: Response) -> Request | Response:
        step = self._answer(request, response)
        if step is None:
            return response
        return step.finish(step.apply(step.bucket))

    def _answer(self, request: Request, response: Response) -> AnswerStep | None:
        """What this answer does to its bucket, or None when it concerns none."""
        now = self.clock()
        epoch = time.time()
        headers = {k.decode("latin-1").lower(): (response.headers.get(k) or b"").decode("latin-1")
                   for k in response.headers}
        states = parse_ratelimit(headers.get("ratelimit"))
        policies = parse_ratelimit_policy(headers.get("ratelimit-policy"))
        github = parse_github_ratelimit(headers, epoch)
        retry_after = parse_retry_after(headers.get("retry-after"), epoch)
        limited = response.status == 429 or (response.status == 403 and (
            retry_after is not None or (github is not None and github.remaining == 0)))
        has_info = bool(states or policies or github)
        name = next((s.name for s in states if s.name), None)
        info = request.meta.get(META_KEY)
        bucket = self.buckets.get(info[0]) if info else None
        seq: int | None = info[1] if info else None
        if bucket is None or (name and not bucket.key.endswith(f"|{name}")):
            other = self.bucket_for(request.url, create=has_info or limited, name=name)
            if other is not None and other is not bucket:
                bucket, seq = other, None  # None: the latest reservation of that bucket
        if bucket is None:
            return None
        if limited:
            return self._limited(request, response, bucket, now, states, github, retry_after)
        state = next((s for s in states if s.name is None or bucket.key.endswith(f"|{s.name}")),
                     states[0] if states else None)
        policy = next((p for p in policies if p.name is None
                       or bucket.key.endswith(f"|{p.name}")), None)
        remaining = state.remaining if state else (github.remaining if github else None)
        reset = state.reset if state else (github.reset_in if github else None)
        quota = policy.quota if policy else (
            state.limit if state and state.limit else (github.limit if github else None))
        window = policy.window if policy else None

        def observe(b: Bucket) -> bool:
            number = b.sent if seq is None else seq
            was_probe = b.unknown and number == b.probe_seq
            b.observe(now, number, remaining, reset, quota, window)
            return was_probe

        def finish(was_probe: bool) -> Response:
            if was_probe:
                self._wake(bucket.key)
            return response

        return AnswerStep(bucket, observe, finish)

    def _limited(self, request: Request, response: Response, bucket: Bucket, now: float,
                 states: list[Any], github: Any, retry_after: float | None) -> AnswerStep:
        reset = next((s.reset for s in states if s.reset is not None
                      and (s.name is None or bucket.key.endswith(f"|{s.name}"))), None)
        if reset is not None:
            wait, source = reset, f"RateLimit t={reset:g}"
        elif retry_after is not None:
            wait, source = retry_after, f"Retry-After {retry_after:g} s"
        elif github is not None and github.reset_in is not None:
            wait, source = github.reset_in, "X-RateLimit-Reset"
        else:
            wait, source = self.default_wait, "no reset given: PTM_RATELIMIT_DEFAULT_WAIT"
        wait = max(wait, self.min_wait)

        def finish(moved: bool) -> Request | Response:
            self._wake(bucket.key)
            status = response.status
            self.stats.inc_value(f"ptm/ratelimit/limited/{status}")
            waits = int(request.meta.get(WAITS_META, 0)) + 1
            if waits > self.max_waits:
                self.stats.inc_value("ptm/failed/ratelimit")
                logger.error("Giving up on %s: still rate limited (%s) after %d waits",
                             request.url, status, waits - 1)
                return response
            if moved:
                self.stats.inc_value("ptm/ratelimit/wait_ms", round(wait * 1000))
                logger.info("Rate limited (%s) on %s: waiting %.1f s until the window "
                            "resets (%s), then resending %s", status,
                            bucket.label or bucket.key, wait, source, request.url)
            retry = request.replace(dont_filter=True, priority=request.priority + 1)
            retry.meta[WAITS_META] = waits
            retry.meta.pop(META_KEY, None)
            return retry

        return AnswerStep(bucket, lambda b: b.limited(now, wait), finish)

    def _exception_step(self, request: Request) -> AnswerStep | None:
        info = request.meta.get(META_KEY)
        if not info:
            return None
        bucket = self.buckets.get(info[0])
        if bucket is None:
            return None
        seq = info[1]

        def lost(b: Bucket) -> bool:
            if b.unknown and seq == b.probe_seq:
                b.probe_lost(seq)
                return True
            return False

        def finish(was_probe: bool) -> Any:
            if was_probe:
                self._wake(bucket.key)
            return None

        return AnswerStep(bucket, lost, finish)

    def process_exception(self, request: Request, exception: Exception) -> None:
        step = self._exception_step(request)
        if step is not None:
            step.finish(step.apply(step.bucket))
