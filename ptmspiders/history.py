"""Change history: what each crawl saw, and how every model changed between crawls.

- :class:`ModelComparison` compares each batch of models with the stored documents just
  before the store replaces them (a write hook, where the store's writer runs: one
  ``get_many`` per batch), counts each model as new, changed, unchanged, renamed or
  reappeared, and writes one ``changes`` record per model that is not unchanged: the changed
  fields, old and new values of scalars, items added/removed of lists.
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
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from ptmspiders.args import SpiderParams
from ptmspiders.changes import (
    IGNORED_FIELDS,
    BatchHistory,
    ModelComparison,
    change_record,
    is_scalar,
)
from ptmspiders.config import ptm_settings
from ptmspiders.context import CrawlContext, CrawlState, crawl_context, now_iso
from ptmspiders.crawllock import lock_not_taken, pid_space, process_gone, this_host
from ptmspiders.items import Doc, ModelItem, field_names
from ptmspiders.monitors import request_health
from ptmspiders.stores import Store

logger = logging.getLogger(__name__)

RECORDED_STATS_PREFIXES: tuple[str, ...] = (
    "ptm/", "item_scraped_count", "item_dropped_count", "downloader/request_count",
    "downloader/response_count", "downloader/response_status_count/", "log_count/ERROR",
    "log_count/WARNING", "retry/count", "elapsed_time_seconds",
)


def crawl_state(crawler: Crawler) -> CrawlState:
    """What history's write hook and extension of the crawl share (its context holds it)."""
    return crawl_context(crawler).history


class ModelHistory:
    """History's write hook for a crawl: a :class:`ModelComparison` for the writer, and what it
    found applied to the crawl's counts and stats on the crawl's thread."""

    def __init__(self, crawler: Crawler, state: CrawlState) -> None:
        assert crawler.stats is not None
        self.stats = crawler.stats
        self.state = state
        self.spider_name = str(getattr(crawler.spidercls, "name", "?"))

    def comparison(self) -> ModelComparison:
        """The check, for the crawl as it is now (its baseline is known from spider_opened)."""
        return ModelComparison(
            self.state.crawl_id, self.spider_name, self.state.baseline,
            tuple(f for f in field_names(ModelItem) if f not in IGNORED_FIELDS))

    def apply(self, batch: BatchHistory) -> None:
        if batch.failed:
            self.stats.inc_value("ptm/history/errors")
            return
        self.stats.inc_value("ptm/history/lookups")
        for kind, n in batch.counts.items():
            self.state.counts[kind] = self.state.counts.get(kind, 0) + n
            self.stats.inc_value(f"ptm/history/{kind}", n)
        if batch.records:
            self.stats.inc_value("ptm/history/records", batch.records)
        self.state.renamed_away.update(batch.renamed_away)


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
        if key.startswith(RECORDED_STATS_PREFIXES) and is_scalar(value):
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
        self.context.writer.add_hook("models", self.models.comparison(), self.models.apply)
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
                    self.state.crawl_id, spider.name, {"_id": _id, "hub": hub}, "removed",
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
                    self.state.crawl_id, spider.name, {"_id": _id, "hub": old[_id].get("hub")},
                    "reappeared", at=at, changed=["removed_at"],
                    values={"removed_at": {"old": old[_id].get("removed_at"), "new": None}}))
        return len(back)
