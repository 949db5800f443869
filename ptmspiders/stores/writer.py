"""Write-behind for a crawl's store: batches are written on one thread while parsing goes on.

SQLite releases the GIL while it inserts and indexes (most of a batch's cost), and pymongo while
it waits on the server, so a writer thread takes the store off the crawl's critical path. Batches
are written in submission order; completion callbacks run on the caller's thread (the reactor)
at the next :meth:`BackgroundWriter.submit`, :meth:`poll` or :meth:`sync`, so the JOBDIR
checkpoints only ever hear of ids that are really stored.

Consecutive batches go into one transaction of the thread's store (``transaction_size``
documents, or what came within ``max_age`` seconds), and each batch reports as written only once
that transaction commits. At hub scale every SQLite commit writes each index page a batch
touched, about one page per model and index, so one commit per 5,000 models instead of per 500
cuts the store's cost per model by about a third (``scripts/bench_store.py --transaction``).

A store that cannot be shared with a thread (``sqlite:///:memory:``, mongomock) is written
synchronously, with the same interface. A SQLite file is written by a process of its own
(:mod:`ptmspiders.stores.writer_process`), which runs this writer inside it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ptmspiders.config import PENDING_BATCHES, PtmSettings
from ptmspiders.stores.base import Doc, Store, StoreError, TransactionLost, WriteDoc

logger = logging.getLogger(__name__)

Done = Callable[[int], None]
# A write hook in two halves. The check runs where the batches are written (the writer's
# thread or process), just before a batch of its collection is written, with the store that
# writes it (so it reads what the batch replaces); the documents may be encoded
# (ptmspiders.stores.base.decoded gives them back as dicts). What it returns is handed to the
# apply on the caller's thread once the batch is written (counts, stats). A writer process
# takes the check and its result across by pickle.
Check = Callable[[Store, str, list[WriteDoc]], Any]
Apply = Callable[[Any], None]
Applied = tuple[Apply, Any]
_Task = tuple[str, list[WriteDoc], Done | None]
_STOP = object()
_SYNC = object()  # commit what is written, so that sync() returns on durable data
DEFAULT_TRANSACTION_SIZE: int = PtmSettings.model_fields["store_transaction_size"].default
DEFAULT_MAX_PENDING: int = PENDING_BATCHES["thread"]


class StoreWriteError(StoreError):
    """A batch that could not be written: its documents are lost to this crawl (and their
    listing pages never settle, so a resumed crawl fetches them again)."""

    def __init__(self, collection: str, count: int, cause: BaseException,
                 done: Done | None = None) -> None:
        super().__init__(f"could not write {count} {collection}: {cause}")
        self.collection = collection
        self.count = count
        self.done = done  # the batch's callback: a writer process tells its batches apart by it


class StoreWriter(Protocol):
    """What the crawl writes through: a :class:`BackgroundWriter`, or a
    :class:`ptmspiders.stores.writer_process.ProcessWriter`."""

    waited: float
    busy: float

    @property
    def behind(self) -> bool: ...
    def add_hook(self, collection: str, check: Check, apply: Apply) -> None: ...
    def encode(self, doc: Doc) -> WriteDoc: ...
    def submit(self, collection: str, docs: Sequence[WriteDoc],
               done: Done | None = None) -> None: ...
    def poll(self) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...
    def counters(self) -> dict[str, float]: ...


class BackgroundWriter:
    """Ordered write-behind of ``upsert`` batches. ``max_pending`` bounds the memory held by
    batches not yet written: a caller that outruns the store waits in :meth:`submit`."""

    def __init__(self, store: Store, thread_store: Store | None,
                 max_pending: int = DEFAULT_MAX_PENDING,
                 transaction_size: int = DEFAULT_TRANSACTION_SIZE,
                 max_age: float = 5.0) -> None:
        if transaction_size < 1 or max_age <= 0:
            raise ValueError("transaction_size must be >= 1 and max_age > 0")
        self.store = store
        self.thread_store = thread_store
        # A store without transactions has written each batch durably already.
        self.transaction_size = (transaction_size if thread_store is not None
                                 and thread_store.transactions else 1)
        self.max_age = max_age
        self.queue: queue.Queue[_Task | object] = queue.Queue(maxsize=max(1, max_pending))
        self.finished: deque[tuple[Done | None, int, list[Applied]]] = deque()
        self.hooks: dict[str, list[tuple[Check, Apply]]] = {}
        self.errors: deque[StoreWriteError] = deque()
        self.thread: threading.Thread | None = None
        self.closed = False
        # Seconds callers spent waiting for a free slot: how much the store held the crawl up.
        self.waited = 0.0
        # Seconds spent writing batches (hooks and upsert, the GIL's hand-overs included; not
        # commits): the writer's pace beside the crawl's.
        self.busy = 0.0
        if thread_store is not None:
            self.thread = threading.Thread(target=self._run, name="ptm-store-writer",
                                           daemon=True)
            self.thread.start()

    @property
    def behind(self) -> bool:
        """Whether batches are written behind the crawl (not in :meth:`submit`)."""
        return self.thread is not None

    def add_hook(self, collection: str, check: Check, apply: Apply) -> None:
        """Register before the first batch of ``collection`` is submitted."""
        self.hooks.setdefault(collection, []).append((check, apply))

    def encode(self, doc: Doc) -> WriteDoc:
        """The document as the writing store takes it (:meth:`Store.encode`), made on the
        caller's thread."""
        return (self.thread_store or self.store).encode(doc)

    def _write(self, store: Store, collection: str,
               docs: list[WriteDoc]) -> tuple[int, list[Applied]]:
        started = time.perf_counter()
        try:
            return self._hooks_and_upsert(store, collection, docs)
        finally:
            self.busy += time.perf_counter() - started

    def _hooks_and_upsert(self, store: Store, collection: str,
                          docs: list[WriteDoc]) -> tuple[int, list[Applied]]:
        applied: list[Applied] = []
        for check, apply in self.hooks.get(collection, ()):
            try:
                applied.append((apply, check(store, collection, docs)))
            except Exception:  # a hook never costs the batch its write
                logger.exception("Write hook %r failed on %d %s", check, len(docs), collection)
        try:
            written = store.upsert(collection, docs)
        except Exception as exc:
            raise StoreWriteError(collection, len(docs), exc) from exc
        return written, applied

    def submit(self, collection: str, docs: Sequence[WriteDoc], done: Done | None = None) -> None:
        """Write ``docs`` (the caller hands them over: it must not change them afterwards).

        Raises :class:`StoreWriteError` for this batch (written here) or an earlier one."""
        if self.closed:
            raise RuntimeError("the store writer is closed")
        batch = list(docs)
        if batch and self.thread is None:
            self.finished.append((done, *self._write(self.store, collection, batch)))
        elif batch:
            task = (collection, batch, done)
            try:
                self.queue.put_nowait(task)
            except queue.Full:
                started = time.monotonic()
                self.queue.put(task)
                self.waited += time.monotonic() - started
        self.poll()

    def poll(self) -> None:
        """Run the callbacks of the batches written since the last call."""
        while self.finished:
            done, written, applied = self.finished.popleft()
            for apply, result in applied:
                apply(result)
            if done is not None:
                done(written)
        self._raise_error()

    def sync(self) -> None:
        """Wait until everything submitted is written (the barrier before reading it back)."""
        if self.thread is not None:
            self.queue.put(_SYNC)
            self.queue.join()
        self.poll()

    def close(self) -> None:
        """Write what is queued, stop the thread and close its store. Idempotent."""
        if self.closed:
            return
        try:
            self.sync()
        finally:
            self.closed = True
            if self.thread is not None:
                self.queue.put(_STOP)
                self.thread.join()
                assert self.thread_store is not None
                self.thread_store.close()

    def counters(self) -> dict[str, float]:
        """The writing store's own counters (read while the writer runs: a snapshot)."""
        return self.thread_store.counters() if self.thread_store is not None else \
            self.store.counters()

    def _raise_error(self) -> None:
        if self.errors:
            raise self.errors.popleft()

    def _run(self) -> None:
        assert self.thread_store is not None
        group = _Group(self.thread_store, self)
        while True:
            try:
                task = self.queue.get(timeout=group.timeout())
            except queue.Empty:  # the open transaction is max_age old: commit it
                group.commit()
                continue
            pending: _Task | None = None
            try:
                if task is _STOP:
                    group.commit()
                    return
                if task is _SYNC:
                    group.commit()
                    continue
                assert isinstance(task, tuple)
                pending = task
                group.write(task[0], task[1], task[2])  # in the group once it returns
                pending = None
                if group.size >= self.transaction_size:
                    group.commit()
            except Exception as exc:  # a bug here must not stop the thread: sync() would hang
                logger.exception("Store writer failed")
                if pending is not None:
                    self.errors.append(StoreWriteError(pending[0], len(pending[1]), exc,
                                                       pending[2]))
                group.lost(exc)
            finally:
                self.queue.task_done()


class _Group:
    """The batches written into the writer thread's open transaction, not yet committed."""

    def __init__(self, store: Store, writer: BackgroundWriter) -> None:
        self.store = store
        self.writer = writer
        self.batches: list[tuple[str, int, Done | None, list[Applied]]] = []
        self.size = 0
        self.opened: float | None = None

    def timeout(self) -> float | None:
        if self.opened is None:
            return None
        return max(0.0, self.opened + self.writer.max_age - time.monotonic())

    def write(self, collection: str, docs: list[WriteDoc], done: Done | None) -> None:
        if self.opened is None:
            try:
                self.store.begin()
            except Exception as exc:
                self.writer.errors.append(StoreWriteError(collection, len(docs), exc, done))
                return
            self.opened = time.monotonic()
        try:
            written, applied = self.writer._write(self.store, collection, docs)
        except StoreWriteError as exc:  # raised again on the caller's thread
            exc.done = done
            self.writer.errors.append(exc)
            if isinstance(exc.__cause__, TransactionLost):
                self.lost(exc.__cause__)
            return
        self.size += written
        self.batches.append((collection, written, done, applied))

    def commit(self) -> None:
        if self.opened is None:
            return
        try:
            self.store.commit()
        except Exception as exc:
            logger.exception("Commit of %d documents failed", self.size)
            self.lost(exc)
            return
        for _collection, written, done, applied in self.batches:
            self.writer.finished.append((done, written, applied))
        self._reset()

    def lost(self, cause: BaseException) -> None:
        """Every batch of the transaction is gone: each reports as failed, none as written."""
        for collection, written, done, _applied in self.batches:
            self.writer.errors.append(StoreWriteError(collection, written, cause, done))
        self._reset()
        try:
            self.store.rollback()  # whatever is left of it; the next write opens a new one
        except Exception:
            logger.exception("Rollback of a lost transaction failed")

    def _reset(self) -> None:
        self.batches = []
        self.size = 0
        self.opened = None
