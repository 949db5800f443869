"""Three ``scrapy crawl`` workers side by side against one mock hub with one small quota:
with ``PTM_FRONTIER`` they share it (nothing beyond it, one probe per window); without, they
each spend it and the hub answers 429."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.stores import open_store
from tests.conftest import ROOT, crawl_command, crawl_stats, hub_env, run_crawl
from tests.mockhub import MockHub
from tests.mockhub.faults import fill_models
from tests.mockhub.server import MockRequest, MockResponse
from tests.redis_server import redis_url

__all__ = ["redis_url"]  # the fixture, for pytest

pytestmark = pytest.mark.crawl

WORKERS = 3
PER_WORKER = 8
QUOTA, WINDOW = 10, 2.0


def crawl_side_by_side(hub: MockHub, tmp_path: Path, frontier: str
                       ) -> tuple[list[dict[str, Any]], list[str]]:
    """Start the workers together, each on its own share of the ids and its own store; their
    final stats and the ids they stored."""
    models = fill_models(hub, WORKERS * PER_WORKER, owners=3)
    env = hub_env(hub, PTM_FRONTIER=frontier)
    procs = []
    for n in range(WORKERS):
        ids = ",".join(m["id"] for m in models[n::WORKERS])
        folder = tmp_path / f"worker{n}"
        folder.mkdir()
        cmd = crawl_command("hf_models", folder, "-a", f"ids={ids}", "-a", "owners=off",
                            "-s", f"PTM_HF_WINDOW={WINDOW:g}")
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    stats, stored = [], []
    try:
        for n, proc in enumerate(procs):
            _, stderr = proc.communicate(timeout=180)
            assert proc.returncode == 0, stderr[-4000:]
            stats.append(crawl_stats(proc))
            with open_store(f"sqlite:///{tmp_path}/worker{n}/ptm.sqlite") as store:
                stored += [d["_id"] for d in store.find("models")]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sorted(stored) == sorted(f"huggingface:{m['id']}" for m in models)
    return stats, stored


def start_together(hub: MockHub) -> None:
    """Hold each worker's first requests until every worker has sent one, as if the crawls
    had started at one instant (their start-up takes seconds, and not the same on a busy
    machine). A worker is told by its ids: ``model-{i}`` belongs to worker ``i % WORKERS``."""
    arrived: set[int] = set()
    ready = threading.Condition()

    def hold(hub: MockHub, req: MockRequest) -> MockResponse | None:
        found = re.search(r"/model-(\d+)", req.path)
        if found:
            with ready:
                arrived.add(int(found.group(1)) % WORKERS)
                ready.notify_all()
                ready.wait_for(lambda: len(arrived) == WORKERS, timeout=60)
        return None

    hub.before.insert(0, hold)  # before the quota counts the request


def test_workers_with_one_frontier_share_one_quota(mockhub: MockHub, tmp_path: Path,
                                                   redis_url: str) -> None:
    quota = mockhub.quota(QUOTA, WINDOW, prefix="/api/")  # type: ignore[attr-defined]
    stats, _ = crawl_side_by_side(mockhub, tmp_path, redis_url)
    # The hub's own count: no window got more than its quota, none was refused.
    assert quota.excess(probes=0) == {}, quota.counts
    assert quota.rejected == {}, quota.counts
    assert sum(quota.counts.values()) == WORKERS * PER_WORKER
    assert len(quota.counts) >= 3  # the workers really shared several windows
    # At most one probe per window for all the workers together.
    probes = sum(s.get("ptm/ratelimit/probes", 0) for s in stats)
    assert probes <= len(quota.counts), (probes, quota.counts)
    assert all(s["finish_reason"] == "finished" for s in stats)
    assert not any(s.get("ptm/ratelimit/limited/429") for s in stats)


def test_workers_without_a_frontier_overrun_the_quota(mockhub: MockHub,
                                                      tmp_path: Path) -> None:
    # The same crawl with each worker on its own: what the shared windows prevent. (Held
    # until all have started: with shared windows the others would wait for the first one's
    # probe, so the other test needs no such help.)
    quota = mockhub.quota(QUOTA, WINDOW, prefix="/api/")  # type: ignore[attr-defined]
    start_together(mockhub)
    stats, _ = crawl_side_by_side(mockhub, tmp_path, "")
    assert sum(quota.rejected.values()) > 0, quota.counts
    assert sum(s.get("ptm/ratelimit/limited/429", 0) for s in stats) > 0


def test_losing_redis_mid_crawl_closes_the_crawl_and_keeps_what_it_stored(
        mockhub: MockHub, tmp_path: Path, redis_url: str) -> None:
    models = fill_models(mockhub, 30, owners=2)
    quota = mockhub.quota(5, WINDOW, prefix="/api/")  # type: ignore[attr-defined]
    answered = 0

    def stop_redis(hub: MockHub, req: MockRequest, resp: MockResponse) -> MockResponse:
        nonlocal answered
        answered += 1
        if answered == 8:
            with redis.Redis.from_url(redis_url) as r:
                r.shutdown(nosave=True)
        return resp

    mockhub.after.append(stop_redis)
    result = run_crawl("hf_models", mockhub, tmp_path,
                       "-a", "ids=" + ",".join(m["id"] for m in models), "-a", "owners=off",
                       "-s", f"PTM_HF_WINDOW={WINDOW:g}",
                       env=hub_env(mockhub, PTM_FRONTIER=redis_url), expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    assert stats["finish_reason"] == "shared_ratelimit_unavailable"
    assert stats["ptm/ratelimit/shared_errors"] >= 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("Shared rate limits unavailable") == 1
    # What was fetched before is stored; nothing went out unpaced after.
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        assert 8 <= len(list(store.find("models"))) < len(models)
    assert quota.rejected == {}, quota.counts
    assert sum(quota.counts.values()) < len(models)
