"""Hugging Face enrichment on the shared frontier (``PTM_FRONTIER``, enrichment switched on).

Every worker runs the same ``scrapy crawl hf_models`` command. One of them, the **lister**,
takes the listing role in Redis (``SET NX``, renewed like a lease) and the hub's store lock,
lists the hub as a single crawl does, and instead of enriching each changed model itself adds
it to the frontier as a work item (the listed item, as JSON). Every worker, the lister too,
takes items and walks the enrichment chain (card -> files -> commits, the item in
``cb_kwargs``) in its own scheduler: the chain's requests never leave the worker, so an
item's state is never split. The others are workers of a distributed crawl: they list
nothing, take no store lock and infer no removals (``lists_hub`` False); the lister counts the
models it handed on as seen, so its removals stay right.

An item is done when its model record has gone through the pipelines. Workers stop when no
work has been left, no item leased and no worker listing for ``PTM_FRONTIER_IDLE_S`` seconds.
A rerun after a crash lists again: the incremental crawl re-adds exactly the models whose
enrichment is not stored for their current commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError
from scrapy import Spider

from ptmspiders.config import ptm_settings
from ptmspiders.frontier import FrontierWorker
from ptmspiders.items import ModelItem, to_doc
from ptmspiders.stopping import stopping

if TYPE_CHECKING:
    from ptmspiders.spiders.base import PtmSpider

logger = logging.getLogger(__name__)

STEP_SETTINGS = ("PTM_HF_CARDS", "PTM_HF_FILES", "PTM_HF_COMMITS")
_PUSH_BATCH = 500  # listed items handed on together, or after _PUSH_SECONDS
_PUSH_SECONDS = 1.0


class HfEnrichFrontier(FrontierWorker):
    """The frontier of one distributed ``hf_models`` crawl with enrichment."""

    spider: PtmSpider[Any]
    buffer: dict[str, bytes]
    flushed: float
    listing: bool = False  # this worker lists; its listing has not ended yet

    @classmethod
    def for_spider(cls, spider: PtmSpider[Any]) -> HfEnrichFrontier | None:
        """The frontier of this crawl: with ``PTM_FRONTIER`` set and an enrichment step on
        (a plain listing is one crawl's work in minutes: it needs no workers)."""
        if not any(spider.settings.getbool(name) for name in STEP_SETTINGS):
            return None
        found = cls.from_settings(spider.crawler, spider.name,
                                  spider.args.model_dump(mode="json"))
        if found is not None:
            found.spider = spider
        return found

    def opened(self, spider: Spider) -> None:
        """Take the listing role or join as a worker, before the store lock is asked for
        (this handler is connected before the lock's)."""
        super().opened(spider)
        self.buffer = {}
        self.flushed = time.monotonic()
        try:
            self.listing = self.frontier.claim_lister()
        except (RedisError, OSError) as exc:
            self._fail(exc)
            return
        if self.listing:
            logger.info("Frontier %s: this worker lists the hub and adds the models to "
                        "enrich; every worker enriches them", self.frontier.prefix)
        else:
            # A worker of a distributed crawl: no listing, no lock, no removals.
            self.spider.lists_hub = False  # type: ignore[misc]
            logger.info("Frontier %s: another worker lists the hub; this one enriches",
                        self.frontier.prefix)

    def add(self, item: ModelItem) -> None:
        """A listed model to enrich: to the frontier (in batches), seen by this crawl."""
        self.buffer[item._id] = orjson.dumps(to_doc(item))
        self.spider.note_unchanged("models", item._id)  # seen: no removal; written elsewhere
        if len(self.buffer) >= _PUSH_BATCH or time.monotonic() - self.flushed > _PUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.flushed = time.monotonic()
        docs, self.buffer = self.buffer, {}
        try:
            self.frontier.push(docs)
        except (RedisError, OSError) as exc:
            # Not handed on: not enriched by this run (the next run's listing re-adds them).
            self.stats.inc_value("ptm/frontier/push_failed", len(docs))
            self._fail(exc)

    def tick(self) -> None:
        """Before each look for work: hand on what was listed; end the listing role once
        the listing has no page outstanding."""
        if not self.listing:
            return
        self.flush()
        if not self.spider.lists_outstanding:
            self.listing = False
            self.frontier.listing_done()
            logger.info("Frontier %s: listing done", self.frontier.prefix)

    async def enrich(self, spider: PtmSpider[Any], start: Any) -> AsyncIterator[Any]:
        """What the worker yields from its frontier: each item's first enrichment requests
        (``start(item)``, the enricher's chain), as slots free up."""
        slots = asyncio.Semaphore(ptm_settings(spider.crawler).frontier_items)
        self.release_on_ack = slots
        async for _id in self.items(None, slots, lambda: stopping(self.crawler), self.tick):
            if _id is None:
                continue
            try:
                raw = self.frontier.data(_id)
            except (RedisError, OSError) as exc:
                self._fail(exc)
                return
            if raw is None:
                self.stats.inc_value("ptm/frontier/not_found")
                self.ack(_id)
                continue
            item = ModelItem(**orjson.loads(raw))
            for out in start(item):
                yield out
