"""The one small interface every store speaks.

Spiders never talk to a store; pipelines, the ``ptm`` command and the reports do. Documents are
plain dicts keyed by ``_id``. An upsert replaces the stored document whole, except that
``crawl.first_seen`` keeps its first value, so a recrawl updates and never duplicates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

Doc = dict[str, Any]


def now_iso() -> str:
    """Now, in the form of every time a crawl records (ISO 8601 UTC, milliseconds)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Encoded:
    """A document already in its store's own format, made by :meth:`Store.encode` on the
    crawl's thread right after validation.

    Serialising a document there, while it is still in the CPU's caches, and freeing its
    objects at once costs less than both on the writer's thread once they have gone cold
    behind a batch or two: the store's threads used 73 s of CPU instead of 89 in a 1M sweep
    (``scripts/bench.py --n 1000000``), the crawl's thread 3 s more."""

    id: str
    data: bytes

    def decode(self) -> Doc:
        doc: Doc = orjson.loads(self.data)
        return doc


# What a write takes: a plain document, or one its store encoded.
WriteDoc = Doc | Encoded


def doc_id(doc: WriteDoc) -> str:
    return doc.id if isinstance(doc, Encoded) else str(doc["_id"])


def decoded(doc: WriteDoc) -> Doc:
    return doc.decode() if isinstance(doc, Encoded) else doc

COLLECTIONS: tuple[str, ...] = ("models", "owners", "collections", "crawls", "changes",
                               "commits", "packages", "locks")


def check_collection(collection: str) -> str:
    """``collection`` when it is one of the store's own (:data:`COLLECTIONS`): a name from a
    user (``ptm query --collection``) never reaches SQL or creates anything otherwise."""
    if collection not in COLLECTIONS:
        raise StoreError(f"unknown collection {str(collection)[:40]!r} (one of "
                         f"{', '.join(COLLECTIONS)})")
    return collection


# Indexed in every backend: what the studies and ``ptm query`` filter and sort on most.
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    "models": ("hub", "owner", "last_modified", "downloads", "hub_uid"),
    "owners": ("hub",),
    "collections": ("hub",),
    # History (ptmspiders/history.py): one record per crawl, change records per model and crawl.
    "crawls": ("spider", "hub"),
    "changes": ("model_id", "crawl_id"),
    # Commits of model repositories (issue 7): per-model lookups and signature counts.
    "commits": ("model", "signature"),
    # Downloaded model packages (issue 25): per hub, and which are complete.
    "packages": ("hub", "complete"),
}


# Who holds which crawl lock (ptmspiders/crawllock.py): one small document per lock, readable
# with ``ptm query --collection locks``.
LOCKS = "locks"


class StoreError(RuntimeError):
    """A store that cannot be opened or written; the message names the URI without secrets."""


class TransactionLost(StoreError):
    """A write failed in a way that undid the whole transaction :meth:`Store.begin` opened, so
    every write since then is gone too (SQLite rolls back on a full disk or an I/O error)."""


class Store(ABC):
    uri: str
    # Whether begin/commit group writes: a writer that groups batches for a store without
    # transactions would only hold back the reports of writes that are already durable.
    transactions: bool = False

    @abstractmethod
    def upsert(self, collection: str, docs: Sequence[WriteDoc]) -> int:
        """Insert or replace ``docs`` by ``_id``, keeping ``crawl.first_seen``; returns count."""

    def encode(self, doc: Doc) -> WriteDoc:
        """``doc`` as :meth:`upsert` takes it best, made on the caller's thread (see
        :class:`Encoded`); plain by default. A store that encodes raises ``TypeError`` here
        for a value it cannot hold (such as an integer beyond 64 bits), so that one document
        is dropped rather than its whole batch."""
        return doc

    @abstractmethod
    def get(self, collection: str, _id: str) -> Doc | None: ...

    @abstractmethod
    def get_many(self, collection: str, ids: Iterable[str],
                 fields: Sequence[str] | None = None) -> dict[str, Doc]:
        """Stored documents by ``_id`` (missing ids are absent); ``fields`` projects top-level."""

    @abstractmethod
    def find(self, collection: str, where: Mapping[str, Any] | None = None) -> Iterator[Doc]:
        """Documents matching a MongoDB filter (see :mod:`ptmspiders.query`), in ``_id`` order."""

    @abstractmethod
    def query(self, collection: str, where: Mapping[str, Any] | None = None, *,
              fields: Sequence[str] | None = None, sort: Sequence[tuple[str, int]] = (),
              limit: int | None = None) -> Iterator[Doc]:
        """Documents matching a MongoDB filter, sorted by ``sort`` [(field, 1 | -1)] then
        ``_id``; with ``fields``, flat ``{"_id", field: value}`` dicts (dotted names kept).

        Raises :class:`ptmspiders.query.QueryError` for what cannot run the same on both stores.
        """

    @abstractmethod
    def set_fields(self, collection: str, ids: Iterable[str], values: Mapping[str, Any]) -> int:
        """Set top-level fields of existing documents (``None`` stores null); returns how many
        documents matched. Used for ``removed_at``, which a crawl sets and never deletes for."""

    @abstractmethod
    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int: ...

    @abstractmethod
    def exists(self, collection: str, where: Mapping[str, Any] | None = None) -> bool:
        """Whether any document matches: stops at the first, unlike :meth:`count`."""

    @abstractmethod
    def ids(self, collection: str, where: Mapping[str, Any] | None = None) -> set[str]: ...

    @abstractmethod
    def delete(self, collection: str, ids: Iterable[str]) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def begin(self) -> None:
        """Make the next writes one transaction until :meth:`commit`; each write then undoes
        only itself when it fails, unless it raises :class:`TransactionLost`. At hub scale a
        SQLite commit costs per index page it dirtied, so grouping batches pays. A store
        without transactions (``transactions = False``) makes it a no-op."""

    @abstractmethod
    def commit(self) -> None:
        """Make the writes since :meth:`begin` durable and visible to other connections."""

    @abstractmethod
    def rollback(self) -> None:
        """Undo the writes since :meth:`begin` (after a failed :meth:`commit`)."""

    @abstractmethod
    def take_lock(self, name: str, holder: Doc, *, now: float, ttl: float,
                  replace: str | None = None) -> Doc | None:
        """Make ``holder`` (a document whose ``holder`` field names it) hold lock ``name`` until
        ``now + ttl`` (epoch seconds, in its ``expires`` field), in one atomic step, if the
        lock is free, expired, held by the same holder already (a renewal), or held by
        ``replace`` (a holder known to be dead). Returns ``None`` when ``holder`` now holds it,
        else the document of the one that does."""

    @abstractmethod
    def release_lock(self, name: str, holder_id: str) -> bool:
        """Free lock ``name`` if ``holder_id`` still holds it; returns whether it did."""

    def counters(self) -> dict[str, float]:
        """What the store did on its own behind the writes (e.g. SQLite's checkpoints), for
        the crawl's ``ptm/store/...`` stats."""
        return {}

    def limit_reads(self, seconds: float | None) -> None:
        """Have the server stop any read that works longer than ``seconds`` (MongoDB's
        ``maxTimeMS``). SQLite needs none: its regexes run in linear time (RE2)."""
        return None

    def for_thread(self) -> Store | None:
        """A store over the same data that another thread may write through (closed by the
        caller), or ``None`` when writes must stay on this thread."""
        return None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lock_is_free(current: Doc, holder: Doc, now: float, replace: str | None) -> bool:
    """Whether ``holder`` may take a lock whose document is ``current`` (see
    :meth:`Store.take_lock`)."""
    return (float(current.get("expires") or 0) <= now
            or current.get("holder") in (holder["holder"], replace or holder["holder"]))


def driver_message(exc: BaseException) -> str:
    """A store driver's exception (sqlite3, pymongo) in one line: pymongo's message goes on
    with its timeouts and the whole topology description."""
    return str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0]


def redact_uri(uri: str) -> str:
    """The URI with any password replaced, for logs and errors."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    creds, _, host = rest.partition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
