"""Embedded SQLite store: one table per collection, the document as JSON text.

Indexes on JSON expressions give MongoDB-like filtering without a schema migration per field.
WAL keeps readers (``ptm``) unblocked while a crawl writes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from ptmspiders.config import PtmSettings
from ptmspiders.query import (
    QueryError,
    check_fields,
    json_path,
    order_by,
    register_functions,
    scalar_fields,
    to_sql,
)
from ptmspiders.stores.base import (
    INDEXED_FIELDS,
    LOCKS,
    Doc,
    Encoded,
    Store,
    StoreError,
    TransactionLost,
    WriteDoc,
    check_collection,
    lock_is_free,
)

logger = logging.getLogger(__name__)

_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyz_0123456789")
# What a read of a collection without a table reads: no rows, and nothing created.
_NO_ROWS = "(SELECT NULL AS _id, NULL AS doc WHERE 0)"
# SQLite's refusals of a statement too big to parse or run.
_TOO_COMPLEX = ("parser stack overflow", "Expression tree is too large", "too many SQL variables",
                "too many terms", "string or blob too big")
# Rows per multi-row statement (2 parameters each; SQLite takes up to 32,766): a store batch of
# the default size (PTM_STORE_BATCH_SIZE) is one statement, and each is a hand-over of the GIL.
_ROWS_PER_STATEMENT = min(PtmSettings.model_fields["store_batch_size"].default, 16_000)
# Every model lands at a random place in each index, so at hub scale each batch dirties about
# one index page per model and index. SQLite's default checkpoint (every 1,000 WAL pages, with
# an fsync) then copies those pages back almost every batch; a larger WAL lets a page dirtied
# by many batches be copied once (scripts/bench_store.py --n 200000 --transaction 500: 192 us
# per upsert at 200,000 models with --wal-autocheckpoint 1000, 130 without).
# The WAL file can reach ~200 MB during a crawl; the last connection to close folds it back.
_WAL_AUTOCHECKPOINT_PAGES = 50_000
# The writer thread's connection leaves checkpoints to a _Checkpointer; its own automatic
# checkpoint stays as a backstop (~800 MB of WAL), should that thread fall behind. The WAL
# file peaked at 85 MB in a 600,000-model bench_store.py run (260 MB without the thread).
_WRITER_BACKSTOP_PAGES = 4 * _WAL_AUTOCHECKPOINT_PAGES
# The writer thread's page cache (KiB; SQLite's default is 2 MiB). With a commit per ~50,000
# models (PTM_STORE_TRANSACTION_SIZE) a small cache spills the transaction's dirty index pages
# into the WAL before the commit and reads them back at the next insert that lands on them;
# 64 MiB keeps the hot index pages. 1M-model sweep (scripts/bench.py --no-baseline): store
# threads' CPU 60.6 -> 57.7 s, checkpoint time 24.8 -> 12.7 s, peak RSS 202 -> 275 MB
# (docs/performance.md, "The SQLite store").
_WRITER_CACHE_KIB = 65_536
# Several processes may write one file (two crawls of different hubs, ``ptm`` beside a crawl).
# Every write transaction starts with BEGIN IMMEDIATE, which takes the write lock at once and
# waits for it up to the busy timeout: a deferred BEGIN that reads first (the history compares
# each batch with the store) fails at its first write with "database is locked", without
# waiting, whenever another process committed since its read (SQLITE_BUSY_SNAPSHOT).
_BUSY_TIMEOUT_MS = 30_000
# SQLite's busy handler is not fair: a writer that commits and begins again at once can keep
# another one waiting past its busy timeout, so BEGIN IMMEDIATE is tried again this long
# before the write fails.
_BEGIN_PATIENCE_S = 600.0


@functools.lru_cache(maxsize=64)
def _upsert_sql(table: str, rows: int) -> str:
    """Replace each document by ``_id``, keeping the stored ``crawl.first_seen``.

    The document comes as orjson's UTF-8 bytes and is cast to TEXT in SQLite: decoding it to a
    Python str only for sqlite3 to encode it back costs more than the dump, GIL held."""
    values = ",".join(["(?, CAST(? AS TEXT))"] * rows)
    return (
        f"INSERT INTO {table}(_id, doc) VALUES {values} ON CONFLICT(_id) DO UPDATE SET doc = "
        f"CASE WHEN json_extract({table}.doc, '$.crawl.first_seen') IS NULL THEN excluded.doc "
        f"ELSE json_set(excluded.doc, '$.crawl.first_seen', "
        f"json_extract({table}.doc, '$.crawl.first_seen')) END"
    )


def _projection(fields: Sequence[str]) -> str:
    """One JSON array of ``[_id, *fields]``: json_extract with several paths keeps JSON types
    (``true`` stays true; ``json_array(json_extract(...))`` would turn it into 1)."""
    paths = ", ".join(f"'{json_path(f)}'" for f in fields)
    return f"json_extract(doc, '$.\"_id\"', {paths})"


def sqlite_path(uri: str) -> str:
    """``sqlite:///rel/path``, ``sqlite:////abs/path`` or ``sqlite:///:memory:`` -> path."""
    if not uri.startswith("sqlite://"):
        raise StoreError(f"not a sqlite URI: {uri}")
    path = uri[len("sqlite://"):]
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise StoreError("sqlite URI without a path, e.g. sqlite:///data/ptm.sqlite")
    return path


class _Checkpointer:
    """Copies committed WAL frames back into the database, on its own connection and thread.

    With ``synchronous=NORMAL`` a checkpoint fsyncs the WAL and then the database. Run by the
    committing connection (SQLite's automatic checkpoint), each one held the writer thread, and
    through its full queue the crawl, for up to a second at hub scale. A passive checkpoint
    on another connection runs beside the writer's next transaction instead; it copies what
    was committed when it started and never blocks the writer. Measured with
    ``scripts/bench_store.py --n 600000 --first-crawl [--no-checkpoint-thread]``: 51, 67 and
    72 us per upsert at 200,000, 400,000 and 600,000 models, against 61, 90 and 110.
    """

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA synchronous=NORMAL")  # what makes a checkpoint durable
        self.wake = threading.Event()
        self.stopping = False
        self.runs = 0
        self.busy = 0  # another connection was checkpointing: the next commit tries again
        self.failures = 0
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, name="ptm-sqlite-checkpoint",
                                       daemon=True)
        self.thread.start()

    def notify(self) -> None:
        """A commit happened: checkpoint once the current run (if any) is done. Commits
        that come while it runs share the next run."""
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            started = time.monotonic()
            try:
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except Exception as exc:  # the writer's backstop checkpoint still bounds the WAL
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                    self.busy += 1  # a passive checkpoint never waits for another one
                else:
                    self.failures += 1
                    logger.warning("WAL checkpoint failed: %s", exc)
            else:
                self.runs += 1
            self.seconds += time.monotonic() - started

    def close(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join()
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()


class SQLiteStore(Store):
    transactions = True

    def __init__(self, uri: str, *, checkpoint_thread: bool = False,
                 readonly: bool = False) -> None:
        """``readonly`` opens an existing file with SQLite's ``mode=ro``: a missing file is a
        :class:`StoreError`, and nothing (directory, file, table, index) is ever created."""
        self.uri = uri
        self.readonly = readonly
        path = sqlite_path(uri)
        if path != ":memory:" and not readonly:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError as exc:  # a file where its folder should be
                raise StoreError(f"cannot open {uri}: {exc.filename} is not a folder") from exc
            except OSError as exc:  # no permission, a read-only file system
                raise StoreError(f"cannot open {uri}: {exc}") from exc
        try:
            if readonly and path != ":memory:":
                target = "file:" + urllib.parse.quote(str(Path(path).absolute())) + "?mode=ro"
                self.conn = sqlite3.connect(target, uri=True, isolation_level=None,
                                            check_same_thread=False)
                # Fails here, not mid-command, for a file that is not a SQLite database.
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            else:
                self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT_PAGES}")
                self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {uri}: {exc}") from exc
        self.conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        register_functions(self.conn)
        self._tables: set[str] = set()
        self._grouped = False  # inside begin() .. commit()
        self.checkpointer: _Checkpointer | None = None
        if checkpoint_thread and path != ":memory:":
            try:
                self.checkpointer = _Checkpointer(path)
            except sqlite3.Error as exc:  # this connection keeps checkpointing, as others do
                logger.warning("No checkpoint thread for %s (%s): the writer checkpoints itself",
                               uri, exc)
            else:
                self.conn.execute(f"PRAGMA wal_autocheckpoint={_WRITER_BACKSTOP_PAGES}")
                self.conn.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")

    def table(self, collection: str) -> str:
        """Create the collection's table (and indexes) on first use; returns its quoted name.
        For writes only: reads go through :meth:`source`."""
        check_collection(collection)
        if not set(collection) <= _SAFE_NAME:
            raise StoreError(f"invalid collection name: {collection!r}")
        if self.readonly:
            raise StoreError(f"{self.uri} is open read-only: cannot write {collection}")
        if collection not in self._tables:
            self.conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{collection}" '
                "(_id TEXT PRIMARY KEY, doc TEXT NOT NULL)"
            )
            for field in INDEXED_FIELDS.get(collection, ()):
                self.conn.execute(
                    f'CREATE INDEX IF NOT EXISTS "ix_{collection}_{field}" '
                    f"ON \"{collection}\"(json_extract(doc, '{json_path(field)}'))"
                )
            self._tables.add(collection)
        return f'"{collection}"'

    def source(self, collection: str) -> str:
        """What reads of the collection select from: its table, or no rows when it has none
        yet (a read never creates a table)."""
        check_collection(collection)
        if collection in self._tables or self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (collection,)).fetchone():
            return f'"{collection}"'
        return _NO_ROWS

    def encode(self, doc: Doc) -> Encoded:
        """The JSON text the upsert binds (cast to TEXT in SQL), as orjson's UTF-8 bytes."""
        return Encoded(doc["_id"], orjson.dumps(doc, default=str))

    def upsert(self, collection: str, docs: Sequence[WriteDoc]) -> int:
        """Multi-row ``INSERT ... VALUES``: a chunk is one statement and one ``sqlite3_step``,
        during which the GIL is released once, not once per row. Per-row steps
        (``executemany``) on a writer thread would fight the crawl's thread for the GIL at
        every row (measured: over 50x slower)."""
        if not docs:
            return 0
        table = self.table(collection)
        with self._atomic():
            for start in range(0, len(docs), _ROWS_PER_STATEMENT):
                chunk = docs[start:start + _ROWS_PER_STATEMENT]
                params: list[str | bytes] = []
                for d in chunk:
                    if isinstance(d, Encoded):
                        params.append(d.id)
                        params.append(d.data)
                    else:
                        params.append(d["_id"])
                        params.append(orjson.dumps(d, default=str))
                self.conn.execute(_upsert_sql(table, len(chunk)), params)
        return len(docs)

    def get(self, collection: str, _id: str) -> Doc | None:
        row = self.conn.execute(
            f"SELECT doc FROM {self.source(collection)} WHERE _id = ?", (_id,)
        ).fetchone()
        return orjson.loads(row[0]) if row else None

    def get_many(self, collection: str, ids: Iterable[str],
                 fields: Sequence[str] | None = None) -> dict[str, Doc]:
        """One aggregate row per chunk (one step, see :meth:`upsert`)."""
        table = self.source(collection)
        wanted = list(ids)
        out: dict[str, Doc] = {}
        value = _projection(fields) if fields else "json_array(_id, json(doc))"
        for start in range(0, len(wanted), _ROWS_PER_STATEMENT):
            chunk = wanted[start:start + _ROWS_PER_STATEMENT]
            marks = ",".join("?" * len(chunk))
            row = self.conn.execute(
                f"SELECT '[' || group_concat({value}, ',') || ']' FROM {table} "
                f"WHERE _id IN ({marks})", chunk).fetchone()
            if row is None or row[0] is None:
                continue
            for found in orjson.loads(row[0]):
                if fields:
                    out[found[0]] = dict(zip(fields, found[1:], strict=True))
                else:
                    out[found[0]] = found[1]
        return out

    def _where(self, collection: str, where: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        """MongoDB filter -> SQL (``ptmspiders.query``), so both stores answer alike."""
        if not where:
            return "", []
        sql, params = to_sql(where, scalar_fields=scalar_fields(collection))
        return " WHERE " + sql, params

    def _read(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """A read statement; a filter too large or too deep for SQLite's parser (possible
        only for one both wide and deep) is a :class:`QueryError`, not a driver error."""
        try:
            return self.conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if any(m in text for m in _TOO_COMPLEX):
                raise QueryError(f"filter too complex for SQLite ({text}): nest or list "
                                 "less in one filter") from None
            raise

    def find(self, collection: str, where: Mapping[str, Any] | None = None) -> Iterator[Doc]:
        clause, params = self._where(collection, where)
        cursor = self._read(
            f"SELECT doc FROM {self.source(collection)}{clause} ORDER BY _id", params
        )
        for row in cursor:
            yield orjson.loads(row[0])

    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        clause, params = self._where(collection, where)
        row = self._read(
            f"SELECT count(*) FROM {self.source(collection)}{clause}", params
        ).fetchone()
        return int(row[0])

    def exists(self, collection: str, where: Mapping[str, Any] | None = None) -> bool:
        # No ORDER BY: the first index match answers (query() sorts by _id first).
        clause, params = self._where(collection, where)
        return self._read(
            f"SELECT 1 FROM {self.source(collection)}{clause} LIMIT 1", params
        ).fetchone() is not None

    def ids(self, collection: str, where: Mapping[str, Any] | None = None) -> set[str]:
        clause, params = self._where(collection, where)
        return {r[0] for r in self._read(
            f"SELECT _id FROM {self.source(collection)}{clause}", params)}

    def query(self, collection: str, where: Mapping[str, Any] | None = None, *,
              fields: Sequence[str] | None = None, sort: Sequence[tuple[str, int]] = (),
              limit: int | None = None) -> Iterator[Doc]:
        table = self.source(collection)
        fields = check_fields(fields)
        clause, params = self._where(collection, where)
        if fields:
            select = f"SELECT _id, {_projection(fields)} FROM {table}"
        else:
            select = f"SELECT _id, doc FROM {table}"
        sql = f"{select}{clause} ORDER BY {order_by(list(sort))}"
        if limit is not None:
            sql += " LIMIT ?"
            params = [*params, limit]
        for row in self._read(sql, params):
            if fields:
                values = orjson.loads(row[1])[1:]
                yield {"_id": row[0], **{f: v for f, v in zip(fields, values, strict=True)
                                         if f != "_id"}}
            else:
                yield orjson.loads(row[1])

    def set_fields(self, collection: str, ids: Iterable[str], values: Mapping[str, Any]) -> int:
        table = self.table(collection)
        wanted = list(ids)
        if not wanted or not values:
            return 0
        for field in values:
            if not field or not set(field) <= _SAFE_NAME | {"-"}:
                raise StoreError(f"set_fields takes top-level field names, not {field!r}")
        setters = ", ".join(f"'{json_path(f)}', json(?)" for f in values)
        encoded = [orjson.dumps(v, default=str).decode() for v in values.values()]
        matched = 0
        with self._atomic():
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                cur = self.conn.execute(
                    f"UPDATE {table} SET doc = json_set(doc, {setters}) WHERE _id IN ({marks})",
                    [*encoded, *chunk])
                matched += cur.rowcount
        return matched

    def delete(self, collection: str, ids: Iterable[str]) -> int:
        table = self.table(collection)
        with self._atomic():
            cur = self.conn.executemany(f"DELETE FROM {table} WHERE _id = ?", [(i,) for i in ids])
        return cur.rowcount

    @contextlib.contextmanager
    def _atomic(self) -> Generator[None, None, None]:
        """One write, all or nothing: its own transaction, or a savepoint inside the one
        :meth:`begin` opened, so a failed batch does not take the batches before it along."""
        if not self.conn.in_transaction:
            if self._grouped:  # an error that the caller swallowed rolled it all back
                self._tables.clear()
                raise TransactionLost("the transaction of begin() was rolled back earlier")
            with self.conn:  # commits, or rolls back on an exception
                self._begin_immediate()
                yield
            if self.checkpointer is not None:
                self.checkpointer.notify()
            return
        self.conn.execute("SAVEPOINT ptm_write")
        try:
            yield
        except BaseException as exc:
            if not self.conn.in_transaction:  # SQLite rolled everything back itself
                self._tables.clear()  # with any table the transaction had created
                raise TransactionLost(f"{exc}; the open transaction was rolled back") from exc
            self.conn.execute("ROLLBACK TO ptm_write")
            self.conn.execute("RELEASE ptm_write")
            raise
        self.conn.execute("RELEASE ptm_write")

    def _begin_immediate(self) -> None:
        """BEGIN IMMEDIATE: the write lock now, waiting for another writer (see
        ``_BUSY_TIMEOUT_MS``) rather than failing at the first write of the transaction."""
        started = time.monotonic()
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                waited = time.monotonic() - started
                if (getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY
                        or waited >= _BEGIN_PATIENCE_S):
                    raise
                logger.warning("Another process has been writing %s for %.0f s: waiting on",
                               self.uri, waited)

    def begin(self) -> None:
        if not self.conn.in_transaction:
            self._begin_immediate()
        self._grouped = True

    def commit(self) -> None:
        grouped, self._grouped = self._grouped, False
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
            if self.checkpointer is not None:
                self.checkpointer.notify()
        elif grouped:
            self._tables.clear()
            raise TransactionLost("the transaction of begin() was rolled back before its commit")

    def rollback(self) -> None:
        self._grouped = False
        self._tables.clear()  # a table created in the transaction is gone with it
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def take_lock(self, name: str, holder: Doc, *, now: float, ttl: float,
                  replace: str | None = None) -> Doc | None:
        """Read and write in one BEGIN IMMEDIATE transaction: no other connection can take
        the lock between the two."""
        table = self.table(LOCKS)
        with self._atomic():
            row = self.conn.execute(f"SELECT doc FROM {table} WHERE _id = ?",
                                    (name,)).fetchone()
            current: Doc | None = orjson.loads(row[0]) if row else None
            if current is not None and not lock_is_free(current, holder, now, replace):
                return current
            doc = {**holder, "_id": name, "expires": now + ttl}
            self.conn.execute(f"INSERT OR REPLACE INTO {table}(_id, doc) VALUES (?, ?)",
                              (name, orjson.dumps(doc).decode()))
        return None

    def release_lock(self, name: str, holder_id: str) -> bool:
        table = self.table(LOCKS)
        with self._atomic():
            cur = self.conn.execute(
                f"DELETE FROM {table} WHERE _id = ? AND json_extract(doc, '$.holder') = ?",
                (name, holder_id))
        return cur.rowcount > 0

    def counters(self) -> dict[str, float]:
        c = self.checkpointer
        if c is None:
            return {}
        return {"checkpoints": c.runs, "checkpoints_busy": c.busy,
                "checkpoint_failures": c.failures, "checkpoint_seconds": round(c.seconds, 3)}

    def for_thread(self) -> SQLiteStore | None:
        """A second connection: WAL lets it write while this one reads, and a third thread
        checkpoints what it commits. An in-memory database is private to its connection, so
        it has none."""
        if sqlite_path(self.uri) == ":memory:":
            return None
        return SQLiteStore(self.uri, checkpoint_thread=True)

    def close(self) -> None:
        if self.checkpointer is not None:
            checkpointer, self.checkpointer = self.checkpointer, None
            checkpointer.close()
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
