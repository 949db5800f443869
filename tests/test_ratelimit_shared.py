"""Workers sharing one quota through Redis: two throttles (two crawlers) on one real
``redis-server``, and the settings that choose it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.utils.misc import build_from_crawler

from ptmspiders.middlewares.ratelimit import RateLimitMiddleware
from ptmspiders.middlewares.ratelimit_redis import (
    SharedRateLimitMiddleware,
    check_frontier,
    credential_hash,
    hub_identities,
)
from tests.conftest import ROOT, crawl_command, one_error_line
from tests.redis_server import free_port, redis_url
from tests.test_ratelimit import HF, FakeClock, answer, crawler_for

__all__ = ["redis_url"]  # the fixture, for pytest

POLICY = '"fixed window";"api";q=10;w=10'


def worker(url: str, clock: FakeClock, **settings: Any) -> SharedRateLimitMiddleware:
    """One worker's throttle on the shared Redis, on a clock the test moves."""
    mw = build_from_crawler(RateLimitMiddleware, crawler_for(PTM_FRONTIER=url, **settings))
    assert isinstance(mw, SharedRateLimitMiddleware)
    mw.clock = clock
    mw.sleep = clock.sleep
    return mw


def scenario(*workers: SharedRateLimitMiddleware
             ) -> Callable[[Callable[[], Awaitable[None]]], None]:
    """Run an async test body in one event loop (the Redis clients belong to it)."""

    def run(body: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            try:
                await body()
            finally:
                for mw in workers:
                    await mw.close()

        asyncio.run(main())

    return run


async def send(mw: RateLimitMiddleware, url: str = f"{HF}/api/models") -> Request:
    request = Request(url)
    await mw.process_request(request)
    return request


async def respond(mw: SharedRateLimitMiddleware, request: Request, status: int = 200,
                  headers: dict[str, str] | None = None) -> Any:
    return await mw.process_response(request, answer(request, status, headers))


def shared_clock() -> FakeClock:
    clock = FakeClock()
    clock.now = 1_000_000.0
    return clock


def test_two_workers_take_turns_within_one_window(redis_url: str) -> None:
    clock = shared_clock()
    a = worker(redis_url, clock, PTM_RATELIMIT_BURST=1.0)
    b = worker(redis_url, clock, PTM_RATELIMIT_BURST=1.0)

    async def body() -> None:
        probe = await send(a)
        # b's first request waits for a's probe: only one probe per window for both.
        waiting = asyncio.ensure_future(send(b))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await respond(a, probe, headers={"RateLimit": '"api";r=9;t=10',
                                         "RateLimit-Policy": POLICY})
        first_of_b = await asyncio.wait_for(waiting, 5)  # a's answer reached b
        seqs = [probe.meta["ptm_ratelimit"][1], first_of_b.meta["ptm_ratelimit"][1]]
        for i in range(8):
            request = await send(a if i % 2 else b)
            seqs.append(request.meta["ptm_ratelimit"][1])
        # Ten requests of the window's ten went at once, numbered as one sequence.
        assert clock.slept == []
        assert sorted(seqs) == list(range(1, 11))
        # The eleventh, from either worker, waits for the next window.
        await send(a)
        assert clock.slept == [pytest.approx(10.0)]
        assert a.stats.get_value("ptm/ratelimit/delayed/budget") == 1
        assert b.stats.get_value("ptm/ratelimit/probes") is None

    scenario(a, b)(body)


def test_what_one_worker_learns_the_other_obeys(redis_url: str) -> None:
    clock = shared_clock()
    a = worker(redis_url, clock, PTM_RATELIMIT_BURST=1.0)
    b = worker(redis_url, clock, PTM_RATELIMIT_BURST=1.0)

    async def body() -> None:
        probe = await send(a)
        await respond(a, probe, headers={"RateLimit": '"api";r=5;t=10',
                                         "RateLimit-Policy": POLICY})
        request = await send(a)
        # The hub says that, with the others' requests, none is left in this window.
        await respond(a, request, headers={"RateLimit": '"api";r=0;t=10'})
        await send(b)
        assert clock.slept == [pytest.approx(10.0)]
        assert b.stats.get_value("ptm/ratelimit/delayed/budget") == 1

    scenario(a, b)(body)


def test_a_429_on_one_worker_blocks_both(redis_url: str) -> None:
    clock = shared_clock()
    a = worker(redis_url, clock)
    b = worker(redis_url, clock)

    async def body() -> None:
        probe = await send(a)
        await respond(a, probe, headers={"RateLimit": '"api";r=9;t=10',
                                         "RateLimit-Policy": POLICY})
        request = await send(b)
        again = await respond(b, request, 429, {"RateLimit": '"api";r=0;t=55'})
        assert isinstance(again, Request)
        await send(a)  # a never saw the 429, yet waits it out, as the next window's probe
        assert clock.slept == [pytest.approx(55.0)]
        assert a.stats.get_value("ptm/ratelimit/delayed/blocked") == 1
        assert a.stats.get_value("ptm/ratelimit/probes") == 2

    scenario(a, b)(body)


def test_different_tokens_have_their_own_windows_and_no_token_reaches_redis(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = shared_clock()
    monkeypatch.setenv("HF_TOKEN", "hf_first_secret_token")
    a = worker(redis_url, clock)
    monkeypatch.setenv("HF_TOKEN", "hf_second_secret_token")
    b = worker(redis_url, clock)
    c = worker(redis_url, clock)  # the same token as b

    async def body() -> None:
        await send(a)
        await send(b)  # not held up by a's probe: another token, another quota
        assert b.stats.get_value("ptm/ratelimit/probes") == 1
        waiting = asyncio.ensure_future(send(c))  # c shares b's window: waits for its probe
        await asyncio.sleep(0.3)
        assert not waiting.done()
        waiting.cancel()

    scenario(a, b, c)(body)
    with redis.Redis.from_url(redis_url) as r:
        keys = sorted(k.decode() for k in r.keys("*"))
        values = b"".join(r.get(k) or b"" for k in keys)
    hashes = [hashlib.sha256(t.encode()).hexdigest()[:16]
              for t in ("hf_first_secret_token", "hf_second_secret_token")]
    assert keys == sorted(f"ptm:ratelimit:{h}:{HF}|api" for h in hashes)
    assert b"secret" not in values and not any("secret" in k for k in keys)


def test_state_expires_a_few_windows_after_its_last_write(redis_url: str) -> None:
    clock = shared_clock()
    a = worker(redis_url, clock)

    async def body() -> None:
        await send(a)

    scenario(a)(body)
    with redis.Redis.from_url(redis_url) as r:
        (key,) = r.keys("*")
        assert 3 * 300 <= r.ttl(key) <= 3 * 300 + 1  # the Hub's 300 s window, thrice


def test_losing_redis_mid_crawl_fails_the_request_and_is_counted(redis_url: str) -> None:
    clock = shared_clock()
    a = worker(redis_url, clock)

    async def body() -> None:
        await a.client.aclose()
        a.client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        with pytest.raises(IgnoreRequest):
            await send(a)
        assert a.stats.get_value("ptm/ratelimit/shared_errors") == 1

    scenario(a)(body)


def test_without_a_frontier_the_buckets_stay_in_the_process() -> None:
    mw = build_from_crawler(RateLimitMiddleware, crawler_for(PTM_FRONTIER=""))
    assert type(mw) is RateLimitMiddleware


@pytest.mark.parametrize("url", ["localhost:6379", "http://127.0.0.1:6379/0",
                                 "redis://127.0.0.1:6379/zero", "redis://:6379/0",
                                 "redis://127.0.0.1:port/0"])
def test_a_bad_frontier_url_is_one_clear_error(url: str) -> None:
    with pytest.raises(ValueError, match=r"^PTM_FRONTIER=.*expected redis://host:port/db"):
        build_from_crawler(RateLimitMiddleware, crawler_for(PTM_FRONTIER=url))


def test_an_unreachable_redis_stops_the_crawl_before_it_starts() -> None:
    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(ValueError, match="Redis does not answer") as error:
        build_from_crawler(RateLimitMiddleware, crawler_for(PTM_FRONTIER=url))
    assert "hunter2" not in str(error.value)
    assert "\n" not in str(error.value)


def test_credential_hash_and_url_check() -> None:
    assert credential_hash(None) == "anon"
    assert credential_hash("") == "anon"
    assert len(credential_hash("hf_x")) == 16
    assert check_frontier("redis://10.0.0.5:6379/2") == "redis://10.0.0.5:6379/2"


def test_each_hub_is_named_by_the_credential_its_requests_carry() -> None:
    env = {"HF_TOKEN": "hf_a", "GITHUB_TOKEN": "ghp_b", "KAGGLE_USERNAME": "carol",
           "KAGGLE_KEY": "k"}
    assert hub_identities(env) == {"huggingface": credential_hash("hf_a"),
                                   "github": credential_hash("ghp_b"),
                                   "kaggle": credential_hash("carol")}
    # Kaggle's user name without its key sends no credential; auth off sends none at all.
    assert hub_identities({"KAGGLE_USERNAME": "carol"})["kaggle"] == "anon"
    assert set(hub_identities(env, auth_enabled=False).values()) == {"anon"}


def test_scrapy_crawl_with_redis_down_is_one_line(tmp_path: Path) -> None:
    """Before: the middleware's error surfaced as a "Task exception was never retrieved"
    traceback; the command now asks Redis first."""
    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    env = {**os.environ, "PTM_FRONTIER": url}
    result = subprocess.run(crawl_command("packages", tmp_path), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    error = one_error_line(result, 1)
    assert "Redis does not answer" in error, result.stderr[-2000:]
    assert "hunter2" not in result.stderr
    assert not (tmp_path / "ptm.sqlite").exists()  # no store opened, no crawl record
