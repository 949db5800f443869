"""Many workers, one crawl: scrapy-redis's scheduler and duplicate filter on a shared Redis
(``PTM_FRONTIER``).

What the workers share is **work items**, one per model: the request that starts a model's
work (a package, or a Hugging Face model's enrichment chain), marked with ``meta[WORK]`` (the
model's id). :class:`FrontierScheduler`, a subclass of scrapy-redis's ``Scheduler``, sends those
requests through scrapy-redis's ``RFPDupeFilter`` into its ``FifoQueue`` in Redis, and takes one
from there only when the worker has room for another model; every other request (the tree
listing, resolve calls, the chain's next steps) stays in the worker's own Scrapy scheduler,
since the model's state (file specs, budget, the item in ``cb_kwargs``) lives in the worker
that took it. Keys, under ``ptm:frontier:<spider>:<run>`` (``run``: a hash of the crawl's
arguments, so that every worker started with the same command shares one frontier and another
command gets its own):

- ``requests`` and ``dupefilter``: scrapy-redis's queue and fingerprints;
- ``workers`` (sorted set, worker -> heartbeat expiry) and ``held`` (hash, worker -> work items
  in hand): who is running, for the seeding rule and for watching progress;
- ``adding`` (``SET NX`` with an expiry its holder renews): a worker is seeding or listing, so
  the queue may still grow.

The first worker to join a frontier that has no live worker clears the queue and the
fingerprints and adds the work (``packages``: the selected models whose package is not
complete in the store; ``hf_models``: it lists the hub); the others join. A worker stops when
the queue has been empty, with nobody adding, for ``PTM_FRONTIER_IDLE_S`` seconds. A graceful
stop gives the worker's unfinished items back to the queue. A worker killed outright loses the
items it held for this run: the next run of the command, started when no worker is left,
re-seeds from the store exactly what is not complete. Requests are stored pickled, as
scrapy-redis does: the Redis server must be one the workers trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any, Self

import redis
from itemadapter import ItemAdapter
from redis.exceptions import RedisError
from scrapy import Request, Spider, signals
from scrapy.core.scheduler import BaseScheduler, Scheduler
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider, DontCloseSpider
from scrapy.statscollectors import StatsCollector
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.scheduler import Scheduler as RedisScheduler

from ptmspiders.config import ptm_settings, redacted
from ptmspiders.middlewares.ratelimit_redis import check_frontier, ping_frontier
from ptmspiders.stopping import stopping

logger = logging.getLogger(__name__)

KEY_PREFIX = "ptm:frontier"
CLOSE_REASON = "frontier_unavailable"
WORK = "ptm_work"  # meta: the work item's id, on the request that starts its work
SCHEDULER = f"{__name__}.FrontierScheduler"
_REDIS_ERRORS = (RedisError, OSError)

# KEYS: workers, held, adding, requests, dupefilter; ARGV: now, expiry, worker, adding ttl.
# Forgets the workers whose heartbeat expired, then joins; the first live worker clears the
# queue and fingerprints of an earlier run and takes the adding role (returns 1).
_JOIN = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for i = 1, #gone do redis.call('HDEL', KEYS[2], gone[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local first = redis.call('ZCARD', KEYS[1]) == 0
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], 0)
if first then
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
  return 1
end
return 0
"""
# KEYS: adding; ARGV: worker, seconds: the adding role renewed, if it is still this worker's.
_KEEP_ADDING = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: adding; ARGV: worker: the adding role given up, if it is still this worker's.
_STOP_ADDING = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def run_key(spider: str, params: dict[str, Any]) -> str:
    """The frontier's key prefix: one per spider and set of arguments."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    return f"{KEY_PREFIX}:{spider}:{digest.hexdigest()[:12]}"


class Frontier:
    """One worker's membership of a shared frontier: joining, heartbeats, the adding role and
    what it holds (sync Redis calls, each one short step). The work items themselves go
    through :class:`FrontierScheduler`."""

    def __init__(self, url: str, prefix: str, *, lease: float = 60.0) -> None:
        check_frontier(url)
        self.url = url
        self.prefix = prefix
        self.lease = lease
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client = redis.Redis.from_url(url, socket_connect_timeout=10, socket_timeout=30)
        self.keys = {k: f"{prefix}:{k}" for k in ("workers", "held", "adding", "requests",
                                                  "dupefilter")}
        self._join = self.client.register_script(_JOIN)
        self._keep_adding = self.client.register_script(_KEEP_ADDING)
        self._stop_adding = self.client.register_script(_STOP_ADDING)
        self.adding = False  # this worker seeds or lists: the queue may still grow

    def k(self, *names: str) -> list[str]:
        return [self.keys[n] for n in names]

    @property
    def adding_ttl(self) -> int:
        return max(int(self.lease), 3)

    def join(self) -> bool:
        """Join the frontier; True when this worker is the first live one (then it adds the
        work, on a queue and duplicate filter cleared of any earlier run)."""
        now = time.time()
        first = bool(self._join(keys=self.k("workers", "held", "adding", "requests",
                                            "dupefilter"),
                                args=[now, now + self.lease, self.worker, self.adding_ttl]))
        self.adding = first
        return first

    def heartbeat(self) -> None:
        """This worker is alive (and, if it adds work, still adding)."""
        self.client.zadd(self.keys["workers"], {self.worker: time.time() + self.lease})
        if self.adding:
            self._keep_adding(keys=self.k("adding"), args=[self.worker, self.adding_ttl])

    def adding_done(self) -> None:
        """This worker adds no more work."""
        if self.adding:
            self.adding = False
            self._stop_adding(keys=self.k("adding"), args=[self.worker])

    def holds(self, n: int) -> None:
        self.client.hset(self.keys["held"], self.worker, n)

    def sizes(self) -> tuple[int, bool]:
        """(work items queued, whether some worker is still adding work)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys["requests"])
            pipe.exists(self.keys["adding"])
            queued, adding = pipe.execute()
        return int(queued), bool(adding)

    def leave(self) -> None:
        self.adding_done()
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys["workers"], self.worker)
            pipe.hdel(self.keys["held"], self.worker)
            pipe.execute()

    def close(self) -> None:
        self.client.close()


class FrontierWorker:
    """A spider's side of the frontier: joins when the spider opens, says which requests hold
    how many work items, gives room for ``limit`` at a time, keeps the crawl open while work
    may still come and closes it once the frontier has stayed empty for
    ``PTM_FRONTIER_IDLE_S`` seconds."""

    def __init__(self, crawler: Crawler, url: str, prefix: str, *, lease: float,
                 idle: float, limit: int) -> None:
        self.crawler = crawler
        self.url, self.prefix, self.lease, self.idle, self.limit = url, prefix, lease, idle, limit
        self._frontier: Frontier | None = None
        self.failed = False
        self.heart: Any = None
        self.taken: dict[str, Request] = {}  # work items in hand, by id: given back at close
        self.idle_since: float | None = None
        self.scheduler: FrontierScheduler | None = None  # set when the crawl's engine opens
        crawler.signals.connect(self.opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(self.item_settled, signal=signals.item_scraped)
        crawler.signals.connect(self.item_settled, signal=signals.item_dropped)
        crawler.signals.connect(self.item_settled, signal=signals.item_error)
        crawler.signals.connect(self.closed, signal=signals.spider_closed)

    @classmethod
    def from_settings(cls, crawler: Crawler, spider_name: str, params: dict[str, Any], *,
                      limit: int) -> Self | None:
        """The worker for this crawl (Redis is asked when the spider opens), or None when
        ``PTM_FRONTIER`` is empty."""
        config = ptm_settings(crawler)
        if not config.frontier:
            return None
        return cls(crawler, config.frontier, run_key(spider_name, params),
                   lease=config.frontier_lease_s, idle=config.frontier_idle_s, limit=limit)

    @property
    def frontier(self) -> Frontier:
        if self._frontier is None:
            raise RuntimeError("the frontier is used before the spider opened")
        return self._frontier

    @property
    def adding(self) -> bool:
        return self._frontier is not None and self._frontier.adding and not self.failed

    @property
    def stats(self) -> StatsCollector:
        assert self.crawler.stats is not None
        return self.crawler.stats

    def count(self, key: str, n: int = 1) -> None:
        self.stats.inc_value(f"ptm/frontier/{key}", n)

    def opened(self, spider: Spider) -> None:
        """Check that Redis answers and join, before any work: else one error line and the
        crawl closes (``frontier_unavailable``)."""
        from twisted.internet import task

        try:
            ping_frontier(self.url)
            frontier = Frontier(self.url, self.prefix, lease=self.lease)
            first = frontier.join()
        except (ValueError, *_REDIS_ERRORS) as exc:
            self.failed = True
            self.count("errors")
            from ptmspiders.spiders.base import mark_crawl_incomplete

            logger.error("%s", exc)
            mark_crawl_incomplete(self.crawler, CLOSE_REASON)
            raise CloseSpider(CLOSE_REASON) from None
        self._frontier = frontier
        logger.info("Frontier at %s: work items under %s (worker %s, %s)", redacted(self.url),
                    frontier.prefix, frontier.worker,
                    "the first: it adds the work" if first else "joining the running workers")
        self.heart = task.LoopingCall(self.beat)
        self.heart.start(self.lease / 3, now=False)

    def beat(self) -> None:
        try:
            self.frontier.heartbeat()
        except _REDIS_ERRORS as exc:
            logger.warning("Frontier: no heartbeat (tried again in %.0f s): %s",
                           self.lease / 3, exc)

    def fail(self, exc: BaseException) -> None:
        """Redis went away: take no more work, end the crawl incomplete (once)."""
        self.count("errors")
        if self.failed:
            return
        self.failed = True
        from ptmspiders.spiders.base import mark_crawl_incomplete

        logger.error("Frontier at %s unavailable (%s): taking no more work; a rerun resumes",
                     redacted(self.url), exc)
        mark_crawl_incomplete(self.crawler, CLOSE_REASON)

    def adding_done(self) -> None:
        if self._frontier is None or not self._frontier.adding:
            return
        try:
            self._frontier.adding_done()
        except _REDIS_ERRORS as exc:  # the role's expiry frees it
            self.fail(exc)

    # -- work items, for the scheduler ------------------------------------------------------
    def room(self) -> bool:
        """This worker may take another work item."""
        return (self._frontier is not None and not self.failed and len(self.taken) < self.limit
                and not stopping(self.crawler))

    def took(self, request: Request) -> None:
        self.taken[str(request.meta[WORK])] = request
        self.count("taken")
        self._held()

    def done(self, _id: str) -> None:
        """Work item ``_id`` is finished (if this worker holds it)."""
        if self.taken.pop(_id, None) is None:
            return
        self.count("done")
        self._held()

    def _held(self) -> None:
        try:
            self.frontier.holds(len(self.taken))
        except _REDIS_ERRORS as exc:
            self.fail(exc)

    def unfinished(self) -> list[Request]:
        """The work items in hand, to give back (the worker is closing)."""
        out, self.taken = list(self.taken.values()), {}
        return out

    def item_settled(self, item: Any, **kwargs: Any) -> None:
        """An item's record has passed (or left) the pipelines: its work item is done."""
        if stopping(self.crawler):
            # Records of a stopping crawl may be cut short (transfers cancelled): the item goes
            # back to the queue at close, and the worker that takes it next skips it if its
            # record is complete in the store.
            return
        _id = ItemAdapter(item).get("_id") if ItemAdapter.is_item(item) else None
        if isinstance(_id, str):
            self.done(_id)

    # -- when to stop -----------------------------------------------------------------------
    def spider_idle(self, spider: Spider) -> None:
        """Keep an idle worker open while work may still come; let it close once the queue
        has been empty, with nobody adding, for ``PTM_FRONTIER_IDLE_S`` seconds."""
        if self._frontier is None or self.failed or stopping(self.crawler):
            return
        self.idle_check()
        if self.taken and self.scheduler is not None:
            # Idle with work in hand: its requests were lost on the way (an error in a
            # callback); back to the queue, for this worker or another.
            lost = self.scheduler.give_back(self.unfinished())
            logger.warning("Frontier: %d work items were lost on the way in this worker; "
                           "they are back in the queue", lost)
            self.count("lost_on_the_way", lost)
        try:
            queued, adding = self.frontier.sizes()
        except _REDIS_ERRORS as exc:
            self.fail(exc)
            return
        if queued or adding or self.frontier.adding:
            self.idle_since = None
            raise DontCloseSpider
        now = time.monotonic()
        self.idle_since = self.idle_since or now
        if now - self.idle_since < self.idle:
            raise DontCloseSpider
        logger.info("Frontier %s: no work left for %.0f s (PTM_FRONTIER_IDLE_S): this worker "
                    "stops", self.prefix, self.idle)

    def idle_check(self) -> None:
        """Before an idle worker looks for work (a subclass ends its listing here)."""

    def closed(self, spider: Spider, reason: str) -> None:
        if self._frontier is None:
            return
        if self.heart is not None and self.heart.running:
            self.heart.stop()
        try:
            self.frontier.leave()
        except _REDIS_ERRORS as exc:
            logger.warning("Frontier: could not leave (its heartbeat expires in %.0f s): %s",
                           self.lease, exc)
        self.frontier.close()


class FrontierScheduler(RedisScheduler):
    """scrapy-redis's scheduler for the work items (``meta[WORK]``), Scrapy's own for every
    other request; a work item is taken from Redis only when the worker has room for it.
    Without a frontier (``PTM_FRONTIER`` empty), :meth:`from_crawler` gives Scrapy's
    scheduler."""

    def __init__(self, crawler: Crawler, worker: FrontierWorker, local: BaseScheduler) -> None:
        server = redis.Redis.from_url(worker.url, socket_connect_timeout=10, socket_timeout=30)
        prefix = worker.prefix
        super().__init__(server, persist=True, queue_key=f"{prefix}:requests",
                         queue_cls="scrapy_redis.queue.FifoQueue",
                         dupefilter=RFPDupeFilter(server, key=f"{prefix}:dupefilter"))
        # scrapy-redis 0.9 passes ``spider=`` to the stats (deprecated since Scrapy 2.15): the
        # worker counts what it would (``scheduler/enqueued/redis``, ``.../dequeued/redis``).
        self.stats = None
        self.worker = worker
        self.local = local
        worker.scheduler = self

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Any:
        local = Scheduler.from_crawler(crawler)
        worker = getattr(crawler.spider, "frontier", None)
        if not isinstance(worker, FrontierWorker):
            return local
        return cls(crawler, worker, local)

    def open(self, spider: Spider) -> Any:
        super().open(spider)
        return self.local.open(spider)

    def close(self, reason: str) -> Any:
        given_back = self.give_back(self.worker.unfinished())
        if given_back:
            logger.info("Frontier: %d unfinished work items given back to the queue",
                        given_back)
        self.server.close()
        return self.local.close(reason)

    def give_back(self, requests: Iterable[Request]) -> int:
        n = 0
        try:
            for request in requests:
                self.queue.push(request)  # no duplicate filter: it was seen when first added
                n += 1
        except _REDIS_ERRORS as exc:
            logger.warning("Frontier: could not give back unfinished work items (a rerun "
                           "re-seeds them): %s", exc)
        self.worker.count("given_back", n)
        return n

    def enqueue_request(self, request: Request) -> bool:
        if WORK not in request.meta:
            return self.local.enqueue_request(request)
        try:
            added = bool(super().enqueue_request(request))
        except _REDIS_ERRORS as exc:
            self.worker.count("add_failed")
            self.worker.fail(exc)
            return False
        except (ValueError, TypeError, pickle.PicklingError) as exc:  # not serialisable: a bug
            from ptmspiders.spiders.base import mark_crawl_incomplete

            self.worker.count("add_failed")
            logger.error("Frontier: work item %s could not be queued: %s",
                         request.meta[WORK], exc)
            mark_crawl_incomplete(self.worker.crawler, "frontier_add_failed")
            return False
        self.worker.count("added" if added else "filtered")
        if added:
            self.worker.stats.inc_value("scheduler/enqueued/redis")
        return added

    def next_request(self) -> Request | None:
        request = self.local.next_request()
        if request is not None or not self.worker.room():
            return request
        try:
            request = super().next_request()
        except _REDIS_ERRORS as exc:
            self.worker.fail(exc)
            return None
        if request is not None:
            self.worker.stats.inc_value("scheduler/dequeued/redis")
            self.worker.took(request)
        return request

    def has_pending_requests(self) -> bool:
        if self.local.has_pending_requests():
            return True
        if not self.worker.room():
            return False  # busy with what it holds; idle with it: lost (see spider_idle)
        try:
            return len(self.queue) > 0
        except _REDIS_ERRORS as exc:
            self.worker.fail(exc)
            return False

    def __len__(self) -> int:
        return len(self.local) + super().__len__()  # type: ignore[arg-type]
