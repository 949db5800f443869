"""Write-behind in a process of its own, for a SQLite file store (``PTM_STORE_WRITER=process``).

A writer thread shares the crawl's interpreter: each SQLite call it returns from waits for the
GIL while the crawl's thread runs Python. A process has its own GIL. The crawl's thread hands
each batch over as bytes through a pipe; the process writes the batches with the same
:class:`~ptmspiders.stores.writer.BackgroundWriter` (on a thread there, so the pipe drains
while SQLite works) and answers for each batch once its transaction commits. Its queue holds
more batches than a thread's can (``PENDING_BATCHES``): they are its memory, not the crawl's.
At 1M models the sweep ran 16% faster than with the thread (docs/performance.md, "The
writer's process").

Answers (written, the write hooks' results, failures, log records) are read on the crawl's
thread at the next :meth:`ProcessWriter.submit`, :meth:`~ProcessWriter.poll` or
:meth:`~ProcessWriter.sync`, as the thread writer's are, so the JOBDIR checkpoints only ever
hear of ids that are really stored. The process runs in a session of its own, so a Ctrl-C
reaches only the crawl, which drains it as it closes. If the crawl's process dies, the writer
reads the end of its pipe, commits what it has and exits; if the writer dies, every batch not
yet answered fails with a :class:`~ptmspiders.stores.writer.StoreWriteError`, and so does every
later one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptmspiders.config import PENDING_BATCHES
from ptmspiders.stores.base import Doc, Encoded, Store, StoreError, WriteDoc
from ptmspiders.stores.writer import (
    DEFAULT_TRANSACTION_SIZE,
    Apply,
    BackgroundWriter,
    Check,
    Done,
    StoreWriteError,
)

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")
# Linux's largest pipe buffer for an unprivileged process (fs.pipe-max-size): a batch of 1,000
# documents crosses in two or three writes instead of about fifty.
_PIPE_BYTES = 1 << 20
_START_TIMEOUT_S = 60.0
# A batch as it crosses: its ids and JSON texts, or (documents not encoded) the documents.
Packed = tuple[list[str], list[bytes]] | list[WriteDoc]


def _ready(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` has something to read (or its end), within ``timeout`` seconds (None:
    wait). ``poll``, not ``select``: a crawl may hold more than FD_SETSIZE descriptors."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _read_exact(fd: int, size: int) -> bytearray | None:
    """``size`` bytes from ``fd`` (blocking), or None at the end of the pipe."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return None
        got += n
    return buf


def _read_frame(fd: int) -> Any:
    """The next message, or None at the end of the pipe."""
    header = _read_exact(fd, _HEADER.size)
    body = None if header is None else _read_exact(fd, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _pack(docs: Sequence[WriteDoc]) -> Packed:
    if all(isinstance(d, Encoded) for d in docs):
        return [d.id for d in docs], [d.data for d in docs]  # type: ignore[union-attr]
    return list(docs)


def _unpack(packed: Packed) -> list[WriteDoc]:
    if isinstance(packed, tuple):
        return list(map(Encoded, *packed))
    return packed


def supported(store: Store) -> bool:
    """Whether a writer process can write ``store``: a SQLite file (another process opens it by
    its URI; an in-memory database is private to its connection)."""
    from ptmspiders.stores.sqlite import SQLiteStore, sqlite_path

    return isinstance(store, SQLiteStore) and sqlite_path(store.uri) != ":memory:"


class ProcessWriter:
    """The :class:`BackgroundWriter` interface over a writer process for ``store``'s URI."""

    behind = True  # batches are written behind the crawl

    def __init__(self, store: Store, max_pending: int = PENDING_BATCHES["process"],
                 transaction_size: int = DEFAULT_TRANSACTION_SIZE,
                 max_age: float = 5.0) -> None:
        self.store = store
        self.pending: dict[int, tuple[str, int, Done | None]] = {}
        self.applies: dict[str, list[Apply]] = {}
        self.answers: deque[Any] = deque()
        self.errors: deque[StoreWriteError] = deque()
        self.closed = False
        self.exited: str | None = None  # why the process is gone, once it is
        self.seq = 0
        self.waited = 0.0  # seconds the crawl waited for the process to take a batch
        self.busy = 0.0  # the process's BackgroundWriter.busy, as last answered
        self._counters: dict[str, float] = {}
        self._inbox = bytearray()
        to_child, self.out_fd = os.pipe()
        self.in_fd, from_child = os.pipe()
        for fd in (self.out_fd, from_child):
            with contextlib.suppress(OSError, AttributeError):  # not Linux: a smaller pipe
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        env = dict(os.environ)
        # The package as this process imported it, wherever the crawl was started from.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ptmspiders.stores.writer_process", str(to_child),
                 str(from_child)],
                pass_fds=(to_child, from_child), start_new_session=True, env=env,
                stdin=subprocess.DEVNULL)
        except OSError as exc:
            for fd in (to_child, from_child, self.out_fd, self.in_fd):
                os.close(fd)
            raise StoreError(f"cannot start the store's writer process: {exc}") from exc
        os.close(to_child)
        os.close(from_child)
        # A writer dropped without close() (a crawl that never reached its end): the process
        # reads the end of its pipe, commits what it has and exits; it is reaped here.
        self._finalizer = weakref.finalize(self, _abandon, self.proc, self.out_fd, self.in_fd)
        level = logging.getLogger("ptmspiders").getEffectiveLevel()
        self._send(("open", store.uri, max_pending, transaction_size, max_age, level))
        self._wait_for("ready", _START_TIMEOUT_S)
        if self.exited is not None:
            self.close()
            raise StoreError(f"cannot open {store.uri} in the store's writer process: "
                             f"{self.exited}")
        os.set_blocking(self.out_fd, False)
        # While a batch does not fit in the pipe: room for it, or an answer to read.
        self.waiting = select.poll()
        self.waiting.register(self.out_fd, select.POLLOUT)
        self.waiting.register(self.in_fd, select.POLLIN)

    def add_hook(self, collection: str, check: Check, apply: Apply) -> None:
        """``check`` crosses to the process by pickle; ``apply`` stays on this thread."""
        self.applies.setdefault(collection, []).append(apply)
        self._send(("hook", collection, check))

    def encode(self, doc: Doc) -> WriteDoc:
        return self.store.encode(doc)

    def submit(self, collection: str, docs: Sequence[WriteDoc], done: Done | None = None) -> None:
        """Hand ``docs`` to the process; raises :class:`StoreWriteError` for an earlier batch,
        or for this one if the process is gone."""
        if self.closed:
            raise RuntimeError("the store writer is closed")
        if docs:
            if self.exited is not None:
                self.errors.append(StoreWriteError(collection, len(docs),
                                                   RuntimeError(self.exited)))
            else:
                self.seq += 1
                self.pending[self.seq] = (collection, len(docs), done)
                self._send(("batch", self.seq, collection, _pack(docs)))
        self.poll()

    def poll(self) -> None:
        """Run the callbacks of the batches answered since the last call."""
        while self.exited is None and _ready(self.in_fd, 0):
            self._receive()
        self._handle()

    def sync(self) -> None:
        """Wait until everything submitted is written and committed."""
        if self.exited is None:
            self._send(("sync", self.seq))
            self._wait_for("synced")
        self._handle()

    def close(self) -> None:
        """Drain the process, let it close its store and exit. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.exited is None:
                self._send(("stop",))
                self._wait_for("closed")
        finally:
            self._finalizer()
        self._handle()

    def counters(self) -> dict[str, float]:
        """The writing store's counters, as the process last answered them."""
        return dict(self._counters)

    # -- the pipes ------------------------------------------------------------------------------

    def _send(self, message: Any) -> None:
        body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._write(_HEADER.pack(len(body)))
        self._write(body)

    def _write(self, data: bytes | memoryview) -> None:
        data = memoryview(data)
        blocked = None
        while data and self.exited is None:
            try:
                data = data[os.write(self.out_fd, data):]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                self._gone()
                break
            # The process is behind: wait for room, reading its answers meanwhile (it may be
            # waiting for room to answer).
            if blocked is None:
                blocked = time.monotonic()
            self.waiting.poll()
            if _ready(self.in_fd, 0):
                self._receive()
        if blocked is not None:
            self.waited += time.monotonic() - blocked

    def _receive(self) -> None:
        """Read what is there; whole answers go to :attr:`answers`."""
        chunk = os.read(self.in_fd, _PIPE_BYTES)
        if not chunk:
            self._gone()
            return
        self._inbox += chunk
        while len(self._inbox) >= _HEADER.size:
            size = _HEADER.unpack_from(self._inbox)[0]
            end = _HEADER.size + size
            if len(self._inbox) < end:
                break
            self.answers.append(pickle.loads(self._inbox[_HEADER.size:end]))
            del self._inbox[:end]

    def _wait_for(self, kind: str, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.exited is None and not any(a[0] == kind for a in self.answers):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.proc.kill()
                self._gone(f"it did not answer within {timeout:.0f} s")
                break
            if _ready(self.in_fd, left):
                self._receive()

    def _gone(self, why: str | None = None) -> None:
        """The process ended before it was told to: every batch not answered has failed."""
        if self.exited is not None:
            return
        if why is None:
            try:
                code = self.proc.wait(timeout=5)
                why = f"it exited with code {code}"
            except subprocess.TimeoutExpired:
                why = "it closed its pipe"
        self.exited = f"the store's writer process is gone ({why})"
        if self.pending:
            logger.error("%s: %d batches not written", self.exited, len(self.pending))
        for collection, count, _done in self.pending.values():
            self.errors.append(StoreWriteError(collection, count, RuntimeError(self.exited)))
        self.pending.clear()

    def _handle(self) -> None:
        while self.answers:
            answer = self.answers.popleft()
            kind = answer[0]
            if kind == "done":
                _, seq, written, results = answer
                collection, _count, done = self.pending.pop(seq)
                applies = self.applies[collection] if results else []
                for index, result in results:  # a hook whose check failed has none
                    applies[index](result)
                if done is not None:
                    done(written)
            elif kind == "failed":
                _, seq, collection, count, text = answer
                self.pending.pop(seq, None)
                self.errors.append(StoreWriteError(collection, count, RuntimeError(text)))
            elif kind == "log":
                record = answer[1]
                logging.getLogger(record.name).handle(record)
            elif kind in ("synced", "closed"):
                _, synced, self.busy, self._counters = answer
                # Every batch up to the barrier has been answered: none is pending (a bug
                # that lost a batch's number must not make it fail again later).
                for seq in [s for s in self.pending if s <= synced]:
                    del self.pending[seq]
            elif kind == "ready":
                pass
        if self.errors:
            raise self.errors.popleft()


def _abandon(proc: subprocess.Popen[bytes], out_fd: int, in_fd: int) -> None:
    """Close the pipes and reap the process (which ends once its input does)."""
    with contextlib.suppress(OSError):
        os.close(out_fd)
    try:
        proc.wait(timeout=_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(OSError):
        os.close(in_fd)


# -- the writer process -------------------------------------------------------------------------

class _Answers:
    """The process's side of the answer pipe: whole frames, from any of its threads."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.unheard = False  # the crawl is gone: what it sent is still written and committed

    def send(self, message: Any) -> None:
        data = memoryview(_frame(message))
        with self.lock:
            while data and not self.unheard:
                try:
                    data = data[os.write(self.fd, data):]
                except BrokenPipeError:
                    self.unheard = True


class _ForwardLogs(logging.Handler):
    """Log records go to the crawl's process, which logs them as its own."""

    def __init__(self, answers: _Answers) -> None:
        super().__init__()
        self.answers = answers

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self.answers.send(("log", record))
        except Exception:
            self.handleError(record)


class _Answer:
    """A batch's callback in the writer process: answers the crawl with what was written and
    what the hooks found."""

    def __init__(self, serve: _Serve, seq: int) -> None:
        self.serve = serve
        self.seq = seq

    def __call__(self, written: int) -> None:
        results = self.serve.results
        self.serve.answers.send(("done", self.seq, written, results[:]))
        results.clear()


class _Serve:
    """The writer process's loop: batches in, answers out."""

    def __init__(self, answers: _Answers, writer: BackgroundWriter) -> None:
        self.answers = answers
        self.writer = writer
        self.hooks: dict[str, int] = {}  # hooks per collection
        # (hook's index, its check's result) for the batch being answered
        self.results: list[tuple[int, Any]] = []
        self.seq = 0  # the last batch taken

    def hook(self, collection: str, check: Check) -> None:
        index = self.hooks.get(collection, 0)
        self.hooks[collection] = index + 1

        def apply(result: Any) -> None:
            self.results.append((index, result))
        self.writer.add_hook(collection, check, apply)

    def batch(self, seq: int, collection: str, packed: Packed) -> None:
        self.seq = seq
        try:
            self.writer.submit(collection, _unpack(packed), _Answer(self, seq))
        except StoreWriteError as exc:
            self.failed(exc)
        self.poll()

    def poll(self) -> None:
        while True:
            try:
                self.writer.poll()
                return
            except StoreWriteError as exc:
                self.failed(exc)

    def failed(self, exc: StoreWriteError) -> None:
        seq = exc.done.seq if isinstance(exc.done, _Answer) else 0
        self.answers.send(("failed", seq, exc.collection, exc.count, str(exc.__cause__ or exc)))

    def barrier(self, kind: str, close: bool) -> None:
        self.poll()
        while True:
            try:
                if close:
                    self.writer.close()
                else:
                    self.writer.sync()
                break
            except StoreWriteError as exc:
                self.failed(exc)
        self.poll()
        self.answers.send((kind, self.seq, round(self.writer.busy, 3), self.writer.counters()))


def serve(in_fd: int, out_fd: int) -> int:
    """Open the store the crawl names, write what it sends, until it says stop or goes."""
    answers = _Answers(out_fd)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(answers)]
    opening = _read_frame(in_fd)
    if opening is None:
        return 0
    _, uri, max_pending, transaction_size, max_age, level = opening
    root.setLevel(level)
    from ptmspiders.stores.sqlite import SQLiteStore

    try:
        store = SQLiteStore(uri, checkpoint_thread=True)
    except StoreError as exc:
        logger.error("%s", exc)
        return 1
    writer = BackgroundWriter(store, store, max_pending, transaction_size, max_age)
    loop = _Serve(answers, writer)
    answers.send(("ready",))
    while True:
        # Answers go out as transactions commit, also while no batch comes.
        if not _ready(in_fd, 0.05):
            loop.poll()
            continue
        message = _read_frame(in_fd)
        if message is None:  # the crawl is gone: keep what it sent
            loop.barrier("closed", close=True)
            return 0
        kind = message[0]
        if kind == "batch":
            loop.batch(*message[1:])
        elif kind == "hook":
            loop.hook(*message[1:])
        elif kind == "sync":
            loop.barrier("synced", close=False)
        elif kind == "stop":
            loop.barrier("closed", close=True)
            return 0


def main(argv: list[str]) -> int:
    in_fd, out_fd = (int(a) for a in argv)
    try:
        return serve(in_fd, out_fd)
    except Exception:
        logger.exception("The store's writer process failed")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
