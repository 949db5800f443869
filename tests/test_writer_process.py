"""The store's writer process (``ptmspiders.stores.writer_process``) as a component."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ptmspiders.stores import Store, StoreError, open_store
from ptmspiders.stores.base import Encoded
from ptmspiders.stores.writer import StoreWriteError
from ptmspiders.stores.writer_process import ProcessWriter, supported
from tests.conftest import ROOT
from tests.test_writer import docs, sync_failures, wait_for, write_all


@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/w.sqlite")
    yield store
    store.close()


@pytest.fixture
def writers() -> Iterator[list[ProcessWriter]]:
    """Writers a test starts; each is closed and its process reaped after the test."""
    made: list[ProcessWriter] = []
    yield made
    for writer in made:
        with contextlib.suppress(StoreWriteError):
            writer.close()
        assert writer.proc.poll() is not None


def start(writers: list[ProcessWriter], store: Store, **kwargs: Any) -> ProcessWriter:
    writer = ProcessWriter(store, **kwargs)
    writers.append(writer)
    return writer


class PidCheck:
    """A write hook's check that says where it ran and what the batch replaces (picklable: it
    crosses to the process)."""

    def __call__(self, store: Store, collection: str, batch: list[Any]) -> Any:
        ids = [d.id if isinstance(d, Encoded) else d["_id"] for d in batch]
        return os.getpid(), store.get_many(collection, ids)


class BrokenCheck:
    def __call__(self, store: Store, collection: str, batch: list[Any]) -> Any:
        raise ValueError("a bug in a hook")


def test_only_sqlite_files_get_a_process(tmp_path: Path) -> None:
    file_store = open_store(f"sqlite:///{tmp_path}/w.sqlite")
    memory = open_store("sqlite:///:memory:")
    mongo = open_store("mongomock://localhost/ptm")
    try:
        assert supported(file_store)
        assert not supported(memory) and not supported(mongo)
    finally:
        for store in (file_store, memory, mongo):
            store.close()


def test_batches_are_written_by_the_process_and_reported_on_the_caller(
        file_store: Store, writers: list[ProcessWriter]) -> None:
    writer = start(writers, file_store)
    assert writer.behind and writer.proc.pid != os.getpid()
    reported: list[tuple[str, int, str]] = []
    for n, batch in enumerate((docs(1, 2), [file_store.encode(d) for d in docs(3)], docs(2))):
        writer.submit("models", batch, lambda written, n=n: reported.append(
            (f"batch{n}", written, threading.current_thread().name)))
    writer.sync()
    main = threading.current_thread().name
    assert reported == [("batch0", 2, main), ("batch1", 1, main), ("batch2", 1, main)]
    assert file_store.count("models") == 3  # this connection reads what the process wrote
    assert file_store.get("models", "m2") == {"_id": "m2", "n": 2}
    writer.close()
    writer.close()  # idempotent
    assert writer.proc.returncode == 0
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit("models", docs(4))


def test_the_process_is_out_of_reach_of_a_ctrl_c(file_store: Store,
                                                  writers: list[ProcessWriter]) -> None:
    """A terminal's Ctrl-C signals its foreground process group: the writer is in a session
    of its own, and drains when the crawl closes it."""
    writer = start(writers, file_store)
    assert os.getsid(writer.proc.pid) == writer.proc.pid != os.getsid(0)
    assert os.getpgid(writer.proc.pid) != os.getpgid(0)


def test_hooks_check_in_the_process_and_apply_on_the_caller(
        file_store: Store, writers: list[ProcessWriter],
        caplog: pytest.LogCaptureFixture) -> None:
    file_store.upsert("models", [{"_id": "m1", "n": 0}])
    writer = start(writers, file_store)
    applied: list[Any] = []
    writer.add_hook("models", BrokenCheck(), lambda result: applied.append("never"))
    writer.add_hook("models", PidCheck(), lambda result: applied.append(
        (*result, threading.current_thread().name)))
    with caplog.at_level(logging.ERROR):
        writer.submit("models", docs(1, 2))
        writer.submit("owners", docs(9))  # no hook for owners
        writer.close()
    pid, seen, thread = applied[0]
    assert len(applied) == 1 and pid == writer.proc.pid
    assert seen == {"m1": {"_id": "m1", "n": 0}}  # the old document, not n=1
    assert thread == threading.current_thread().name
    assert file_store.get("models", "m1") == {"_id": "m1", "n": 1}  # the bug cost nothing
    # The process's log records are the crawl's, traceback included.
    assert any("Write hook" in r.getMessage() and "a bug in a hook" in (r.exc_text or "")
               for r in caplog.records)


def test_a_failed_batch_is_raised_on_the_caller_and_the_rest_is_written(
        file_store: Store, writers: list[ProcessWriter]) -> None:
    writer = start(writers, file_store, transaction_size=1000)
    bad = docs(5, 6)
    bad[1]["n"] = 2**70  # beyond what SQLite's JSON can hold: the batch fails as it is written
    done: list[int] = []
    failed = write_all(writer, [docs(1), bad, docs(2)], done.append)  # type: ignore[arg-type]
    assert [(e.collection, e.count) for e in failed] == [("models", 2)]
    assert done == [1, 1]  # the failed batch never reports as written
    assert not writer.pending
    writer.close()
    assert file_store.ids("models") == {"m1", "m2"}


def test_an_open_transaction_commits_after_max_age(
        file_store: Store, writers: list[ProcessWriter]) -> None:
    writer = start(writers, file_store, transaction_size=1000, max_age=0.05)
    done: list[int] = []
    writer.submit("models", docs(1), done.append)
    wait_for(lambda: done == [1], writer)  # type: ignore[arg-type]
    assert file_store.count("models") == 1


def test_a_dead_process_fails_what_it_held_and_every_later_batch(
        file_store: Store, writers: list[ProcessWriter],
        caplog: pytest.LogCaptureFixture) -> None:
    writer = start(writers, file_store, transaction_size=1000, max_age=60)
    done: list[int] = []
    writer.submit("models", docs(1), done.append)
    writer.submit("models", docs(2, 3), done.append)
    os.kill(writer.proc.pid, signal.SIGKILL)
    writer.proc.wait()
    with caplog.at_level(logging.ERROR):
        failed = write_all(writer, [docs(4)], done.append)  # type: ignore[arg-type]
    assert sorted(e.count for e in failed) == [1, 1, 2] and done == []
    assert all("writer process is gone" in str(e) for e in failed)
    # The two it held and the one that found it gone.
    assert "writer process is gone (it exited with code -9): 3 batches not written" in caplog.text
    with pytest.raises(StoreWriteError, match="gone"):
        writer.submit("models", docs(5))  # at once: nothing waits for a dead process
    assert sync_failures(writer) == []  # type: ignore[arg-type]
    writer.close()


KILLED_CRAWL = """
import os, signal, sys
from ptmspiders.stores import open_store
from ptmspiders.stores.writer_process import ProcessWriter
writer = ProcessWriter(open_store(sys.argv[1]), transaction_size=1000, max_age=60)
writer.submit("models", [{"_id": "m1"}, {"_id": "m2"}])
print(writer.proc.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_process_keeps_what_it_got_when_the_crawl_is_killed(file_store: Store) -> None:
    """The crawl's process killed with a batch handed over but not committed: the writer reads
    the end of its pipe, commits what it had and exits by itself."""
    crawl = subprocess.run([sys.executable, "-c", KILLED_CRAWL, file_store.uri],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert crawl.returncode == -signal.SIGKILL
    writer = psutil.Process(int(crawl.stdout))
    for _ in range(600):  # an orphan now: gone, or a zombie if what adopted it never reaps
        try:
            if writer.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the writer process did not end with the crawl")
    assert file_store.count("models") == 2


def test_a_store_the_process_cannot_open_is_a_clear_error(
        file_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-folder.sqlite").mkdir()
    file_store.uri = f"sqlite:///{tmp_path}/a-folder.sqlite"  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR), pytest.raises(
            StoreError, match=r"cannot open .*a-folder\.sqlite in the store's writer process"):
        ProcessWriter(file_store)
    assert "unable to open database file" in caplog.text  # the process's reason, logged


def test_a_crawl_writes_through_the_process_by_default(tmp_path: Path) -> None:
    from ptmspiders.context import crawl_context
    from tests.test_pipelines import crawler_for

    crawler = crawler_for(tmp_path)
    context = crawl_context(crawler)
    try:
        assert isinstance(context.writer, ProcessWriter)
    finally:
        context.close_store()
    thread = crawler_for(tmp_path, PTM_STORE_WRITER="thread")
    context = crawl_context(thread)
    try:
        assert not isinstance(context.writer, ProcessWriter) and context.writer.behind
    finally:
        context.close_store()
