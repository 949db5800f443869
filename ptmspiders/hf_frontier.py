"""Hugging Face enrichment on the shared frontier (``PTM_FRONTIER``, enrichment switched on).

Every worker runs the same ``scrapy crawl hf_models`` command. The first to join, the
**lister**, takes the hub's store lock and lists the hub as a single crawl does; each changed
model's enrichment chain (card -> files -> commits, the item in ``cb_kwargs``) starts with a
request it marks as a work item, so scrapy-redis's scheduler queues it in Redis and whichever
worker has room takes it; the chain's later requests stay in that worker
(:mod:`ptmspiders.frontier`). The others are workers of a distributed crawl: they list nothing,
take no store lock and infer no removals (``lists_hub`` False); the lister counts the models it
handed on as seen, so its removals stay right.

An item is done when its model record has gone through the pipelines. Workers stop when the
queue has been empty, with the listing over, for ``PTM_FRONTIER_IDLE_S`` seconds. A rerun
after a crash lists again: the incremental crawl re-adds exactly the models whose enrichment is
not stored for their current commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from scrapy import Request, Spider
from scrapy.http import Response
from twisted.python.failure import Failure

from ptmspiders import hf_enrichment
from ptmspiders.config import ptm_settings
from ptmspiders.frontier import WORK, FrontierWorker
from ptmspiders.items import ModelItem

if TYPE_CHECKING:
    from ptmspiders.spiders.base import PtmSpider

logger = logging.getLogger(__name__)

STEP_SETTINGS = ("PTM_HF_CARDS", "PTM_HF_FILES", "PTM_HF_COMMITS")


STEP = "ptm_work_step"  # meta: the enricher's callback and errback a work item runs


def as_work_item(spider: Spider, request: Request, _id: str) -> Request:
    """The chain's first request as a work item: its callbacks the spider's own (scrapy-redis
    stores a request with the names of its spider's methods), the enricher's in ``meta``;
    filtered by scrapy-redis, so a model listed twice (pages shifting) is enriched once."""
    assert callable(request.callback) and callable(request.errback)
    return request.replace(
        callback=spider.work_step, errback=spider.work_step_failed,  # type: ignore[attr-defined]
        dont_filter=False,
        meta={**request.meta, WORK: _id,
              STEP: (request.callback.__name__, request.errback.__name__)})


def run_step(spider: Spider, response: Response, **kwargs: Any) -> Any:
    """A work item's enrichment step (``HfModelsSpider.work_step``)."""
    return getattr(hf_enrichment.enricher(spider), response.meta[STEP][0])(response, **kwargs)


def run_step_failed(spider: Spider, failure: Failure) -> Any:
    """A work item's step that failed (``HfModelsSpider.work_step_failed``)."""
    request = failure.request  # type: ignore[attr-defined]
    return getattr(hf_enrichment.enricher(spider), request.meta[STEP][1])(failure)


class HfEnrichFrontier(FrontierWorker):
    """The frontier of one distributed ``hf_models`` crawl with enrichment."""

    spider: PtmSpider[Any]

    @classmethod
    def for_spider(cls, spider: PtmSpider[Any]) -> HfEnrichFrontier | None:
        """The frontier of this crawl: with ``PTM_FRONTIER`` set and an enrichment step on
        (a plain listing is one crawl's work in minutes: it needs no workers)."""
        if not any(spider.settings.getbool(name) for name in STEP_SETTINGS):
            return None
        found = cls.from_settings(spider.crawler, spider.name,
                                  spider.args.model_dump(mode="json"),
                                  limit=ptm_settings(spider.crawler).frontier_items)
        if found is not None:
            found.spider = spider
        return found

    @property
    def listing(self) -> bool:
        """This worker lists the hub (and its listing is not over)."""
        return self.adding

    def opened(self, spider: Spider) -> None:
        """Take the listing role or join as a worker, before the store lock is asked for
        (this handler is connected before the lock's)."""
        super().opened(spider)
        if self.listing:
            logger.info("Frontier %s: this worker lists the hub and adds the models to "
                        "enrich; every worker enriches them", self.prefix)
        else:
            # A worker of a distributed crawl: no listing, no lock, no removals.
            self.spider.lists_hub = False  # type: ignore[misc]
            logger.info("Frontier %s: another worker lists the hub; this one enriches",
                        self.prefix)

    def add(self, item: ModelItem) -> Iterator[Any]:
        """A listed model to enrich: its chain's first request, as a work item that any
        worker may take (seen by this crawl: no removal; its record is written elsewhere)."""
        self.spider.note_unchanged("models", item._id)
        for out in hf_enrichment.enricher(self.spider).start(item):
            if isinstance(out, Request):
                yield as_work_item(self.spider, out, item._id)
            else:
                yield out

    def idle_check(self) -> None:
        """The lister, idle with no listing page outstanding: its listing is over."""
        if self.listing and not self.spider.lists_outstanding:
            self.adding_done()
            logger.info("Frontier %s: listing done", self.prefix)
