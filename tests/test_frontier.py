"""Three ``scrapy crawl packages`` workers on one frontier (scrapy-redis's scheduler and
duplicate filter on a real ``redis-server``) and one SQLite store against the mock hub: each
package is done by one worker, within the quota the hub announced; a worker killed with SIGKILL
loses nothing (the next run of the command re-seeds what is still not complete)."""

from __future__ import annotations

import pickle
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from scrapy import Request, Spider
from scrapy.core.scheduler import Scheduler
from scrapy.utils.test import get_crawler

from ptmspiders.frontier import WORK, Frontier, FrontierScheduler, FrontierWorker
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
    """One worker: the same command line for every worker, one shared store and dest (the
    tests tell a worker's requests apart by ``-s USER_AGENT=...`` in ``extra``)."""
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


def workers_holding(r: redis.Redis, spider: str) -> dict[str, int]:
    """Work items in hand per worker (``held``), across the frontiers of ``spider``."""
    return {who.decode() if isinstance(who, bytes) else who: int(n)
            for key in r.scan_iter(f"ptm:frontier:{spider}:*:held")
            for who, n in r.hgetall(key).items() if int(n)}


def hold_until_shared(hub: MockHub, url: str, spider: str = "packages",
                      workers: int = WORKERS) -> None:
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
                if len(workers_holding(r, spider)) >= workers:
                    shared.set()
                time.sleep(0.05)
        return None

    hub.before.insert(0, hold)


def no_worker_left(url: str, spider: str) -> None:
    """Wait until no worker of ``spider`` is alive (a killed one's heartbeat has expired), so
    that the next worker started is the first of a new run."""
    deadline = time.monotonic() + 60
    with redis.Redis.from_url(url) as r:
        while time.monotonic() < deadline:
            keys = list(r.scan_iter(f"ptm:frontier:{spider}:*:workers"))
            if not any(r.zcount(k, time.time(), "+inf") for k in keys):
                return
            time.sleep(0.2)
    raise AssertionError("a worker's heartbeat never expired")


def stored_packages(tmp_path: Path) -> dict[str, dict[str, Any]]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return {d["_id"]: d for d in store.find("packages")}


def tree_calls(hub: MockHub, user_agent: str | None = None) -> Counter[str]:
    """Tree listings asked per repository (by the worker of ``user_agent``, or by all): one
    per package begun."""
    return Counter(r.path.split("/tree/")[0].removeprefix("/api/models/")
                   for r in list(hub.log) if "/tree/" in r.path
                   and user_agent in (None, r.headers.get("user-agent")))


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
    assert sum(s.get("ptm/frontier/added", 0) for s in stats) == len(ids)
    assert sum(s.get("scheduler/enqueued/redis", 0) for s in stats) == len(ids)
    assert sum(s.get("ptm/frontier/taken", 0) for s in stats) == len(ids)
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
    agents = [f"ptm-test-worker-{i}" for i in range(WORKERS)]
    procs = [worker(mockhub, tmp_path, redis_url, *cap, "-s", f"USER_AGENT={agent}")
             for agent in agents]
    victim = procs[0]
    try:
        killed_holding = wait_and_kill(victim, redis_url, tmp_path, len(ids))
        finish(procs[1:])
    finally:
        stop(procs)
    # What the killed worker had begun and its store had not recorded complete: its loss
    # (read once the others are done, so that the hub has handled every request it sent).
    lost = set(tree_calls(mockhub, agents[0])) - {
        d["_id"].removeprefix("huggingface:") for d in stored_packages(tmp_path).values()
        if d["complete"]}
    assert victim.returncode == -signal.SIGKILL
    assert killed_holding  # it held work items when it died
    # The two others emptied the queue and stopped; what the killed one held is not complete.
    missing = len(ids) - sum(d["complete"] for d in stored_packages(tmp_path).values())
    assert missing >= max(len(lost), 1)
    # The same command again, once no worker is left, re-seeds exactly what is not complete.
    no_worker_left(redis_url, "packages")
    rerun = finish([worker(mockhub, tmp_path, redis_url)])[0]
    assert rerun["ptm/frontier/seeded"] == missing
    assert_all_complete(tmp_path, ids)
    # Each package was done once, except the killed worker's loss, done once more by the rerun
    # (how many depends on the machine's speed: none if it had only taken work items, up to its
    # 2 package slots and those it had finished but its store had not yet written, flushed
    # every 0.5 s).
    calls = tree_calls(mockhub)
    assert {repo for repo, n in calls.items() if n > 1} == lost, (calls, lost)
    assert max(calls.values()) <= 2
    assert quota.excess(probes=0) == {}, quota.counts
    assert quota.rejected == {}, quota.counts


def wait_and_kill(victim: subprocess.Popen[str], url: str, tmp_path: Path, total: int) -> int:
    """SIGKILL ``victim`` once a third of the packages are stored and it holds work items;
    how many it held."""
    deadline = time.monotonic() + 120
    with redis.Redis.from_url(url) as r:
        while time.monotonic() < deadline:
            held = sum(n for who, n in workers_holding(r, "packages").items()
                       if who.split(":")[1] == str(victim.pid))
            if held and len(stored_packages(tmp_path)) >= total // 3:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                return held
            if victim.poll() is not None:
                break
            time.sleep(0.05)
    raise AssertionError("the worker to kill never held a work item mid-crawl")


def test_the_first_live_worker_adds_the_work(redis_url: str) -> None:
    prefix = "ptm:frontier:test:x"
    a, b, c = (Frontier(redis_url, prefix, lease=3.0) for _ in range(3))
    try:
        with redis.Redis.from_url(redis_url) as r:
            r.rpush(f"{prefix}:requests", b"left by an earlier run")
            assert a.join() is True and a.adding  # the first: a clean queue, it adds
            assert r.llen(f"{prefix}:requests") == 0
            assert b.join() is False and not b.adding  # joins the running crawl
            assert a.sizes() == (0, True)  # a is still adding: the queue may grow
            a.adding_done()
            assert b.sizes() == (0, False)
            b.holds(2)
            assert r.hget(f"{prefix}:held", b.worker) == b"2"
            # a is killed (its heartbeat runs out); b stops and leaves.
            r.zadd(f"{prefix}:workers", {a.worker: time.time() - 1})
            b.leave()
            assert c.join() is True  # no live worker: c starts the next run
            assert r.hkeys(f"{prefix}:held") == [c.worker.encode()]
    finally:
        for f in (a, b, c):
            f.close()


def test_the_scheduler_takes_work_items_from_redis_only_with_room(redis_url: str) -> None:
    # (Scrapy's default priority queue asks the engine, which runs no crawl here.)
    crawler = get_crawler(Spider, {
        "PTM_FRONTIER": redis_url,
        "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.ScrapyPriorityQueue"})
    spider = Spider("t")
    crawler.spider = spider
    worker = FrontierWorker(crawler, redis_url, "ptm:frontier:test:s", lease=3.0, idle=1.0,
                            limit=1)
    worker._frontier = Frontier(redis_url, worker.prefix, lease=3.0)
    scheduler = FrontierScheduler(crawler, worker, Scheduler.from_crawler(crawler))
    scheduler.open(spider)
    try:
        def work(_id: str) -> Request:
            return Request(f"data:,{_id}", meta={WORK: _id})

        assert scheduler.enqueue_request(work("m1")) and scheduler.enqueue_request(work("m2"))
        assert not scheduler.enqueue_request(work("m1"))  # scrapy-redis's duplicate filter
        assert scheduler.enqueue_request(Request("http://127.0.0.1/tree"))  # stays local
        assert len(scheduler.queue) == 2
        assert scheduler.next_request().url == "http://127.0.0.1/tree"  # type: ignore[union-attr]
        first = scheduler.next_request()
        assert first is not None and first.meta[WORK] == "m1" and list(worker.taken) == ["m1"]
        assert scheduler.next_request() is None  # no room: one item at a time
        assert not scheduler.has_pending_requests()
        worker.done("m1")
        assert scheduler.has_pending_requests()
        second = scheduler.next_request()
        assert second is not None and second.meta[WORK] == "m2"
        scheduler.close("shutdown")  # m2 unfinished: given back
        assert len(scheduler.queue) == 1
        assert crawler.stats.get_value("ptm/frontier/given_back") == 1
        assert crawler.stats.get_value("ptm/frontier/filtered") == 1
    finally:
        with redis.Redis.from_url(redis_url) as r:
            r.delete(*r.keys("ptm:frontier:test:s:*"))
        worker.frontier.close()


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
    hold_until_shared(mockhub, redis_url, "hf_models")
    stats = finish([enrich_worker(mockhub, tmp_path, redis_url) for _ in range(WORKERS)])
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        models = {d["_id"]: d for d in store.find("models")}
    assert len(models) == 25
    assert all(d["enrichment"]["steps"] == ["card", "files"] and not d["enrichment"]["gaps"]
               for d in models.values()), [d["enrichment"] for d in models.values()]
    # One worker listed (and held the store's lock); each model was enriched once.
    listers = [s for s in stats if s.get("ptm/frontier/added")]
    assert len(listers) == 1 and listers[0]["ptm/frontier/added"] == 25
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
            while time.monotonic() < deadline and not workers_holding(r, "packages"):
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # as Ctrl-C: a graceful stop
            proc.communicate(timeout=120)
            queue = next(r.scan_iter("ptm:frontier:packages:*:requests"))
            waiting = {pickle.loads(raw)["meta"][WORK] for raw in r.lrange(queue, 0, -1)}
            assert not workers_holding(r, "packages")  # it left, holding nothing
    finally:
        stop([proc])
    stats = crawl_stats(proc)
    assert stats["finish_reason"] == "shutdown"
    complete = {i for i, d in stored_packages(tmp_path).items() if d["complete"]}
    assert waiting and stats.get("ptm/frontier/given_back", 0) >= 1, stats
    # Nothing lost: what it did not finish is queued (with any it finished while stopping).
    assert waiting | complete == set(ids)
    # The same command again does the rest.
    rerun = finish([worker(mockhub, tmp_path, redis_url)])[0]
    assert rerun["ptm/frontier/seeded"] == len(ids) - len(complete)
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
    no_worker_left(redis_url, "hf_models")
    rerun = finish([enrich_worker(mockhub, tmp_path, redis_url)])[0]
    assert rerun["ptm/frontier/added"] < 25
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
            for key in r.scan_iter("ptm:frontier:hf_models:*:adding"):
                holder = r.get(key)
                prefix = key.decode().rsplit(":", 1)[0]
                if holder and r.scard(f"{prefix}:dupefilter") >= 5:
                    pid = int(holder.decode().split(":")[1])
                    lister = next(p for p in procs if p.pid == pid)
                    lister.send_signal(signal.SIGKILL)
                    lister.wait()
                    return lister
            time.sleep(0.02)
    raise AssertionError("no worker was found listing mid-crawl")
