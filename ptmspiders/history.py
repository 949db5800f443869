"""Change history: what each crawl saw, and how every model changed between crawls.

- :class:`ModelHistory` compares each batch of models with the stored documents just before
  the store replaces them (a write hook, on the store writer's thread: one ``get_many`` per
  batch), counts each model as new, changed, unchanged, renamed or reappeared, and writes one
  ``changes`` record per model that is not unchanged: the changed fields, old and new values
  of scalars, items added/removed of lists.
- :class:`CrawlHistory` (an extension) installs that hook, writes one ``crawls`` record per
  run and, after a
  complete crawl (finished, not marked incomplete, no argument that restricts the listing:
  the spider's parameter model says which do, ``SpiderParams.restricted_by``),
  sets ``removed_at`` on the hub's models the crawl did not see. Nothing is ever deleted; a
  model seen again is stored without ``removed_at``. A record that a killed crawl left
  ``running`` is marked ``abandoned`` by the next crawl that can tell (``_abandon``). A crawl
  that another crawl of its hub refused (ptmspiders/crawllock.py) writes no record.

A model is "seen" when the spider emits it or, for catalogues whose files did not change,
calls ``PtmSpider.note_unchanged("models", _id)``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from ptmspiders.args import SpiderParams
from ptmspiders.config import ptm_settings
from ptmspiders.context import CrawlContext, CrawlState, crawl_context, now_iso
from ptmspiders.crawllock import lock_not_taken, pid_space, process_gone, this_host
from ptmspiders.items import Doc, ModelItem, field_names
from ptmspiders.monitors import request_health
from ptmspiders.stores import Store
from ptmspiders.stores.base import WriteDoc, decoded, doc_id

logger = logging.getLogger(__name__)

# Not compared: bookkeeping of the crawler (crawl, enrichment: which per-model steps ran at
# which sha), the hub's verbatim answer (raw, already parsed into the other fields), and
# removed_at, which has its own "reappeared" kind.
IGNORED_FIELDS = frozenset({"_id", "crawl", "enrichment", "raw", "removed_at"})
RECORDED_STATS_PREFIXES: tuple[str, ...] = (
    "ptm/", "item_scraped_count", "item_dropped_count", "downloader/request_count",
    "downloader/response_count", "downloader/response_status_count/", "log_count/ERROR",
    "log_count/WARNING", "retry/count", "elapsed_time_seconds",
)
_EMPTY: tuple[Any, ...] = (None, [], {})


def crawl_state(crawler: Crawler) -> CrawlState:
    """What history's write hook and extension of the crawl share (its context holds it)."""
    return crawl_context(crawler).history


# -- comparing documents -------------------------------------------------------------------------

def _is_scalar(value: Any) -> bool:
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
        if _is_scalar(o) and _is_scalar(n):
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
                if not _same(ov, nv) and _is_scalar(ov) and _is_scalar(nv):
                    values[f"{name}.{key}"] = {"old": ov, "new": nv}
        else:
            values[name] = {"old": o, "new": n}
    return changed, values, lists


def change_record(state: CrawlState, spider: str, doc: Mapping[str, Any], kind: str, *,
                  at: str, changed: list[str] | None = None,
                  values: dict[str, Any] | None = None, lists: dict[str, Any] | None = None,
                  **extra: Any) -> Doc:
    record: Doc = {
        "_id": f"{state.crawl_id}|{doc['_id']}",
        "crawl_id": state.crawl_id,
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


class ModelHistory:
    """Compares each batch of models with the store just before the store replaces them.

    Runs as a write hook of :class:`ptmspiders.stores.writer.BackgroundWriter`, on the writer's
    thread and with its store: one lookup per batch (and one for the hub_uids of new models),
    and no work at all on the crawl's critical path. A batch written after the comparison is
    what it compared, so no ordering between pipelines is needed.
    """

    def __init__(self, crawler: Crawler, state: CrawlState) -> None:
        assert crawler.stats is not None
        self.stats = crawler.stats
        self.state = state
        self.spider_name = str(getattr(crawler.spidercls, "name", "?"))
        self.fields = [f for f in field_names(ModelItem) if f not in IGNORED_FIELDS]
        self.lookup_fields = [*self.fields, "removed_at"]

    def before_write(self, store: Store, collection: str, docs: list[WriteDoc]) -> Any:
        """The write hook: compare, write the change records, hand back the counts."""
        try:
            batch = self.compare(store, docs)
        except Exception:
            # History must never cost the crawl its items: count, log, let the batch through.
            logger.exception("Could not compare %d models with the store", len(docs))
            return lambda: self.stats.inc_value("ptm/history/errors")
        return lambda: self.apply(batch)

    def apply(self, batch: BatchHistory) -> None:
        self.stats.inc_value("ptm/history/lookups")
        for kind, n in batch.counts.items():
            self.state.counts[kind] = self.state.counts.get(kind, 0) + n
            self.stats.inc_value(f"ptm/history/{kind}", n)
        if batch.records:
            self.stats.inc_value("ptm/history/records", batch.records)
        self.state.renamed_away.update(batch.renamed_away)

    def compare(self, store: Store, docs: list[WriteDoc]) -> BatchHistory:
        """Counts and change records of a batch; writes the records (``changes``).

        Encoded documents are decoded only where they are compared or recorded, so a first
        crawl (every model new, nothing recorded per model) decodes none."""
        batch = BatchHistory()
        by_id = {doc_id(d): d for d in docs}
        stored = store.get_many("models", list(by_id), fields=self.lookup_fields)
        baseline = self.state.baseline
        # Models not stored yet: a renamed repository is looked for among them (not in a first
        # crawl, where every model is one); each is decoded once, for that and its record.
        fresh = {} if baseline else {i: decoded(d) for i, d in by_id.items() if i not in stored}
        renamed_from = self._renames(store, list(fresh.values()))
        old_docs = store.get_many("models", list(set(renamed_from.values())),
                                  fields=self.lookup_fields) if renamed_from else {}
        at = now_iso()
        records: list[Doc] = []
        counts = batch.counts

        def record(doc: Doc, kind: str, changed: list[str] | None = None,
                   values: dict[str, Any] | None = None, lists: dict[str, Any] | None = None,
                   **extra: Any) -> None:
            counts[kind] = counts.get(kind, 0) + 1
            records.append(change_record(self.state, self.spider_name, doc, kind, at=at,
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


# -- the extension -------------------------------------------------------------------------------

def crawl_params(spider: Spider) -> SpiderParams:
    """The spider's validated arguments (none for a spider without a parameter model)."""
    args = getattr(spider, "args", None)
    return args if isinstance(args, SpiderParams) else SpiderParams()


def is_restricted(spider: Spider) -> bool:
    """Did the spider list only part of its hub? Its parameter model says."""
    return crawl_params(spider).restricted


def selected_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in stats.items():
        if key.startswith(RECORDED_STATS_PREFIXES) and _is_scalar(value):
            out[key.replace(".", "_").replace("$", "_")] = value
    return out


class CrawlHistory:
    """Writes the ``crawls`` record of a run and marks models a complete crawl did not see."""

    def __init__(self, crawler: Crawler, max_missing_ratio: float = 0.5,
                 chunk: int = 1000) -> None:
        assert crawler.stats is not None
        self.crawler = crawler
        self.stats = crawler.stats
        self.max_missing_ratio = max_missing_ratio
        self.chunk = chunk
        self.arguments: dict[str, Any] = {}
        self.skipped = False  # refused by the hub's lock: no record, nothing written

    # From spider_opened on: the crawl's context is an extension too, built with this one.
    @cached_property
    def context(self) -> CrawlContext:
        return crawl_context(self.crawler)

    @cached_property
    def state(self) -> CrawlState:
        return self.context.history

    @cached_property
    def models(self) -> ModelHistory:
        return ModelHistory(self.crawler, self.state)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlHistory:
        s = ptm_settings(crawler)
        if not s.history_enabled:
            raise NotConfigured("PTM_HISTORY_ENABLED is off")
        if not s.store_enabled:
            raise NotConfigured("history needs the store (PTM_STORE_ENABLED is off)")
        ext = cls(crawler, s.history_max_missing_ratio)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.item_dropped, signal=signals.item_dropped)
        return ext

    @property
    def locked(self) -> bool:
        """Whether this crawl holds its hub's lock (ptmspiders/crawllock.py)."""
        return bool(self.stats.get_value("ptm/lock/held"))

    def record(self, spider: Spider, **fields: Any) -> Doc:
        return {
            "_id": self.state.crawl_id,
            "spider": spider.name,
            "hub": getattr(spider, "hub", None),
            "arguments": self.arguments,
            "restricted": is_restricted(spider),
            "baseline": self.state.baseline,
            "started_at": self.state.started_at,
            # Where it runs, so that a later crawl can tell a record left "running" by a
            # killed process (see _abandon).
            "host": this_host(),
            "pid_space": pid_space(),
            "pid": os.getpid(),
            "locked": self.locked,
            **fields,
        }

    def spider_opened(self, spider: Spider) -> None:
        if lock_not_taken(self.stats.get_stats()):
            # Another crawl of the hub holds its lock, the store could not be asked for it, or
            # the crawl was stopped while it waited (ptmspiders/crawllock.py, whose handler
            # runs first): this crawl closes at once and writes nothing, not even its record.
            self.skipped = True
            return
        self.arguments = crawl_params(spider).recorded()
        hub = getattr(spider, "hub", None)
        self.state.baseline = self.context.first_crawl_of(hub) if hub else False
        self.context.writer.add_hook("models", self.models.before_write)
        store = self.context.store
        # Written at once, so a crawl killed half-way still leaves its trace.
        store.upsert("crawls", [self.record(
            spider, finished_at=None, finish_reason=None, complete=None, status="running")])
        self._abandon(store, hub)

    def _abandon(self, store: Store, hub: str | None) -> None:
        """Mark ``abandoned`` the records still ``running`` of crawls that are known to have
        died: a process gone from this host, or a listing crawl of the hub whose lock this
        crawl now holds (it had expired or its holder was gone)."""
        locked_hub = hub if self.locked else None
        gone: list[str] = []
        for rec in store.query("crawls", {"status": "running"},
                               fields=["host", "pid_space", "pid", "hub", "locked"]):
            if rec["_id"] == self.state.crawl_id:
                continue
            if process_gone(rec):
                why = f"its process {rec.get('pid')} is gone"
            elif locked_hub is not None and rec.get("locked") and rec.get("hub") == locked_hub:
                why = "this crawl holds the lock it held"
            else:
                continue
            logger.warning("Crawl %s did not end (%s): marking it abandoned", rec["_id"], why)
            gone.append(rec["_id"])
        if gone:
            store.set_fields("crawls", gone, {"status": "abandoned", "abandoned_at": now_iso(),
                                              "abandoned_by": self.state.crawl_id})
            self.stats.set_value("ptm/history/abandoned", len(gone))

    def item_dropped(self, item: Any, **kwargs: Any) -> None:
        if getattr(item, "collection", None) == "models":
            # Invalid this time, but the hub still lists it: not a removal.
            self.state.dropped.add(str(getattr(item, "_id", "")))

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.skipped:
            return
        try:
            self._close(spider, reason)
        except Exception as exc:  # the store failed: the crawl's outcome must say so
            logger.error("Could not write the history of the crawl %s: %s",
                         self.state.crawl_id, exc)
            logger.debug("History failure", exc_info=True)
            self.stats.inc_value("ptm/store/failed/crawls")

    def _close(self, spider: Spider, reason: str) -> None:
        self.context.sync_writes()  # the comparisons of the last batches, and what they saw
        # The close monitors, run now so that the record holds their verdict.
        health = request_health(self.crawler, spider)
        started = time.monotonic()
        store = self.context.store
        stats = self.stats.get_stats()
        hub = getattr(spider, "hub", None)
        restricted_by = crawl_params(spider).restricted_by()
        restricted = is_restricted(spider)
        incomplete = bool(stats.get("ptm/incomplete"))
        # A spider that does not list its whole hub (lists_hub False) cannot tell removals.
        complete = (reason == "finished" and not incomplete and not restricted
                    and bool(getattr(spider, "lists_hub", True)))
        finished_at = now_iso()
        noted = set(getattr(spider, "unchanged", {}).get("models", ()))
        counts = dict(self.state.counts)
        counts["unchanged"] = counts.get("unchanged", 0) + len(noted)
        records: list[Doc] = []
        counts["reappeared"] += self._clear_removed(store, noted, spider, finished_at, records)
        renamed_away = dict(self.state.renamed_away)
        missing: list[str] = []
        # A baseline crawl began with no stored model of its hub: none can be missing, and the
        # scan of the hub's models (all of them, at hub scale) is skipped.
        if complete and hub and not self.state.baseline:
            seen_elsewhere = noted | self.state.dropped | set(renamed_away)
            missing = [d["_id"] for d in store.query(
                "models", {"hub": hub, "removed_at": None,
                           "crawl.last_seen": {"$lt": self.state.started_at}},
                fields=["_id"]) if d["_id"] not in seen_elsewhere]
            listed_before = store.count("models", {"hub": hub, "removed_at": None})
            if missing and len(missing) > self.max_missing_ratio * listed_before:
                # An empty or truncated listing that still "finished" must not retire the hub.
                logger.error(
                    "Crawl of %s missed %d of %d stored models (over "
                    "PTM_HISTORY_MAX_MISSING_RATIO=%s): not marking them removed",
                    hub, len(missing), listed_before, self.max_missing_ratio)
                self.stats.set_value("ptm/history/removals_refused", len(missing))
                complete = False
                missing = []
        # A renamed repository's old id is gone whatever the crawl covered: the new id proves it.
        renamed_stored = store.get_many("models", list(renamed_away), fields=["removed_at"])
        gone = missing + [old for old, doc in renamed_stored.items() if not doc["removed_at"]]
        for start in range(0, len(gone), self.chunk):
            chunk = gone[start:start + self.chunk]
            store.set_fields("models", chunk, {"removed_at": finished_at})
            for _id in chunk:
                record = change_record(
                    self.state, spider.name, {"_id": _id, "hub": hub}, "removed",
                    at=finished_at, changed=["removed_at"],
                    values={"removed_at": {"old": None, "new": finished_at}})
                if _id in renamed_away:
                    record["renamed_to"] = renamed_away[_id]
                records.append(record)
            if len(records) >= self.chunk:
                store.upsert("changes", records)
                records = []
        store.upsert("changes", records)
        counts["missing"] = len(missing)
        self.stats.set_value("ptm/history/missing", len(missing))
        if complete:
            logger.info("Complete crawl of %s: %d models no longer listed, marked removed",
                        hub, len(missing))
        elif hub:
            logger.info("Crawl of %s not complete (reason %s, incomplete=%s, restricted=%s%s): "
                        "removals not inferred", hub, reason, incomplete, restricted,
                        f" by {', '.join(f'-a {n}' for n in restricted_by)}"
                        if restricted_by else "")
        store.upsert("crawls", [self.record(
            spider, finished_at=finished_at, finish_reason=reason, complete=complete,
            status="done", incomplete_reasons=list(getattr(spider, "incomplete_reasons", [])),
            counts=counts, health=health, stats=selected_stats(self.stats.get_stats()),
            history_seconds=round(time.monotonic() - started, 3))])

    def _clear_removed(self, store: Store, noted: set[str], spider: Spider, at: str,
                       records: list[Doc]) -> int:
        """Models noted unchanged (not re-emitted) that an earlier crawl marked removed."""
        back: list[str] = []
        ordered = sorted(noted)
        for start in range(0, len(ordered), self.chunk):
            back += [d["_id"] for d in store.query(
                "models", {"_id": {"$in": ordered[start:start + self.chunk]},
                           "removed_at": {"$ne": None}}, fields=["_id", "removed_at"])]
        if back:
            old = store.get_many("models", back, fields=["removed_at", "hub"])
            store.set_fields("models", back, {"removed_at": None})
            for _id in back:
                records.append(change_record(
                    self.state, spider.name, {"_id": _id, "hub": old[_id].get("hub")},
                    "reappeared", at=at, changed=["removed_at"],
                    values={"removed_at": {"old": old[_id].get("removed_at"), "new": None}}))
        return len(back)
