"""Three ``scrapy crawl packages`` workers on one frontier (a real ``redis-server``) and one
SQLite store against the mock hub: each package is done by one worker, within the quota the hub
announced; a worker killed with SIGKILL loses nothing (its leased items go to the others, a
rerun seeds what is still not complete)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from ptmspiders.frontier import Frontier
from ptmspiders.stores import open_store
from tests.conftest import ROOT, crawl_command, crawl_stats, hub_env
from tests.mockhub import MockHub
from tests.mockhub.packages import Generated, PkgFile
from tests.redis_server import redis_url

__all__ = ["redis_url"]  # the fixture, for pytest

pytestmark = pytest.mark.crawl

WORKERS = 3
QUOTA, WINDOW = 10, 2.0
LFS_SIZE = 96 * 1024


def add_packages(hub: MockHub, n: int) -> list[str]:
    """``n`` packages of a config file and one LFS file each; their model ids."""
    ids = []
    for i in range(n):
        repo = f"acme/m{i:02d}"
        hub.packages.add(repo, f"{i:040x}", [  # type: ignore[attr-defined]
            PkgFile("config.json", b'{"n": %d}' % i),
            PkgFile("model.safetensors", Generated(seed=100 + i, size=LFS_SIZE), lfs=True)])
        ids.append(f"huggingface:{repo}")
    return ids


def seed_store(hub: MockHub, tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        store.upsert("models", hub.packages.model_docs())  # type: ignore[attr-defined]


def worker(hub: MockHub, tmp_path: Path, frontier: str, *extra: str) -> subprocess.Popen[str]:
    """One worker: the same command line for every worker, one shared store and dest."""
    cmd = crawl_command("packages", tmp_path, "-a", f"dest={tmp_path / 'pk'}",
                        "-s", "PTM_PACKAGES_RETRY_WAIT=0.01", "-s", f"PTM_HF_WINDOW={WINDOW:g}",
                        "-s", "PTM_PACKAGES_CONCURRENT_PACKAGES=2",
                        "-s", "PTM_FRONTIER_LEASE_S=4", "-s", "PTM_STORE_FLUSH_SECONDS=0.5",
                        *extra)
    return subprocess.Popen(cmd, cwd=ROOT, env=hub_env(hub, PTM_FRONTIER=frontier,
                                                       PTM_FRONTIER_IDLE_S="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Wait for the workers (killing any left on failure); their final stats."""
    stats = []
    try:
        for proc in procs:
            _, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr[-4000:]
            assert "Traceback" not in stderr, stderr[-4000:]
            stats.append(crawl_stats(proc))
    finally:
        stop(procs)
    return stats


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def hold_until_shared(hub: MockHub, url: str, workers: int = WORKERS) -> None:
    """Hold the tree listings until ``workers`` workers hold work items: a worker that started
    seconds before the others (a busy machine) cannot take all the work, so the tests see it
    shared. Each worker holds few items at a time (PTM_PACKAGES_CONCURRENT_PACKAGES,
    PTM_FRONTIER_ITEMS), so the others find the rest."""
    shared = threading.Event()

    def hold(hub: MockHub, req: Any) -> None:
        if "/tree/" not in req.path or shared.is_set():
            return None
        deadline = time.monotonic() + 60
        with redis.Redis.from_url(url) as r:
            while time.monotonic() < deadline and not shared.is_set():
                owners = {who for key in r.scan_iter("ptm:frontier:*:owners")
                          for who in r.hvals(key)}
                if len(owners) >= workers:
                    shared.set()
                time.sleep(0.05)
        return None

    hub.before.insert(0, hold)


def stored_packages(tmp_path: Path) -> dict[str, dict[str, Any]]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return {d["_id"]: d for d in store.find("packages")}


def tree_calls(hub: MockHub) -> Counter[str]:
    """Tree listings asked per repository: one per package done."""
    return Counter(r.path.split("/tree/")[0].removeprefix("/api/models/")
                   for r in hub.log if "/tree/" in r.path)


def assert_all_complete(tmp_path: Path, ids: list[str]) -> None:
    docs = stored_packages(tmp_path)
    assert sorted(docs) == sorted(ids)
    assert all(d["complete"] for d in docs.values()), [d for d in docs.values()
                                                        if not d["complete"]]
    assert len(list((tmp_path / "pk" / "blobs").rglob("*"))) > 0


def test_three_workers_do_each_package_once_within_one_quota(mockhub: MockHub, tmp_path: Path,
                                                             redis_url: str) -> None:
    ids = add_packages(mockhub, 18)
    seed_store(mockhub, tmp_path)
    quota = mockhub.quota(QUOTA, WINDOW, prefix="/api/")  # type: ignore[attr-defined]
    hold_until_shared(mockhub, redis_url)
    stats = finish([worker(mockhub, tmp_path, redis_url) for _ in range(WORKERS)])
    assert_all_complete(tmp_path, ids)
    # Exactly one worker seeded; each package was done once, by one of them.
    assert [s.get("ptm/frontier/seeded", 0) for s in stats].count(len(ids)) == 1
    assert sum(s.get("ptm/frontier/seeded", 0) for s in stats) == len(ids)
    assert sum(s.get("ptm/frontier/done", 0) for s in stats) == len(ids)
    assert set(tree_calls(mockhub).values()) == {1}
    assert sum(s.get("ptm/packages/done", 0) for s in stats) == len(ids)
    assert all(s.get("ptm/packages/done") for s in stats)  # the work was shared
    # One quota for the three: nothing beyond it, no 429.
    assert quota.excess(probes=0) == {}, quota.counts
    assert quota.rejected == {}, quota.counts
    assert all(s["finish_reason"] == "finished" for s in stats)
    # A rerun of the same command: everything is complete, it seeds nothing and fetches nothing.
    before = len(mockhub.log)
    rerun = finish([worker(mockhub, tmp_path, redis_url)])[0]
    assert rerun.get("ptm/frontier/seeded", 0) == 0
    assert not rerun.get("ptm/packages/done")
    assert not [r for r in mockhub.log[before:] if "/tree/" in r.path]


def test_a_worker_killed_half_way_loses_nothing(mockhub: MockHub, tmp_path: Path,
                                                redis_url: str) -> None:
    ids = add_packages(mockhub, 24)
    seed_store(mockhub, tmp_path)
    quota = mockhub.quota(QUOTA, WINDOW, prefix="/api/")  # type: ignore[attr-defined]
    # Slow transfers (a bandwidth cap per worker), so that the kill lands mid-crawl.
    cap = ("-s", f"PTM_PACKAGES_BANDWIDTH={LFS_SIZE * 2}")
    procs = [worker(mockhub, tmp_path, redis_url, *cap) for _ in range(WORKERS)]
    victim = procs[0]
    try:
        killed_holding = wait_and_kill(victim, redis_url, tmp_path, len(ids))
        stats = finish(procs[1:])
    finally:
        stop(procs)
    assert victim.returncode == -signal.SIGKILL
    assert killed_holding  # it held work items when it died: they were taken over
    assert sum(s.get("ptm/frontier/expired_leases", 0) for s in stats) >= 1
    # A rerun seeds whatever is still not complete in the store, and does it.
    rerun = finish([worker(mockhub, tmp_path, redis_url)])
    stats += rerun
    assert_all_complete(tmp_path, ids)
    # Each package done once, except those the killed worker had begun.
    again = [repo for repo, n in tree_calls(mockhub).items() if n > 1]
    assert len(again) <= 2 * 2, tree_calls(mockhub)  # its package slots, plus its unflushed
    assert quota.excess(probes=0) == {}, quota.counts
    assert quota.rejected == {}, quota.counts


def wait_and_kill(victim: subprocess.Popen[str], url: str, tmp_path: Path, total: int) -> int:
    """SIGKILL ``victim`` once a third of the packages are stored and it holds work items;
    how many it held."""
    deadline = time.monotonic() + 120
    with redis.Redis.from_url(url) as r:
        while time.monotonic() < deadline:
            owners = [k for k in r.keys("ptm:frontier:packages:*:owners")]
            held = sum(1 for key in owners for who in r.hvals(key)
                       if who.decode().split(":")[1] == str(victim.pid))
            if held and len(stored_packages(tmp_path)) >= total // 3:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                return held
            if victim.poll() is not None:
                break
            time.sleep(0.05)
    raise AssertionError("the worker to kill never held a work item mid-crawl")


def test_frontier_seeds_once_and_hands_out_each_item_once(redis_url: str) -> None:
    a = Frontier(redis_url, "ptm:frontier:test:x", lease=3.0)
    b = Frontier(redis_url, "ptm:frontier:test:x", lease=3.0)
    try:
        assert a.try_seed(lambda: ["m1", "m2", "m3"]) is True
        assert b.try_seed(lambda: ["never"]) is False  # seeded already: joins
        got = [a.take(), b.take(), a.take()]
        assert sorted(got) == ["m1", "m2", "m3"]  # type: ignore[type-var]
        assert b.take() is None and a.sizes() == (0, 3)
        assert not a.finish()  # work in progress
        for _id in list(a.held):
            a.ack(_id)
        b.release()  # b stops early: its item goes back, first in line
        assert a.sizes() == (1, 0)
        again = a.take()
        assert again is not None and again in got
        a.ack(again)
        assert a.finish()
        # A rerun after the frontier finished seeds again.
        assert b.try_seed(lambda: ["m9"]) is True and b.take() == "m9"
    finally:
        a.close()
        b.close()


def test_an_expired_lease_goes_to_another_worker(redis_url: str) -> None:
    a = Frontier(redis_url, "ptm:frontier:test:y", lease=3.0)
    b = Frontier(redis_url, "ptm:frontier:test:y", lease=3.0)
    try:
        a.try_seed(lambda: ["m1"])
        assert a.take() == "m1"
        assert b.take() is None
        with redis.Redis.from_url(redis_url) as r:  # a's lease runs out (a was killed)
            r.zadd(a.keys["leases"], {"m1": time.time() - 1})
        assert b.take() == "m1" and b.counts["expired_leases"] == 1
        a.renew()  # a, back from a stall, finds it lost
        assert a.counts["leases_lost"] == 1
        b.ack("m1")
        assert b.finish()
    finally:
        a.close()
        b.close()


# Hugging Face enrichment: one worker lists, all of them enrich ------------------------------
def enrich_worker(hub: MockHub, tmp_path: Path, frontier: str) -> subprocess.Popen[str]:
    cmd = crawl_command("hf_models", tmp_path, "-a", "owners=0", "-s", "PTM_HF_CARDS=1",
                        "-s", "PTM_HF_FILES=1", "-s", "PTM_HF_PAGE_SIZE=5",
                        "-s", f"PTM_HF_WINDOW={WINDOW:g}", "-s", "PTM_FRONTIER_ITEMS=2",
                        "-s", "PTM_FRONTIER_LEASE_S=4")
    return subprocess.Popen(cmd, cwd=ROOT, env=hub_env(hub, PTM_FRONTIER=frontier,
                                                       PTM_FRONTIER_IDLE_S="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_one_worker_lists_and_all_of_them_enrich(mockhub: MockHub, tmp_path: Path,
                                                 redis_url: str) -> None:
    def slow_trees(hub: MockHub, req: Any) -> None:
        if "/tree/" in req.path:
            time.sleep(0.2)  # an enrichment step that takes a while: the work must spread
        return None

    mockhub.before.append(slow_trees)
    quota = mockhub.quota(QUOTA, WINDOW, prefix="/api/")  # type: ignore[attr-defined]
    hold_until_shared(mockhub, redis_url)
    stats = finish([enrich_worker(mockhub, tmp_path, redis_url) for _ in range(WORKERS)])
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        models = {d["_id"]: d for d in store.find("models")}
    assert len(models) == 25
    assert all(d["enrichment"]["steps"] == ["card", "files"] and not d["enrichment"]["gaps"]
               for d in models.values()), [d["enrichment"] for d in models.values()]
    # One worker listed (and held the store's lock); each model was enriched once.
    listers = [s for s in stats if s.get("ptm/frontier/pushed")]
    assert len(listers) == 1 and listers[0]["ptm/frontier/pushed"] == 25
    assert len([r for r in mockhub.log if r.path == "/api/models"]) == 5  # listed once
    assert set(tree_calls(mockhub).values()) == {1} and len(tree_calls(mockhub)) == 25
    assert sum(s.get("ptm/frontier/done", 0) for s in stats) == 25
    assert all(s.get("ptm/frontier/done") for s in stats)  # all three enriched
    assert not any(s.get("ptm/history/missing") for s in stats)  # nothing marked removed
    assert quota.excess(probes=0) == {}, quota.counts
    assert quota.rejected == {}, quota.counts


def test_a_stopped_worker_gives_its_work_back(mockhub: MockHub, tmp_path: Path,
                                              redis_url: str) -> None:
    ids = add_packages(mockhub, 8)
    seed_store(mockhub, tmp_path)
    cap = ("-s", f"PTM_PACKAGES_BANDWIDTH={LFS_SIZE}")  # a second per package
    proc = worker(mockhub, tmp_path, redis_url, *cap)
    try:
        with redis.Redis.from_url(redis_url) as r:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any(
                    r.hlen(k) for k in r.scan_iter("ptm:frontier:packages:*:owners")):
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # as Ctrl-C: a graceful stop
            proc.communicate(timeout=120)
            queue = next(r.scan_iter("ptm:frontier:packages:*:queue"))
            prefix = queue.decode().rsplit(":", 1)[0]
            waiting = r.llen(queue)
            assert r.zcard(f"{prefix}:leases") == 0  # nothing left leased
            assert waiting + r.scard(f"{prefix}:done") == len(ids)
    finally:
        stop([proc])
    stats = crawl_stats(proc)
    assert stats["finish_reason"] == "shutdown"
    assert waiting > 0 and stats.get("ptm/frontier/released", 0) >= 1, stats
    # The same command again takes the rest (the frontier is not finished: it joins it).
    rerun = finish([worker(mockhub, tmp_path, redis_url)])[0]
    assert rerun.get("ptm/frontier/seeded", 0) == 0
    assert_all_complete(tmp_path, ids)


def test_the_listing_worker_killed_half_way_loses_nothing(mockhub: MockHub, tmp_path: Path,
                                                          redis_url: str) -> None:
    def slow_pages(hub: MockHub, req: Any) -> None:
        if req.path == "/api/models":
            time.sleep(0.5)  # a listing that takes a while: the kill lands in the middle
        return None

    mockhub.before.append(slow_pages)
    quota = mockhub.quota(QUOTA, WINDOW, prefix="/api/")  # type: ignore[attr-defined]
    procs = [enrich_worker(mockhub, tmp_path, redis_url) for _ in range(WORKERS)]
    try:
        lister = kill_the_lister(procs, redis_url)
        stats = finish([p for p in procs if p is not lister])
    finally:
        stop(procs)
    assert lister.returncode == -signal.SIGKILL
    # The others finished what it had handed on, then stopped; the listing was cut short.
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        assert store.count("models") < 25
    assert sum(s.get("ptm/frontier/done", 0) for s in stats) >= 1
    # The same command again lists again (the killed listing's store lock is taken over at
    # once: its process is gone), and enriches exactly what is still missing.
    rerun = finish([enrich_worker(mockhub, tmp_path, redis_url)])[0]
    assert rerun["ptm/frontier/pushed"] < 25
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        models = {d["_id"]: d for d in store.find("models")}
    assert len(models) == 25
    assert all(d["enrichment"]["steps"] == ["card", "files"] for d in models.values())
    assert max(tree_calls(mockhub).values()) <= 2
    assert quota.excess(probes=0) == {}, quota.counts
    assert quota.rejected == {}, quota.counts


def kill_the_lister(procs: list[subprocess.Popen[str]], url: str) -> subprocess.Popen[str]:
    """SIGKILL the worker that lists, once it has handed on a page of models and before its
    listing ends; that worker."""
    deadline = time.monotonic() + 120
    with redis.Redis.from_url(url) as r:
        while time.monotonic() < deadline:
            for key in r.scan_iter("ptm:frontier:hf_models:*:lister"):
                holder = r.get(key)
                prefix = key.decode().rsplit(":", 1)[0]
                if holder and r.hlen(f"{prefix}:items") >= 5:
                    pid = int(holder.decode().split(":")[1])
                    lister = next(p for p in procs if p.pid == pid)
                    lister.send_signal(signal.SIGKILL)
                    lister.wait()
                    return lister
            time.sleep(0.02)
    raise AssertionError("no worker was found listing mid-crawl")
