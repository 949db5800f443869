"""The throttle: its bucket arithmetic on a simulated clock, and the middleware as a component."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from typing import Any

import pytest
from scrapy import Request, Spider
from scrapy.http import Response
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from ptmspiders.middlewares.ratelimit import WAITS_META, Bucket, RateLimitMiddleware

HF = "http://hub.test:8001"
GH = "http://gh.test:8002"
RAW = "http://gh.test:8003/raw"
KAGGLE = "http://hub.test:8001/api/v1"


def simulate(*, quota: int, window: float, phase: float, workers: int, latency: float,
             n: int, burst: float = 0.5, configured: int | None = None,
             configured_window: float | None = None, announce_window: bool = True
             ) -> tuple[dict[int, int], float, int]:
    """Drive one bucket against a fixed-window server on a simulated clock.

    Returns the server's count per window, when the last answer arrived, and how many 429s.
    """
    bucket = Bucket("k", configured if configured is not None else quota,
                    configured_window or window, burst)
    counts: dict[int, int] = {}
    events: list[tuple[float, int, str, int]] = []
    order = 0
    to_send = n
    done = 0
    limited = 0
    idle = 0  # workers waiting for the probe's answer

    def push(t: float, kind: str, seq: int) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (t, order, kind, seq))

    def start(now: float, resend: bool = False) -> None:
        nonlocal to_send, idle
        if not resend:
            if to_send == 0:
                return
            to_send -= 1
        got = bucket.reserve(now)
        if got is None:
            idle += 1
            return
        push(got[0] + latency / 2, "server", bucket.sent)

    for _ in range(workers):
        start(0.0)
    now = 0.0
    while events:
        now, _, kind, seq = heapq.heappop(events)
        if kind == "server":
            index = math.floor((now + phase) / window)
            counts[index] = counts.get(index, 0) + 1
            reset = math.ceil((index + 1) * window - phase - now)
            remaining = quota - counts[index]
            push(now + latency / 2, "limited" if remaining < 0 else f"ok:{remaining}:{reset}",
                 seq)
            continue
        waiting, idle = idle, 0
        if kind == "limited":
            limited += 1
            index = math.floor((now - latency / 2 + phase) / window)
            bucket.limited(now, (index + 1) * window - phase - now + latency / 2 + 0.01)
            start(now, resend=True)
        else:
            _, remaining, reset = kind.split(":")
            bucket.observe(now, seq, int(remaining), float(reset), quota,
                           window if announce_window else None)
            done += 1
            start(now)
        for _ in range(waiting):
            start(now, resend=True)
    assert done == n
    return counts, now, limited


@pytest.mark.parametrize("phase", [0.0, 3.3, 9.9])
@pytest.mark.parametrize("workers", [1, 8])
@pytest.mark.parametrize("burst", [0.0, 0.5, 1.0])
def test_never_beyond_the_quota(phase: float, workers: int, burst: float) -> None:
    counts, end, limited = simulate(quota=20, window=10, phase=phase, workers=workers,
                                    latency=0.05, n=300, burst=burst)
    assert max(counts.values()) <= 20
    assert limited == 0
    # ...and the budget is used: 300 requests need 15 windows, allow some slack.
    assert end <= 18 * 10


def test_learns_a_smaller_quota_from_the_headers() -> None:
    # Configured for the anonymous tier, the hub says 5 per 2 s: only the probe may overrun.
    counts, _, limited = simulate(quota=5, window=2, phase=0.7, workers=8, latency=0.01,
                                  n=60, configured=500)
    assert max(counts.values()) <= 5
    assert limited == 0


@pytest.mark.parametrize("workers", [1, 8])
def test_a_window_nobody_announces_is_learnt(workers: int) -> None:
    # GitHub-style: remaining and reset only; configured for an hour, really 4 s.
    counts, end, _ = simulate(quota=6, window=4, phase=1.3, workers=workers, latency=0.05,
                              n=120, configured_window=3600, announce_window=False)
    assert max(counts.values()) <= 6 + 1  # at most a probe beyond the quota
    assert end <= 30 * 4  # 20 windows' worth of requests, not hours


def test_slow_answers_do_not_overrun() -> None:
    counts, _, _ = simulate(quota=10, window=5, phase=1.0, workers=8, latency=1.2, n=100)
    assert max(counts.values()) <= 10


def test_probe_first_then_paced() -> None:
    b = Bucket("k", 10, 10.0, burst=0.5)
    assert b.reserve(0.0) == (0.0, "probe")
    assert b.reserve(0.0) is None  # the others wait for the probe's answer
    b.observe(0.2, 1, remaining=9, reset=10, quota=10, window=10)
    got = [b.reserve(0.2) for _ in range(10)]
    times = [t for t in got if t is not None]
    assert len(times) == 10
    # 4 go at once (the burst share), the rest are spread, the 10th waits for the next window.
    assert [t for t, _ in times[:4]] == [0.2] * 4
    assert times[4][0] > 0.2 and times[4][1] == "pace"
    assert times[9][1] == "budget" and times[9][0] >= 10.2
    assert all(t < 10.2 for t, _ in times[:9])  # type: ignore[misc]


def test_learns_a_shorter_window_from_reset_times() -> None:
    # GitHub-style answers carry no window length: the configured 300 s is wrong here, 4 s.
    b = Bucket("k", 4, 300.0, burst=1.0)
    b.reserve(0.0)
    b.observe(0.1, 1, remaining=3, reset=2)  # the window ends at 2.1
    assert [b.reserve(0.1)[0] for _ in range(3)] == [0.1] * 3  # type: ignore[index]
    at, why = b.reserve(0.2) or (0.0, "")
    assert (at, why) == (2.1, "budget")
    b.observe(2.2, b.sent, remaining=3, reset=4)  # the hub's next window ends at 6.2
    assert b.window_end == 6.2 and b.window == pytest.approx(4.1)


def test_a_429_blocks_then_probes() -> None:
    b = Bucket("k", 10, 10.0)
    b.reserve(0.0)
    b.observe(0.1, 1, remaining=5, reset=8, quota=10, window=10)
    assert b.limited(1.0, 30.0)
    assert not b.limited(1.1, 29.9)  # the same wait seen by a second request
    at, why = b.reserve(2.0) or (None, None)
    assert (at, why) == (31.0, "blocked")
    assert b.reserve(2.0) is None  # only that one probe goes first
    # An answer to a request sent before the 429 does not end the wait.
    b.observe(3.0, 1, remaining=4, reset=7)
    assert b.unknown


# -- the middleware as a component ----------------------------------------------------------


def crawler_for(**settings: Any) -> Any:
    base = {"HF_ENDPOINT": HF, "GITHUB_API_URL": GH, "GITHUB_RAW_URL": RAW,
            "KAGGLE_API_URL": KAGGLE, "PTM_RATELIMIT_MIN_WAIT": 0.0}
    base.update(settings)
    crawler = get_crawler(Spider, base)
    crawler.stats.open_spider()
    return crawler


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def middleware(**settings: Any) -> tuple[RateLimitMiddleware, FakeClock]:
    mw = build_from_crawler(RateLimitMiddleware, crawler_for(**settings))
    clock = FakeClock()
    mw.clock = clock
    mw.sleep = clock.sleep
    return mw, clock


def send(mw: RateLimitMiddleware, url: str, **kwargs: Any) -> Request:
    request = Request(url, **kwargs)
    asyncio.run(mw.process_request(request))
    return request


def answer(request: Request, status: int = 200, headers: dict[str, str] | None = None
           ) -> Response:
    return Response(request.url, status=status, headers=headers or {}, request=request)


@pytest.mark.parametrize(("url", "bucket"), [
    (f"{HF}/api/models?limit=10", f"{HF}|api"),
    (f"{HF}/acme/bert/resolve/main/README.md", f"{HF}|resolvers"),
    (f"{HF}/acme/bert", f"{HF}|pages"),
    (f"{KAGGLE}/models/list", f"{HF}|kaggle"),
    (f"{GH}/repos/pytorch/hub/git/trees/master?recursive=1", f"{GH}|core"),
])
def test_buckets_by_origin_and_path(url: str, bucket: str) -> None:
    mw, _ = middleware()
    request = send(mw, url)
    assert request.meta["download_slot"] == bucket


def test_a_long_pace_wait_is_logged_once_a_window(caplog: pytest.LogCaptureFixture) -> None:
    """GitHub's anonymous 60 an hour, nearly spent: requests go minutes apart, and the crawl
    looked stalled at 0 B/s with nothing in the log saying why."""
    mw, clock = middleware()
    url = f"{GH}/repos/pytorch/hub/git/trees/master"
    probe = send(mw, url)
    reset = str(int(__import__("time").time()) + 3600)
    mw.process_response(probe, answer(probe, 200, {
        "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "10", "X-RateLimit-Reset": reset}))
    with caplog.at_level(logging.INFO, logger="ptmspiders.middlewares.ratelimit"):
        for _ in range(4):
            send(mw, url)
    assert max(clock.slept) > 300
    lines = [r.getMessage() for r in caplog.records if "spreads" in r.getMessage()]
    assert len(lines) == 1 and "github core" in lines[0] and "one request every" in lines[0]


def test_raw_host_and_other_hosts_are_not_counted() -> None:
    mw, _ = middleware()
    for url in (f"{RAW}/pytorch/hub/master/README.md", "http://elsewhere.test/x"):
        request = send(mw, url)
        assert "download_slot" not in request.meta


def test_raw_files_under_a_shared_base_are_not_counted() -> None:
    # One mock for every hub (the demo, the tests): raw reads must not eat the Hub's or
    # GitHub's quota just because their URLs share an origin and prefix.
    mw, _ = middleware(HF_ENDPOINT=HF, GITHUB_API_URL=HF, GITHUB_RAW_URL=f"{HF}/raw")
    raw = send(mw, f"{HF}/raw/pytorch/hub/master/hubconf.md")
    assert "download_slot" not in raw.meta
    tree = send(mw, f"{HF}/repos/pytorch/hub/git/trees/master?recursive=1")
    assert tree.meta["download_slot"] == f"{HF}|core"
    api = send(mw, f"{HF}/api/models")
    assert api.meta["download_slot"] == f"{HF}|api"


def test_tier_sets_the_quota_and_bad_tier_is_refused() -> None:
    mw, _ = middleware(PTM_HF_TIER="pro")
    assert mw.bucket_for(f"{HF}/api/models").quota == 2500  # type: ignore[union-attr]
    mw, _ = middleware(PTM_HF_QUOTAS={"api": 7})
    assert mw.bucket_for(f"{HF}/api/models").quota == 7  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="PTM_HF_TIER"):
        middleware(PTM_HF_TIER="platinum")
    with pytest.raises(ValueError, match="PTM_HF_QUOTAS"):
        middleware(PTM_HF_QUOTAS={"everything": 3})


def test_429_waits_exactly_until_reset_and_resends_without_spending_retries(
        caplog: pytest.LogCaptureFixture) -> None:
    mw, clock = middleware()
    first = send(mw, f"{HF}/api/models", priority=10, meta={"retry_times": 2})
    limited = answer(first, 429, {"RateLimit": '"api";r=0;t=55',
                                  "RateLimit-Policy": '"fixed window";"api";q=500;w=300'})
    with caplog.at_level(logging.INFO):
        again = mw.process_response(first, limited)
    assert isinstance(again, Request)
    assert again.url == first.url and again.dont_filter and again.priority == 11
    assert again.meta["retry_times"] == 2 and again.meta[WAITS_META] == 1
    assert "on huggingface api (http://hub.test:8001): waiting 55.0 s" in caplog.text
    assert "RateLimit t=55" in caplog.text
    send(mw, again.url)
    assert clock.slept == [55.0]
    stats = mw.stats.get_stats()
    assert stats["ptm/ratelimit/limited/429"] == 1


def test_retry_after_http_date_and_github_reset() -> None:
    mw, clock = middleware()
    req = send(mw, f"{GH}/repos/a/b/git/trees/main")
    resp = answer(req, 403, {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
                             "X-RateLimit-Reset": str(int(__import__("time").time()) + 120)})
    again = mw.process_response(req, resp)
    assert isinstance(again, Request)
    probe = send(mw, again.url)
    assert 118 <= clock.slept[-1] <= 121
    mw.process_response(probe, answer(probe, 200, {"X-RateLimit-Limit": "60",
                                                   "X-RateLimit-Remaining": "59"}))
    # A secondary limit: 403 with Retry-After.
    req = send(mw, f"{GH}/repos/a/b/git/trees/main")
    again = mw.process_response(req, answer(req, 403, {"Retry-After": "7"}))
    assert isinstance(again, Request)


def test_plain_403_is_not_a_rate_limit() -> None:
    mw, _ = middleware()
    req = send(mw, f"{GH}/repos/a/b/git/trees/main")
    resp = answer(req, 403, {"X-RateLimit-Remaining": "57"})
    assert mw.process_response(req, resp) is resp


def test_gives_up_after_max_waits() -> None:
    mw, _ = middleware(PTM_RATELIMIT_MAX_WAITS=2)
    req = send(mw, f"{HF}/api/models")
    for _ in range(2):
        req = mw.process_response(req, answer(req, 429, {"Retry-After": "1"}))  # type: ignore
        assert isinstance(req, Request)
        send(mw, req.url, meta=req.meta)
    final = answer(req, 429, {"Retry-After": "1"})
    assert mw.process_response(req, final) is final
    assert mw.stats.get_value("ptm/failed/ratelimit") == 1


def test_slows_down_before_the_budget_is_gone() -> None:
    mw, clock = middleware(PTM_RATELIMIT_BURST=0.0)
    req = send(mw, f"{HF}/api/models")
    policy = '"fixed window";"api";q=10;w=10'
    mw.process_response(req, answer(req, 200, {"RateLimit": '"api";r=4;t=8',
                                                "RateLimit-Policy": policy}))
    for _ in range(5):
        send(mw, f"{HF}/api/models?x")
    # 4 left for 8 s: the first goes now, the next three 2 s apart, the 5th at the reset.
    assert clock.slept == [2.0, 2.0, 2.0, 2.0]
    assert clock.now == 100 + 8
    assert mw.stats.get_value("ptm/ratelimit/window_waits") == 1


def test_unknown_host_learns_from_its_headers() -> None:
    mw, clock = middleware()
    req = send(mw, "http://other.test/api/x")
    again = mw.process_response(req, answer(req, 429, {"Retry-After": "3"}))
    assert isinstance(again, Request)
    send(mw, again.url)
    assert clock.slept == [3.0]


def test_switched_off() -> None:
    from scrapy.exceptions import NotConfigured

    with pytest.raises(NotConfigured):
        middleware(PTM_RATELIMIT_ENABLED=False)


def test_a_waiting_bucket_does_not_hold_up_other_buckets() -> None:
    mw, clock = middleware()
    req = send(mw, f"{HF}/api/models")
    mw.process_response(req, answer(req, 429, {"RateLimit": '"api";r=0;t=200'}))
    # The Hub's API bucket now waits 200 s; its resolvers, GitHub and raw files do not.
    for url in (f"{HF}/a/b/resolve/main/README.md", f"{GH}/repos/a/b/git/trees/main",
                f"{RAW}/a/b/main/x.md"):
        send(mw, url)
    assert clock.slept == []
    send(mw, f"{HF}/api/models?cursor=x")
    assert clock.slept == [200.0]


def test_waiting_for_a_long_blocked_probe_does_not_send_a_second_probe() -> None:
    mw, _ = middleware()
    mw.probe_timeout = 0.01  # (real seconds) a probe that is out this long counts as lost
    req = send(mw, f"{HF}/api/models")
    again = mw.process_response(req, answer(req, 429, {"RateLimit": '"api";r=0;t=100'}))
    assert isinstance(again, Request)
    bucket = mw.buckets[f"{HF}|api"]

    async def scenario() -> None:
        mw.sleep = lambda seconds: asyncio.sleep(60)  # the probe waits for the reset
        probe = asyncio.ensure_future(mw.process_request(again))
        await asyncio.sleep(0)
        first_probe = bucket.probe_seq
        waiter = asyncio.ensure_future(mw.process_request(Request(f"{HF}/api/x")))
        await asyncio.sleep(0.1)
        # The probe has not even gone out: the waiter must not become a second probe.
        assert bucket.probe_seq == first_probe
        assert not waiter.done()
        probe.cancel()
        waiter.cancel()

    asyncio.run(scenario())
    assert mw.stats.get_value("ptm/ratelimit/probes") == 2  # the first, and one after the 429
