"""One listing crawl of a hub at a time on a store (ptmspiders/crawllock.py), and what a crawl
that did not do its whole job records and exits with (ptmspiders/outcome.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy.exceptions import CloseSpider

from ptmspiders.context import crawl_context
from ptmspiders.crawllock import CrawlLock, Holder, lock_name, pid_space, this_host, try_acquire
from ptmspiders.history import CrawlHistory
from ptmspiders.outcome import EXIT_INCOMPLETE, EXIT_LOCKED, crawl_problems, exit_status
from ptmspiders.spiders.base import now_iso
from ptmspiders.spiders.hf_models import HfModelsSpider
from ptmspiders.stores import Store, StoreError, open_store
from tests.conftest import ROOT, crawl_command, crawl_stats, hub_env, ptm_crawler, run_crawl
from tests.mockhub import MockHub
from tests.mockhub.faults import fill_models

HUB = "huggingface"
NAME = lock_name(HUB)
TTL = 60.0


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def holder(name: str, *, pid: int | None = None, host: str | None = None,
           space: str | None = None) -> Holder:
    return Holder(id=name, spider="hf_models", hub=HUB, host=host or this_host(),
                  pid=os.getpid() if pid is None else pid, started_at=now_iso(),
                  pid_space=pid_space() if space is None else space)


# -- the lock in the store (both stores) ---------------------------------------------------------

def test_a_lock_has_one_holder_at_a_time(store: Store) -> None:
    assert try_acquire(store, NAME, holder("a"), ttl=TTL, now=1000) is None
    other = try_acquire(store, NAME, holder("b"), ttl=TTL, now=1001)
    assert other is not None and other["holder"] == "a" and other["pid"] == os.getpid()
    assert try_acquire(store, NAME, holder("a"), ttl=TTL, now=1030) is None  # renewed
    assert try_acquire(store, NAME, holder("b"), ttl=TTL, now=1080) is not None  # 1030 + 60
    assert try_acquire(store, lock_name("tfhub"), holder("b"), ttl=TTL, now=1080) is None
    assert not store.release_lock(NAME, "b")  # not its lock
    assert store.release_lock(NAME, "a")
    assert try_acquire(store, NAME, holder("b"), ttl=TTL, now=1081) is None


def test_an_expired_lock_is_taken_over(store: Store) -> None:
    away = holder("a", host="another-host")
    assert try_acquire(store, NAME, away, ttl=TTL, now=1000) is None
    assert try_acquire(store, NAME, holder("b"), ttl=TTL, now=1059) is not None
    assert try_acquire(store, NAME, holder("b"), ttl=TTL, now=1060) is None
    assert not store.release_lock(NAME, "a")  # the old holder cannot free the new one's


def test_a_lock_whose_holder_died_on_this_host_is_taken_over_at_once(store: Store) -> None:
    assert try_acquire(store, NAME, holder("dead", pid=dead_pid()), ttl=TTL, now=1000) is None
    assert try_acquire(store, NAME, holder("b"), ttl=TTL, now=1001) is None
    # ...but not one whose process lives, nor one on another host (its pid says nothing here).
    assert try_acquire(store, NAME, holder("c", pid=dead_pid()), ttl=TTL, now=1002) is not None
    store.release_lock(NAME, "b")
    far = holder("far", pid=dead_pid(), host="another-host")
    assert try_acquire(store, NAME, far, ttl=TTL, now=1003) is None
    assert try_acquire(store, NAME, holder("d"), ttl=TTL, now=1004)["holder"] == "far"
    store.release_lock(NAME, "far")
    # A container that shares this host's name but not its pids.
    boxed = holder("boxed", pid=dead_pid(), space="another-boot/pid:[1]")
    assert try_acquire(store, NAME, boxed, ttl=TTL, now=1005) is None
    assert try_acquire(store, NAME, holder("e"), ttl=TTL, now=1006)["holder"] == "boxed"


# -- the extensions, on a crawler ----------------------------------------------------------------

def crawler_for(store: Store, spider_kwargs: dict[str, Any] | None = None,
                **settings: Any) -> tuple[Any, HfModelsSpider, CrawlLock, CrawlHistory]:
    settings.setdefault("PTM_HF_OWNERS", False)
    settings.setdefault("PTM_LOCK_WAIT", 0)
    crawler = ptm_crawler(HfModelsSpider, settings)
    crawl_context(crawler).use_store(store)  # the crawl's one store
    crawler.stats.open_spider()
    spider = HfModelsSpider.from_crawler(crawler, **(spider_kwargs or {}))
    crawler.spider = spider
    return crawler, spider, CrawlLock.from_crawler(crawler), CrawlHistory.from_crawler(crawler)


@pytest.fixture
def closing() -> Iterator[list[CrawlLock]]:
    """Locks whose heartbeat a test started: stopped and released when it ends."""
    locks: list[CrawlLock] = []
    yield locks
    for lock in locks:
        lock.engine_stopped()


def test_a_second_crawl_of_the_hub_is_refused_and_writes_nothing(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    assert try_acquire(store, NAME, holder("first"), ttl=TTL) is None
    crawler, spider, lock, history = crawler_for(store)
    with pytest.raises(CloseSpider) as refused:
        lock.spider_opened(spider)
    assert refused.value.reason == "store_locked"
    history.spider_opened(spider)
    history.spider_closed(spider, "store_locked")
    lock.spider_closed(spider, "store_locked")
    lock.engine_stopped()
    assert store.count("crawls") == 0
    assert store.get("locks", NAME)["holder"] == "first"  # untouched
    assert crawler.stats.get_value("ptm/lock/refused") == 1
    message = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "crawl first" in message and f"pid {os.getpid()} on host {this_host()}" in message


def test_a_crawl_that_cannot_ask_the_store_for_its_lock_does_not_crawl(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise StoreError("server selection timed out")

    crawler, spider, lock, history = crawler_for(store)
    monkeypatch.setattr(store, "take_lock", unreachable)
    with pytest.raises(CloseSpider) as refused:
        lock.spider_opened(spider)
    assert refused.value.reason == "store_unavailable"
    history.spider_opened(spider)
    history.spider_closed(spider, "store_unavailable")
    assert store.count("crawls") == 0
    assert exit_status(crawler.stats.get_stats() | {"finish_reason": "store_unavailable"}) == 3


def test_a_restricted_crawl_takes_no_lock(store: Store) -> None:
    assert try_acquire(store, NAME, holder("first"), ttl=TTL) is None
    crawler, spider, lock, _ = crawler_for(store, {"limit": "5"})
    lock.spider_opened(spider)  # not refused: it lists part of the hub and marks no removals
    assert not crawler.stats.get_value("ptm/lock/refused")
    assert store.get("locks", NAME)["holder"] == "first"


def test_the_lock_is_held_while_the_crawl_runs_and_released_after(
        store: Store, closing: list[CrawlLock]) -> None:
    _, spider, lock, history = crawler_for(store)
    closing.append(lock)
    lock.spider_opened(spider)
    history.spider_opened(spider)
    held = store.get("locks", NAME)
    assert held["holder"] == history.state.crawl_id and held["pid"] == os.getpid()
    assert store.get("crawls", history.state.crawl_id)["locked"] is True
    history.spider_closed(spider, "finished")
    lock.spider_closed(spider, "finished")
    lock.engine_stopped()
    assert store.get("locks", NAME) is None


def test_a_crawl_that_lost_its_lock_marks_no_removals(store: Store,
                                                      closing: list[CrawlLock]) -> None:
    store.upsert("models", [{"_id": "huggingface:o/old", "hub": HUB, "removed_at": None,
                             "crawl": {"last_seen": "2020-01-01T00:00:00.000Z"}}])
    crawler, spider, lock, history = crawler_for(store)
    closing.append(lock)
    lock.spider_opened(spider)
    history.spider_opened(spider)
    # Its heartbeat could not renew it in time, and another crawl took the lock over.
    ours = history.state.crawl_id
    assert store.take_lock(NAME, holder("thief").doc(), now=time.time(), ttl=TTL,
                           replace=ours) is None
    lock.spider_closed(spider, "finished")
    history.spider_closed(spider, "finished")
    assert crawler.stats.get_value("ptm/incomplete/lock_lost") == 1
    assert store.get("crawls", ours)["complete"] is False
    assert store.get("models", "huggingface:o/old")["removed_at"] is None
    lock.engine_stopped()
    assert store.get("locks", NAME)["holder"] == "thief"  # not freed by the loser


def test_records_left_running_by_dead_crawls_are_marked_abandoned(
        store: Store, closing: list[CrawlLock]) -> None:
    def running(_id: str, **fields: Any) -> dict[str, Any]:
        return {"_id": _id, "spider": "hf_models", "hub": HUB, "status": "running",
                "started_at": "2020-01-01T00:00:00.000Z", **fields}

    store.upsert("crawls", [
        running("killed-here", host=this_host(), pid_space=pid_space(), pid=dead_pid(),
                locked=False),
        running("alive-here", host=this_host(), pid_space=pid_space(), pid=os.getpid(),
                locked=False),
        running("killed-in-a-container", host=this_host(), pid_space="b/pid:[1]",
                pid=dead_pid(), locked=False),
        # A listing crawl on another host whose lock expired: this crawl's lock says it died.
        running("locked-elsewhere", host="another-host", pid=1, locked=True),
        running("restricted-elsewhere", host="another-host", pid=1, locked=False),
        running("other-hub-elsewhere", host="another-host", pid=1, locked=True, hub="tfhub"),
    ])
    _, spider, lock, history = crawler_for(store)
    closing.append(lock)
    lock.spider_opened(spider)
    history.spider_opened(spider)
    status = {d["_id"]: d["status"] for d in store.find("crawls")}
    assert status == {
        "killed-here": "abandoned", "alive-here": "running", "killed-in-a-container": "running",
        "locked-elsewhere": "abandoned",
        "restricted-elsewhere": "running", "other-hub-elsewhere": "running",
        history.state.crawl_id: "running"}
    assert store.get("crawls", "killed-here")["abandoned_by"] == history.state.crawl_id


# -- the exit status -----------------------------------------------------------------------------

@pytest.mark.parametrize(("stats", "status"), [
    ({"finish_reason": "finished"}, 0),
    ({"finish_reason": "finished", "ptm/incomplete": True, "ptm/incomplete/resumed": 1}, 0),
    ({"finish_reason": "closespider_itemcount"}, 0),
    ({"finish_reason": "finished", "ptm/incomplete": True,
      "ptm/incomplete/list_request_failed": 1}, EXIT_INCOMPLETE),
    ({"finish_reason": "finished", "ptm/store/failed/models": 500}, EXIT_INCOMPLETE),
    ({"finish_reason": "shutdown"}, EXIT_INCOMPLETE),
    ({"finish_reason": "store_locked", "ptm/lock/refused": 1}, EXIT_LOCKED),
])
def test_exit_status_of_a_crawl(stats: dict[str, Any], status: int) -> None:
    assert exit_status(stats) == status
    assert bool(crawl_problems(stats)) == (status != 0)


# -- SQLite writers in several processes ---------------------------------------------------------

WRITER = """
import sys
from ptmspiders.stores import open_store
uri, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store(uri)
for i in range(n):
    # What the store writer does for a batch of models: the history compares it with the
    # store (a read) and then it is written, in one transaction.
    store.begin()
    ids = [f"{name}-{i}-{j}" for j in range(20)]
    store.get_many("models", ids)
    store.upsert("models", [{"_id": x, "hub": name} for x in ids])
    store.commit()
store.close()
"""


def test_sqlite_writers_in_two_processes_wait_for_each_other(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    open_store(uri).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, uri, name, "300"], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with open_store(uri) as store:
        assert store.count("models", {"hub": "a"}) == store.count("models", {"hub": "b"}) == 6000


# -- whole crawls --------------------------------------------------------------------------------

N_MODELS = 60
FAST = ["-s", "PTM_HF_PAGE_SIZE=20", "-s", "PTM_RETRY_TIMES=1", "-s", "PTM_RETRY_BACKOFF_BASE=0.05",
        "-s", "PTM_RETRY_BACKOFF_MAX=0.1", "-s", "DOWNLOAD_TIMEOUT=5"]


def store_of(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/ptm.sqlite")


def until(what: Callable[[], Any], timeout: float = 120) -> Any:
    """Poll ``what`` until it is true (a readiness wait, not a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class HeldListing:
    """Holds the mock Hub's next model list requests until released: a crawl in progress."""

    def __init__(self, hub: MockHub) -> None:
        self.release = threading.Event()
        self.held = threading.Event()
        hub.before.append(self)

    def __call__(self, hub: MockHub, req: Any) -> None:
        if req.path == "/api/models" and not self.release.is_set():
            self.held.set()
            self.release.wait(120)
        return None


def start_crawl(mockhub: MockHub, tmp_path: Path, *args: str, log: Path) -> subprocess.Popen[str]:
    cmd = crawl_command("hf_models", tmp_path, *FAST, *args)
    with log.open("w") as err:  # the child writes to its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=ROOT, env=hub_env(mockhub), stdout=subprocess.DEVNULL,
                                stderr=err, text=True)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def lock_holder(tmp_path: Path) -> str | None:
    with store_of(tmp_path) as store:
        doc = store.get("locks", NAME)
    return doc["holder"] if doc else None


def removed(tmp_path: Path) -> list[str]:
    with store_of(tmp_path) as store:
        return [d["_id"] for d in store.find("models", {"removed_at": {"$ne": None}})]



@pytest.mark.crawl
def test_a_crawl_of_a_hub_another_crawl_is_writing_is_refused(
        mockhub: MockHub, tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    fill_models(mockhub, N_MODELS, owners=4)
    run_crawl("hf_models", mockhub, tmp_path, *FAST)  # the first round: every model stored
    held = HeldListing(mockhub)
    first = start_crawl(mockhub, tmp_path, log=tmp_path / "first.log")
    processes.append(first)
    held.held.wait(120)
    until(lambda: lock_holder(tmp_path))
    second = run_crawl("hf_models", mockhub, tmp_path, *FAST, "-s", "PTM_LOCK_WAIT=0",
                       check=False)
    held.release.set()
    assert first.wait(120) == 0, (tmp_path / "first.log").read_text()[-4000:]
    assert second.returncode == EXIT_LOCKED, second.stderr[-4000:]
    assert f"pid {first.pid} on host {this_host()}" in second.stderr
    assert "Not crawling huggingface: another crawl of it is writing" in second.stderr
    with store_of(tmp_path) as store:
        crawls = list(store.find("crawls"))
        assert [c["complete"] for c in crawls] == [True, True]  # no record of the refused one
        assert store.get("locks", NAME) is None
    first_stats = crawl_stats(first)
    assert not [k for k in first_stats if k.startswith("ptm/store/failed")]
    assert first_stats["ptm/stored/models"] == N_MODELS
    assert removed(tmp_path) == []


@pytest.mark.crawl
def test_a_second_crawl_waits_for_the_first_and_removes_nothing_still_listed(
        mockhub: MockHub, tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    fill_models(mockhub, N_MODELS, owners=4)
    run_crawl("hf_models", mockhub, tmp_path, *FAST)
    held = HeldListing(mockhub)
    first = start_crawl(mockhub, tmp_path, log=tmp_path / "first.log")
    processes.append(first)
    until(lambda: lock_holder(tmp_path))
    second = start_crawl(mockhub, tmp_path, "-s", "PTM_LOCK_WAIT=300",
                         log=tmp_path / "second.log")
    processes.append(second)
    until(lambda: "Waiting up to 300 s" in (tmp_path / "second.log").read_text())
    held.release.set()
    assert first.wait(120) == 0, (tmp_path / "first.log").read_text()[-4000:]
    assert second.wait(120) == 0, (tmp_path / "second.log").read_text()[-4000:]
    with store_of(tmp_path) as store:
        crawls = sorted(store.find("crawls"), key=lambda c: c["started_at"])
    assert [c["complete"] for c in crawls] == [True, True, True]
    assert crawls[2]["locked"] is True
    for proc in (first, second):
        stats = crawl_stats(proc)
        assert stats["ptm/stored/models"] == N_MODELS
        assert not [k for k in stats if k.startswith("ptm/store/failed")]
    assert removed(tmp_path) == []


@pytest.mark.crawl
def test_ctrl_c_ends_the_wait_for_the_lock(
        mockhub: MockHub, tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    fill_models(mockhub, N_MODELS, owners=4)
    held = HeldListing(mockhub)
    first = start_crawl(mockhub, tmp_path, log=tmp_path / "first.log")
    processes.append(first)
    until(lambda: lock_holder(tmp_path))
    second = start_crawl(mockhub, tmp_path, "-s", "PTM_LOCK_WAIT=300",
                         log=tmp_path / "second.log")
    processes.append(second)
    until(lambda: "Waiting up to 300 s" in (tmp_path / "second.log").read_text())
    second.send_signal(signal.SIGINT)
    assert second.wait(60) == EXIT_INCOMPLETE  # long before the 300 s are up
    assert "stopped while waiting for its lock" in (tmp_path / "second.log").read_text()
    held.release.set()
    assert first.wait(120) == 0, (tmp_path / "first.log").read_text()[-4000:]
    with store_of(tmp_path) as store:
        assert [c["complete"] for c in store.find("crawls")] == [True]  # the first one's


@pytest.mark.crawl
def test_a_killed_crawl_leaves_its_lock_and_record_to_the_next_crawl(
        mockhub: MockHub, tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    fill_models(mockhub, N_MODELS, owners=4)
    run_crawl("hf_models", mockhub, tmp_path, *FAST)
    held = HeldListing(mockhub)
    killed = start_crawl(mockhub, tmp_path, log=tmp_path / "killed.log")
    processes.append(killed)
    # Listing, so past spider_opened: its lock taken and its running record written (killed
    # between the two, it would leave no record to mark abandoned).
    assert held.held.wait(120)
    killed_id = lock_holder(tmp_path)
    killed.kill()
    killed.wait()
    held.release.set()
    # Its lock has not expired (PTM_LOCK_TTL), but its process is gone from this host.
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST, "-s", "PTM_LOCK_WAIT=0")
    assert "Taking over the lock listing:huggingface" in result.stderr
    with store_of(tmp_path) as store:
        record = store.get("crawls", killed_id)
        assert record["status"] == "abandoned"
        assert [c["complete"] for c in store.find("crawls") if c["_id"] != killed_id] == [
            True, True]
    assert removed(tmp_path) == []


FAIL_SOME_WRITES = """
CREATE TRIGGER fail_insert BEFORE INSERT ON models WHEN NEW._id LIKE '%model-00033%'
BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;
CREATE TRIGGER fail_update BEFORE UPDATE ON models WHEN NEW._id LIKE '%model-00033%'
BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;
"""


@pytest.mark.crawl
def test_a_crawl_whose_store_writes_failed_is_incomplete_removes_nothing_and_fails(
        mockhub: MockHub, tmp_path: Path) -> None:
    models = fill_models(mockhub, N_MODELS, owners=4)
    run_crawl("hf_models", mockhub, tmp_path, *FAST)
    import sqlite3

    conn = sqlite3.connect(tmp_path / "ptm.sqlite")
    conn.executescript(FAIL_SOME_WRITES)
    conn.close()
    assert any("model-00033" in m["id"] for m in models)
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST, "-s", "PTM_STORE_BATCH_SIZE=5",
                       check=False)
    stats = crawl_stats(result)
    assert stats["ptm/store/failed/models"] == 5  # the batch with the failing model
    assert result.returncode == EXIT_INCOMPLETE, result.stderr[-4000:]
    assert "store_write_failed" in result.stderr
    with store_of(tmp_path) as store:
        last = max(store.find("crawls"), key=lambda c: c["started_at"])
    assert last["complete"] is False and "store_write_failed" in last["incomplete_reasons"]
    assert removed(tmp_path) == []


@pytest.mark.crawl
def test_a_crawl_whose_hub_refuses_every_connection_exits_non_zero(
        mockhub: MockHub, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = hub_env(mockhub, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST, env=env, check=False)
    assert "Crawl of huggingface is incomplete" in result.stderr
    assert result.returncode == EXIT_INCOMPLETE, result.stderr[-4000:]
    assert "exit status 3" in result.stderr
