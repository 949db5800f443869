"""How a model changed between crawls: the comparison of each batch with what it replaces.

The check half of history's write hook (:mod:`ptmspiders.history` holds the rest). It runs
where the store's writer runs, which may be a process of its own
(:mod:`ptmspiders.stores.writer_process`), so this module imports only what that process
needs: no Scrapy, no crawler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ptmspiders.items import Doc
from ptmspiders.stores.base import Store, WriteDoc, decoded, doc_id, now_iso

logger = logging.getLogger(__name__)

# Not compared: bookkeeping of the crawler (crawl, enrichment: which per-model steps ran at
# which sha), the hub's verbatim answer (raw, already parsed into the other fields), and
# removed_at, which has its own "reappeared" kind.
IGNORED_FIELDS = frozenset({"_id", "crawl", "enrichment", "raw", "removed_at"})
_EMPTY: tuple[Any, ...] = (None, [], {})


# -- comparing documents -------------------------------------------------------------------------

def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _same(old: Any, new: Any) -> bool:
    if old == new and type(old) is type(new):
        return True
    if isinstance(old, bool) or isinstance(new, bool):
        return False
    if isinstance(old, int | float) and isinstance(new, int | float):
        return old == new
    # A field added to the schema after the stored crawl is absent (None) there: not a change.
    return any(old is e or old == e for e in _EMPTY) and any(new is e or new == e for e in _EMPTY)


def _list_key(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("path", value.get("id", repr(sorted(value.items(), key=str))))
    return value


def diff_docs(old: Mapping[str, Any], new: Mapping[str, Any],
              fields: Iterable[str]) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """(changed fields, {field: {old, new}} for scalars (also ``field.key`` inside objects),
    {field: {added, removed}} for lists)."""
    changed: list[str] = []
    values: dict[str, Any] = {}
    lists: dict[str, Any] = {}
    for name in fields:
        if name in IGNORED_FIELDS:
            continue
        o, n = old.get(name), new.get(name)
        if _same(o, n):
            continue
        changed.append(name)
        if is_scalar(o) and is_scalar(n):
            values[name] = {"old": o, "new": n}
        elif isinstance(o, list | type(None)) and isinstance(n, list | type(None)):
            before = [_list_key(x) for x in o or []]
            after = [_list_key(x) for x in n or []]
            added = [x for x in after if x not in before]
            removed = [x for x in before if x not in after]
            entry: dict[str, Any] = {"added": added, "removed": removed}
            if not added and not removed:
                entry["reordered_or_edited"] = True
            lists[name] = entry
        elif isinstance(o, dict | type(None)) and isinstance(n, dict | type(None)):
            o_map, n_map = o or {}, n or {}
            for key in sorted(set(o_map) | set(n_map), key=str):
                ov, nv = o_map.get(key), n_map.get(key)
                if not _same(ov, nv) and is_scalar(ov) and is_scalar(nv):
                    values[f"{name}.{key}"] = {"old": ov, "new": nv}
        else:
            values[name] = {"old": o, "new": n}
    return changed, values, lists


def change_record(crawl_id: str, spider: str, doc: Mapping[str, Any], kind: str, *,
                  at: str, changed: list[str] | None = None,
                  values: dict[str, Any] | None = None, lists: dict[str, Any] | None = None,
                  **extra: Any) -> Doc:
    record: Doc = {
        "_id": f"{crawl_id}|{doc['_id']}",
        "crawl_id": crawl_id,
        "model_id": doc["_id"],
        "hub": doc.get("hub"),
        "spider": spider,
        "at": at,
        "kind": kind,
        "fields": changed or [],
        "values": values or {},
        "lists": lists or {},
    }
    record.update(extra)
    return record


# -- comparing each batch as it is written ------------------------------------------------------

@dataclass
class BatchHistory:
    """What comparing one batch found, applied on the crawl's thread once the batch is stored."""

    counts: dict[str, int] = field(default_factory=dict)
    records: int = 0
    renamed_away: dict[str, str] = field(default_factory=dict)
    failed: bool = False  # the comparison failed: nothing found, the batch written anyway


@dataclass(frozen=True)
class ModelComparison:
    """Compares each batch of models with the store just before the store replaces them.

    The check half of history's write hook (:mod:`ptmspiders.stores.writer`): it runs where
    the batches are written (the writer's process or thread) and with its store, one lookup per
    batch (and one for the hub_uids of new models), and no work at all on the crawl's critical
    path. A batch written after the comparison is what it compared, so no ordering between
    pipelines is needed. It holds only what it needs, so that it pickles.
    """

    crawl_id: str
    spider_name: str
    baseline: bool
    fields: tuple[str, ...]

    def __call__(self, store: Store, collection: str, docs: list[WriteDoc]) -> BatchHistory:
        try:
            return self.compare(store, docs)
        except Exception:
            # History must never cost the crawl its items: count, log, let the batch through.
            logger.exception("Could not compare %d models with the store", len(docs))
            return BatchHistory(failed=True)

    def compare(self, store: Store, docs: list[WriteDoc]) -> BatchHistory:
        """Counts and change records of a batch; writes the records (``changes``).

        Encoded documents are decoded only where they are compared or recorded, so a first
        crawl (every model new, nothing recorded per model) decodes none."""
        batch = BatchHistory()
        by_id = {doc_id(d): d for d in docs}
        lookup_fields = [*self.fields, "removed_at"]
        stored = store.get_many("models", list(by_id), fields=lookup_fields)
        baseline = self.baseline
        # Models not stored yet: a renamed repository is looked for among them (not in a first
        # crawl, where every model is one); each is decoded once, for that and its record.
        fresh = {} if baseline else {i: decoded(d) for i, d in by_id.items() if i not in stored}
        renamed_from = self._renames(store, list(fresh.values()))
        old_docs = store.get_many("models", list(set(renamed_from.values())),
                                  fields=lookup_fields) if renamed_from else {}
        at = now_iso()
        records: list[Doc] = []
        counts = batch.counts

        def record(doc: Doc, kind: str, changed: list[str] | None = None,
                   values: dict[str, Any] | None = None, lists: dict[str, Any] | None = None,
                   **extra: Any) -> None:
            counts[kind] = counts.get(kind, 0) + 1
            records.append(change_record(self.crawl_id, self.spider_name, doc, kind, at=at,
                                         changed=changed, values=values, lists=lists, **extra))

        for _id, written in by_id.items():
            old = stored.get(_id)
            if old is None and baseline:
                # A "new" record per model of a first crawl would only repeat the crawl record
                # and crawl.first_seen, and cost a third of the crawl's writes.
                counts["new"] = counts.get("new", 0) + 1
                continue
            doc = fresh[_id] if old is None else decoded(written)
            if old is None and _id in renamed_from:
                previous = renamed_from[_id]
                changed, values, lists = diff_docs(old_docs.get(previous, {}), doc, self.fields)
                record(doc, "renamed", changed, values, lists, renamed_from=previous)
                batch.renamed_away[previous] = _id
            elif old is None:
                record(doc, "new")
            else:
                changed, values, lists = diff_docs(old, doc, self.fields)
                if old.get("removed_at"):
                    values["removed_at"] = {"old": old["removed_at"], "new": None}
                    record(doc, "reappeared", ["removed_at", *changed], values, lists)
                elif changed:
                    record(doc, "changed", changed, values, lists)
                else:
                    counts["unchanged"] = counts.get("unchanged", 0) + 1
        if records:
            store.upsert("changes", records)
        batch.records = len(records)
        return batch

    @staticmethod
    def _renames(store: Store, new_docs: list[Doc]) -> dict[str, str]:
        """New id -> stored id of the same hub with the same ``hub_uid`` (a renamed repo)."""
        by_uid = {(d.get("hub"), d["hub_uid"]): d["_id"] for d in new_docs if d.get("hub_uid")}
        if not by_uid:
            return {}
        found = store.query(
            "models", {"hub_uid": {"$in": sorted({uid for _, uid in by_uid})},
                       "_id": {"$nin": sorted(by_uid.values())}},
            fields=["hub", "hub_uid"])
        out: dict[str, str] = {}
        for doc in found:
            new_id = by_uid.get((doc.get("hub"), doc.get("hub_uid")))
            if new_id is not None:
                out[new_id] = doc["_id"]
        return out
