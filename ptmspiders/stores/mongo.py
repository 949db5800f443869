"""MongoDB store through pymongo: bulk upserts, indexes on the fields studies filter by.

``mongomock://`` gives the same class over mongomock, for tests on machines without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ptmspiders.query import check_fields, check_filter, dotted, with_id_tiebreak
from ptmspiders.stores.base import (
    INDEXED_FIELDS,
    LOCKS,
    Doc,
    Store,
    StoreError,
    WriteDoc,
    check_collection,
    decoded,
    redact_uri,
)

# How long pymongo looks for a server before an operation fails (crawls wait out a restart).
SERVER_TIMEOUT_S = 10.0


class MongoStore(Store):
    def __init__(self, uri: str, client: Any = None, *, readonly: bool = False,
                 server_timeout_s: float = SERVER_TIMEOUT_S) -> None:
        """``readonly``: reads only, and no index is created."""
        self.uri = uri
        self.readonly = readonly
        self.max_time_ms: int | None = None
        try:
            db_name = _database_name(uri)
        except ValueError as exc:
            raise StoreError(f"{redact_uri(uri)}: {exc}") from exc
        self.owns_client = client is None
        if client is None:  # _connect(uri) alone, as tests replace it, unless told otherwise
            client = (self._connect(uri) if server_timeout_s == SERVER_TIMEOUT_S
                      else self._connect(uri, server_timeout_s))
        self.client = client
        # mongomock 4.3 cannot take pymongo>=4.9 bulk operations: plain calls there.
        self.is_mock = type(client).__module__.startswith("mongomock")
        self.db = client[db_name]
        self._indexed: set[str] = set()

    @staticmethod
    def _connect(uri: str, server_timeout_s: float = SERVER_TIMEOUT_S) -> Any:
        if uri.startswith("mongomock://"):
            import mongomock

            return mongomock.MongoClient()
        import pymongo
        from pymongo.errors import PyMongoError

        try:
            return pymongo.MongoClient(
                uri, serverSelectionTimeoutMS=max(1, int(server_timeout_s * 1000)),
                tz_aware=True)
        except (PyMongoError, ValueError) as exc:
            raise StoreError(f"cannot open {redact_uri(uri)}: {exc}") from exc

    def limit_reads(self, seconds: float | None) -> None:
        """``maxTimeMS`` on every read from now on: the server, not the client, stops a read
        that runs too long (such as a backtracking ``$regex``)."""
        self.max_time_ms = None if seconds is None else max(1, int(seconds * 1000))

    def _limits(self) -> dict[str, Any]:
        return {} if self.max_time_ms is None else {"max_time_ms": self.max_time_ms}

    def coll(self, collection: str) -> Any:
        c = self.db[check_collection(collection)]
        if collection not in self._indexed and not self.readonly:
            for field in INDEXED_FIELDS.get(collection, ()):
                c.create_index(field)
            self._indexed.add(collection)
        return c

    def _writable(self, collection: str) -> Any:
        if self.readonly:
            raise StoreError(f"{redact_uri(self.uri)} is open read-only: cannot write "
                             f"{collection}")
        return self.coll(collection)

    def upsert(self, collection: str, docs: Sequence[WriteDoc]) -> int:
        if not docs:
            return 0
        plain = [decoded(d) for d in docs]  # encode() keeps them plain; pymongo encodes BSON
        from pymongo import ReplaceOne

        c = self._writable(collection)
        ids = [d["_id"] for d in plain]
        first_seen = {
            d["_id"]: d["crawl"]["first_seen"]
            for d in c.find({"_id": {"$in": ids}}, {"crawl.first_seen": 1})
            if isinstance(d.get("crawl"), dict) and d["crawl"].get("first_seen")
        }
        ops = []
        for doc in plain:
            kept = first_seen.get(doc["_id"])
            if kept is not None and isinstance(doc.get("crawl"), dict):
                doc = {**doc, "crawl": {**doc["crawl"], "first_seen": kept}}
            ops.append(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
        if self.is_mock:
            for op in ops:
                c.replace_one(op._filter, op._doc, upsert=True)
        else:
            c.bulk_write(ops, ordered=False)
        return len(ops)

    def get(self, collection: str, _id: str) -> Doc | None:
        doc: Doc | None = self.coll(collection).find_one({"_id": _id}, **self._limits())
        return doc

    def get_many(self, collection: str, ids: Iterable[str],
                 fields: Sequence[str] | None = None) -> dict[str, Doc]:
        wanted = list(ids)
        out: dict[str, Doc] = {}
        projection = {f: 1 for f in fields} if fields else None
        for start in range(0, len(wanted), 1000):
            for doc in self.coll(collection).find(
                {"_id": {"$in": wanted[start:start + 1000]}}, projection, **self._limits()
            ):
                if fields:
                    out[doc["_id"]] = {f: dotted(doc, f) for f in fields}
                else:
                    out[doc["_id"]] = doc
        return out

    def find(self, collection: str, where: Mapping[str, Any] | None = None) -> Iterator[Doc]:
        yield from self.coll(collection).find(check_filter(where), **self._limits()).sort(
            "_id", 1)

    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        limits = {} if self.max_time_ms is None else {"maxTimeMS": self.max_time_ms}
        return int(self.coll(collection).count_documents(check_filter(where), **limits))

    def exists(self, collection: str, where: Mapping[str, Any] | None = None) -> bool:
        return self.coll(collection).find_one(check_filter(where), {"_id": 1},
                                              **self._limits()) is not None

    def ids(self, collection: str, where: Mapping[str, Any] | None = None) -> set[str]:
        return {d["_id"] for d in self.coll(collection).find(check_filter(where), {"_id": 1},
                                                             **self._limits())}

    def query(self, collection: str, where: Mapping[str, Any] | None = None, *,
              fields: Sequence[str] | None = None, sort: Sequence[tuple[str, int]] = (),
              limit: int | None = None) -> Iterator[Doc]:
        checked = check_filter(where)
        fields = check_fields(fields)
        # Top-level projection: MongoDB refuses overlapping paths such as card and card.present.
        projection = {f.split(".", 1)[0]: 1 for f in fields} if fields else None
        cursor = self.coll(collection).find(checked, projection, **self._limits()).sort(
            with_id_tiebreak(list(sort)))
        if limit is not None:
            if limit == 0:
                return
            cursor = cursor.limit(limit)
        for doc in cursor:
            if fields:
                yield {"_id": doc["_id"], **{f: dotted(doc, f) for f in fields if f != "_id"}}
            else:
                yield doc

    def set_fields(self, collection: str, ids: Iterable[str], values: Mapping[str, Any]) -> int:
        wanted = list(ids)
        if not wanted or not values:
            return 0
        for field in values:
            if not field or "." in field or field.startswith("$"):
                raise StoreError(f"set_fields takes top-level field names, not {field!r}")
        matched = 0
        for start in range(0, len(wanted), 1000):
            result = self._writable(collection).update_many(
                {"_id": {"$in": wanted[start:start + 1000]}}, {"$set": dict(values)})
            matched += int(result.matched_count)
        return matched

    def delete(self, collection: str, ids: Iterable[str]) -> int:
        result = self._writable(collection).delete_many({"_id": {"$in": list(ids)}})
        return int(result.deleted_count)

    def take_lock(self, name: str, holder: Doc, *, now: float, ttl: float,
                  replace: str | None = None) -> Doc | None:
        """One conditional upsert on the lock's ``_id``: it replaces a lock that is free to
        take, and where another holds it, the insert fails on the unique ``_id``."""
        from pymongo.errors import DuplicateKeyError

        c = self.db[LOCKS]
        takers = [{"expires": {"$lte": now}}, {"holder": holder["holder"]}]
        if replace:
            takers.append({"holder": replace})
        doc = {**holder, "_id": name, "expires": now + ttl}
        for _ in range(3):  # a lock released between the two steps: try again
            try:
                c.replace_one({"_id": name, "$or": takers}, doc, upsert=True)
                return None
            except DuplicateKeyError:
                current: Doc | None = c.find_one({"_id": name})
                if current is not None:
                    return current
        raise StoreError(f"could not take or read lock {name!r}")

    def release_lock(self, name: str, holder_id: str) -> bool:
        result = self.db[LOCKS].delete_one({"_id": name, "holder": holder_id})
        return int(result.deleted_count) > 0

    # Each bulk write is durable on its own (a multi-batch transaction would need a replica
    # set, and buys nothing: MongoDB pays per document, not per commit).
    def begin(self) -> None:
        return None

    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None

    def for_thread(self) -> MongoStore | None:
        """pymongo clients are thread-safe: the same client, closed by this store only.
        mongomock's are not, so its writes stay on the caller's thread."""
        if self.is_mock:
            return None
        store = MongoStore(self.uri, client=self.client, readonly=self.readonly)
        store.max_time_ms = self.max_time_ms
        store._indexed = set(self._indexed)
        return store

    def close(self) -> None:
        if self.owns_client:
            self.client.close()


def _database_name(uri: str) -> str:
    rest = uri.split("://", 1)[1]
    path = rest.split("/", 1)[1] if "/" in rest else ""
    name = path.split("?", 1)[0]
    if any(ch in name for ch in '/\\. "$'):
        raise ValueError(f"invalid database name {name!r}")
    return name or "ptm"

