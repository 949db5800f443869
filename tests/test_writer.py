"""The store's write-behind thread (``ptmspiders.stores.writer``) as a component."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ptmspiders.stores import Store, open_store
from ptmspiders.stores import sqlite as sqlite_store
from ptmspiders.stores.writer import BackgroundWriter, StoreWriteError


def docs(*ids: int) -> list[dict[str, Any]]:
    return [{"_id": f"m{i}", "n": i} for i in ids]


class GatedStore:
    """A thread store whose writes wait for ``gate``; records what it wrote, on which thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.writes: list[tuple[str, list[str], str]] = []
        self.closed = False

    def upsert(self, collection: str, batch: list[dict[str, Any]]) -> int:
        self.entered.set()
        assert self.gate.wait(10)
        self.writes.append((collection, [d["_id"] for d in batch],
                            threading.current_thread().name))
        return self.store.upsert(collection, batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def close(self) -> None:
        self.closed = True
        self.store.close()


@pytest.fixture
def file_store(tmp_path: Any) -> Any:
    store = open_store(f"sqlite:///{tmp_path}/w.sqlite")
    yield store
    store.close()


def test_batches_are_written_in_order_on_the_thread_and_reported_on_the_caller(
        file_store: Store) -> None:
    thread_store = GatedStore(file_store.for_thread())  # type: ignore[arg-type]
    writer = BackgroundWriter(file_store, thread_store)  # type: ignore[arg-type]
    reported: list[tuple[str, int, str]] = []
    for n, batch in enumerate((docs(1, 2), docs(3), docs(2))):
        writer.submit("models", batch, lambda written, n=n: reported.append(
            (f"batch{n}", written, threading.current_thread().name)))
    writer.sync()
    assert [w[1] for w in thread_store.writes] == [["m1", "m2"], ["m3"], ["m2"]]
    assert {w[2] for w in thread_store.writes} == {"ptm-store-writer"}
    main = threading.current_thread().name
    assert reported == [("batch0", 2, main), ("batch1", 1, main), ("batch2", 1, main)]
    assert file_store.count("models") == 3  # the main connection reads what the thread wrote
    writer.close()
    writer.close()  # idempotent
    assert thread_store.closed
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit("models", docs(4))


def test_a_caller_that_outruns_the_store_waits(file_store: Store) -> None:
    thread_store = GatedStore(file_store.for_thread())  # type: ignore[arg-type]
    thread_store.gate.clear()
    writer = BackgroundWriter(file_store, thread_store, max_pending=1)  # type: ignore[arg-type]
    writer.submit("models", docs(1))
    assert thread_store.entered.wait(10)  # the thread holds batch 1
    writer.submit("models", docs(2))  # queued: the one pending slot
    third = threading.Thread(target=writer.submit, args=("models", docs(3)))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # no slot: the caller waits instead of piling up batches
    thread_store.gate.set()
    third.join(10)
    assert not third.is_alive()
    writer.close()
    assert file_store.count("models") == 3


def test_a_failed_batch_is_raised_on_the_caller_and_the_rest_is_written(
        file_store: Store) -> None:
    thread_store = GatedStore(file_store.for_thread())  # type: ignore[arg-type]
    real = thread_store.upsert

    def upsert(collection: str, batch: list[dict[str, Any]]) -> int:
        if batch[0]["_id"] == "m1":
            raise OSError("disk full")
        return real(collection, batch)
    thread_store.upsert = upsert  # type: ignore[method-assign]
    writer = BackgroundWriter(file_store, thread_store)  # type: ignore[arg-type]
    done: list[int] = []
    failed = write_all(writer, [docs(1), docs(2, 3)], done.append)
    assert [(e.collection, e.count, str(e)) for e in failed] == [
        ("models", 1, "could not write 1 models: disk full")]
    writer.close()
    assert done == [2]  # the failed batch never reports as written
    assert file_store.ids("models") == {"m2", "m3"}


def test_hooks_see_the_batch_before_it_replaces_the_stored_documents(file_store: Store) -> None:
    file_store.upsert("models", [{"_id": "m1", "n": 0}])
    writer = BackgroundWriter(file_store, file_store.for_thread())
    seen: list[Any] = []
    applied: list[str] = []

    def check(store: Store, collection: str, batch: list[dict[str, Any]]) -> Any:
        seen.append((collection, store.get_many(collection, [d["_id"] for d in batch])))
        return threading.current_thread().name

    def broken(store: Store, collection: str, batch: list[dict[str, Any]]) -> Any:
        raise ValueError("a bug in a hook")
    writer.add_hook("models", broken, lambda result: applied.append("never"))
    writer.add_hook("models", check, lambda result: applied.append(
        (result, threading.current_thread().name)))
    writer.submit("models", docs(1, 2))
    writer.submit("owners", docs(9))  # no hook for owners
    writer.close()
    assert seen == [("models", {"m1": {"_id": "m1", "n": 0}})]  # the old document, not n=1
    assert applied == [("ptm-store-writer", threading.current_thread().name)]
    assert file_store.get("models", "m1") == {"_id": "m1", "n": 1}  # the broken hook cost nothing


@pytest.mark.parametrize("uri", ["sqlite:///:memory:", "mongomock://localhost/ptm"])
def test_stores_that_cannot_share_a_thread_are_written_inline(uri: str) -> None:
    store = open_store(uri)
    writer = BackgroundWriter(store, store.for_thread())
    assert not writer.behind
    done: list[int] = []
    writer.submit("models", docs(1, 2), done.append)
    assert done == [2] and store.count("models") == 2  # written before submit returns
    writer.close()
    store.close()


def write_all(writer: BackgroundWriter, batches: list[list[dict[str, Any]]],
              done: Any = None) -> list[StoreWriteError]:
    """Submit the batches, then sync until it returns; every failure reported on the way. A
    batch's failure may surface at a later submit (the queue is short) or at the sync."""
    failed = []
    for batch in batches:
        try:
            writer.submit("models", batch, done)
        except StoreWriteError as exc:
            failed.append(exc)
    while True:
        try:
            writer.sync()
            return failed
        except StoreWriteError as exc:
            failed.append(exc)


def sync_failures(writer: BackgroundWriter) -> list[int]:
    """Sync until it returns; the sizes of the batches it reported failed, sorted."""
    return sorted(e.count for e in write_all(writer, []))


def wait_for(condition: Any, writer: BackgroundWriter) -> None:
    """Poll the writer until ``condition()`` holds (bounded: a hang fails, not blocks)."""
    for _ in range(1000):
        writer.poll()
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("the writer never got there")


def test_batches_share_a_transaction_and_report_only_once_it_commits(file_store: Store) -> None:
    file_store.count("models")  # the table exists before the writer's transaction
    thread_store = GatedStore(file_store.for_thread())  # type: ignore[arg-type]
    writer = BackgroundWriter(file_store, thread_store,  # type: ignore[arg-type]
                              transaction_size=3, max_age=60)
    done: list[int] = []
    writer.submit("models", docs(1, 2), done.append)
    wait_for(lambda: thread_store.writes, writer)
    writer.poll()
    assert done == [] and file_store.count("models") == 0  # written, not yet committed
    writer.submit("models", docs(3), done.append)  # 3 documents: the transaction commits
    wait_for(lambda: done == [2, 1], writer)
    assert file_store.count("models") == 3
    writer.close()


def test_an_open_transaction_commits_after_max_age(file_store: Store) -> None:
    writer = BackgroundWriter(file_store, file_store.for_thread(), transaction_size=1000,
                              max_age=0.05)
    done: list[int] = []
    writer.submit("models", docs(1), done.append)
    wait_for(lambda: done == [1], writer)  # no sync, no more batches: the age commits it
    assert file_store.count("models") == 1
    writer.close()


@pytest.mark.parametrize("max_pending", [1, 2, 4])
def test_a_failed_batch_in_a_transaction_costs_only_itself(file_store: Store,
                                                          max_pending: int) -> None:
    writer = BackgroundWriter(file_store, file_store.for_thread(), max_pending=max_pending,
                              transaction_size=1000)
    done: list[int] = []
    rows = sqlite_store._ROWS_PER_STATEMENT
    bad = docs(*range(10, 10 + rows + 100))
    bad[rows + 50]["n"] = 2**70  # fails in its second statement, after the first went in
    failed = write_all(writer, [docs(1), bad, docs(2)], done.append)
    writer.close()
    assert [e.count for e in failed] == [rows + 100]
    assert done == [1, 1]
    assert file_store.ids("models") == {"m1", "m2"}


def test_a_lost_transaction_fails_every_batch_it_held(file_store: Store) -> None:
    """A hook that swallowed an error after which SQLite rolled everything back: the batches
    written before it in the transaction are gone, and must not report as written."""
    file_store.count("models")  # the table outlives the rollback: the next batch could write
    thread_store = file_store.for_thread()
    assert thread_store is not None
    writer = BackgroundWriter(file_store, thread_store, transaction_size=1000)
    calls: list[int] = []

    def hook(store: Store, collection: str, batch: list[dict[str, Any]]) -> Any:
        calls.append(len(batch))
        if len(calls) == 2:
            store.conn.execute("ROLLBACK")  # type: ignore[attr-defined]
        return None
    writer.add_hook("models", hook, lambda result: None)
    done: list[int] = []
    writer.submit("models", docs(1), done.append)
    writer.submit("models", docs(2, 3), done.append)
    assert sync_failures(writer) == [1, 2] and done == []
    writer.submit("models", docs(4), done.append)  # a new transaction: written again
    writer.close()
    assert done == [1]
    assert file_store.ids("models") == {"m4"}


def test_a_failed_commit_fails_every_batch_it_held(file_store: Store) -> None:
    thread_store = GatedStore(file_store.for_thread())  # type: ignore[arg-type]

    def commit() -> None:
        raise OSError("disk full")
    thread_store.commit = commit  # type: ignore[method-assign]
    writer = BackgroundWriter(file_store, thread_store,  # type: ignore[arg-type]
                              transaction_size=1000)
    done: list[int] = []
    writer.submit("models", docs(1), done.append)
    writer.submit("models", docs(2, 3), done.append)
    with pytest.raises(StoreWriteError, match="disk full"):
        writer.sync()  # the commit fails both batches, each raised once
    assert sync_failures(writer) == [2] and done == []
    writer.close()
    assert file_store.count("models") == 0


@pytest.mark.parametrize("where", ["write", "commit"])
def test_a_bug_in_the_writer_fails_the_batches_not_the_thread(
        file_store: Store, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Once each: a batch that a bug kept out of the transaction, and the batches in it."""
    from ptmspiders.stores import writer as writer_module

    real = getattr(writer_module._Group, where)
    bugs = []

    def buggy(self: Any, *args: Any) -> None:
        if self.batches and not bugs:
            bugs.append(1)
            raise KeyError("a bug")
        real(self, *args)
    monkeypatch.setattr(writer_module._Group, where, buggy)
    # commit: at 3 documents, right after the second batch got in.
    writer = BackgroundWriter(file_store, file_store.for_thread(),
                              transaction_size=3 if where == "commit" else 1000)
    done: list[int] = []
    writer.submit("models", docs(1), done.append)
    writer.submit("models", docs(2, 3), done.append)
    # write: m2, m3 never get in and m1's transaction is given up; commit: both were in the
    # transaction. Either way sync returns: the thread lives on.
    assert sync_failures(writer) == [1, 2] and done == []
    writer.submit("models", docs(4), done.append)
    writer.close()
    assert done == [1]
    assert file_store.ids("models") == {"m4"}
