"""Many workers, one crawl: a shared frontier of work items in Redis (``PTM_FRONTIER``).

A package job spans many requests whose state (:class:`ptmspiders.packages.crawler.Job`: file
specs, counters, the budget) lives in the worker's memory and cannot be serialised, so what the
workers share is not Scrapy requests but **work items**, one per selected model; each job's own
requests stay in the worker's scheduler. Keys, under ``ptm:frontier:<spider>:<run>`` (``run``:
a hash of the crawl's arguments, so that every worker started with the same command shares one
frontier and another command gets its own):

- ``queue`` (list): model ids waiting for a worker;
- ``leases`` (sorted set, id -> expiry) and ``owners`` (hash, id -> worker): items in progress.
  A worker renews its leases every third of ``PTM_FRONTIER_LEASE_S``; one that was killed stops
  renewing, and the next worker asking for work puts its expired items back at the head of the
  queue and takes them over;
- ``done`` (set): items this frontier finished (their record reached the store pipeline), the
  duplicate filter of the work items: an item is taken only if it is neither done nor leased;
- ``seeded`` (the seeding's id), ``seeding`` (a lock, ``SET NX`` with an expiry) and
  ``finished`` (the id of the seeding that ran out of work);
- for work that one worker adds as it lists (Hugging Face enrichment,
  :mod:`ptmspiders.hf_frontier`) rather than seeded from the store: ``items`` (hash, id ->
  the item's data), ``lister`` (the listing role, ``SET NX`` with an expiry its holder
  renews) and ``listed``.

The first worker to start takes ``seeding``, reads the store (the selected models whose package
is not yet complete) and pushes them with ``seeded`` in one transaction; the others wait for
``seeded`` and join. A worker stops when the queue has been empty and no item leased anywhere
(and no worker listing) for ``PTM_FRONTIER_IDLE_S`` seconds, and marks the frontier finished
(dropping ``done``, ``items`` and ``owners``): the next run of the command seeds it again
from the store, so a rerun after a crash does exactly what is not yet complete. Taking,
renewing, finishing and giving back are Lua scripts: atomic in Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Self

import redis
from itemadapter import ItemAdapter
from redis.exceptions import RedisError
from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from scrapy.statscollectors import StatsCollector

from ptmspiders.config import ptm_settings, redacted
from ptmspiders.middlewares.ratelimit_redis import check_frontier, ping_frontier
from ptmspiders.stopping import stopping

logger = logging.getLogger(__name__)

KEY_PREFIX = "ptm:frontier"
CLOSE_REASON = "frontier_unavailable"
_SEED_PUSH = 10_000  # ids per RPUSH when seeding

# KEYS: queue, leases, owners, done; ARGV: now, lease expiry, worker.
# Expired leases go back to the head of the queue; then the first item neither done nor leased.
_TAKE = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for i = #expired, 1, -1 do
  redis.call('ZREM', KEYS[2], expired[i])
  redis.call('HDEL', KEYS[3], expired[i])
  redis.call('LPUSH', KEYS[1], expired[i])
end
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then return {#expired, ''} end
  if redis.call('SISMEMBER', KEYS[4], id) == 0 and not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    redis.call('HSET', KEYS[3], id, ARGV[3])
    return {#expired, id}
  end
end
"""
# KEYS: leases, owners; ARGV: expiry, worker, ids...: the leases still this worker's, renewed.
_RENEW = """
local lost = 0
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[2] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
  else
    lost = lost + 1
  end
end
return lost
"""
# KEYS: lister; ARGV: worker, seconds: the listing role renewed, if it is still this worker's.
_KEEP_LISTER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: leases, owners, done; ARGV: worker, id. Done; the lease goes if it is still ours.
_ACK = """
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return redis.call('SADD', KEYS[3], ARGV[2])
"""
# KEYS: queue, leases, owners; ARGV: worker, ids...: this worker's unfinished items, given back.
_RELEASE = """
local n = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[1] then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('LPUSH', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"""
# KEYS: queue, leases, seeded, finished, lister, done, items, owners: marks the seeding finished
# if there is no work left and no worker is still listing (adding work); what only a running
# frontier needs (done ids, items' data) goes, so that a finished crawl leaves little in Redis.
_FINISH = """
if redis.call('LLEN', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[2]) == 0
    and redis.call('EXISTS', KEYS[5]) == 0 then
  local seeded = redis.call('GET', KEYS[3])
  if seeded then redis.call('SET', KEYS[4], seeded) end
  redis.call('DEL', KEYS[6], KEYS[7], KEYS[8])
  return 1
end
return 0
"""


def run_key(spider: str, params: dict[str, Any]) -> str:
    """The frontier's key prefix: one per spider and set of arguments."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    return f"{KEY_PREFIX}:{spider}:{digest.hexdigest()[:12]}"


class FrontierError(Exception):
    """Redis could not be reached or answered an error."""


class Frontier:
    """One worker's handle on the shared frontier (sync Redis calls: each is one short step)."""

    def __init__(self, url: str, prefix: str, *, lease: float = 60.0, idle: float = 30.0,
                 poll: float = 0.5) -> None:
        check_frontier(url)
        self.url = url
        self.prefix = prefix
        self.lease = lease
        self.idle = idle
        self.poll = poll
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client = redis.Redis.from_url(url, socket_connect_timeout=10, socket_timeout=30)
        self.keys = {k: f"{prefix}:{k}" for k in ("queue", "leases", "owners", "done",
                                                  "seeded", "seeding", "finished", "items",
                                                  "lister", "listed")}
        self._take = self.client.register_script(_TAKE)
        self._renew = self.client.register_script(_RENEW)
        self._ack = self.client.register_script(_ACK)
        self._release = self.client.register_script(_RELEASE)
        self._finish = self.client.register_script(_FINISH)
        self._keep_lister = self.client.register_script(_KEEP_LISTER)
        self.lister = False  # this worker lists (adds work items as it goes)
        self.held: set[str] = set()  # ids this worker has taken and not yet finished
        self.counts: dict[str, int] = {}

    def k(self, *names: str) -> list[str]:
        return [self.keys[n] for n in names]

    def note(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    # -- seeding -----------------------------------------------------------------------------
    def needs_seed(self) -> bool:
        """No seeding yet, or the last one ran out of work (a rerun): seed (again)."""
        seeded, finished = self.client.mget(self.k("seeded", "finished"))
        return seeded is None or seeded == finished

    def try_seed(self, todo: Callable[[], list[str]]) -> bool | None:
        """Seed with ``todo()`` if this worker gets the seeding lock (True), or None while
        another worker seeds; False when seeding is no longer needed."""
        if not self.needs_seed():
            return False
        lock_ttl = max(int(self.lease * 10), 600)
        if not self.client.set(self.keys["seeding"], self.worker, nx=True, ex=lock_ttl):
            return None
        try:
            if not self.needs_seed():  # seeded between the look and the lock
                return False
            ids = todo()
            seeding = uuid.uuid4().hex
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(*self.k("queue", "leases", "owners", "done", "items", "listed"))
                for first in range(0, len(ids), _SEED_PUSH):
                    pipe.rpush(self.keys["queue"], *ids[first:first + _SEED_PUSH])
                pipe.set(self.keys["seeded"], seeding)
                pipe.delete(self.keys["finished"])
                pipe.execute()
            self.note("seeded", len(ids))
            logger.info("Frontier %s seeded with %d work items", self.prefix, len(ids))
            return True
        finally:
            self.client.delete(self.keys["seeding"])

    # -- a worker that lists as it goes (Hugging Face enrichment) ----------------------------
    def claim_lister(self) -> bool:
        """Become the one worker that lists and adds work items (True), starting a new seeding
        when there is none or the last one finished; False when another worker lists, or the
        current seeding has been listed already (then this worker only takes items)."""
        if not self.client.set(self.keys["lister"], self.worker, nx=True,
                               ex=max(int(self.lease), 3)):
            return False
        seeded, finished, listed = self.client.mget(self.k("seeded", "finished", "listed"))
        if seeded is not None and seeded != finished and listed is not None:
            self.client.delete(self.keys["lister"])
            return False
        if seeded is None or seeded == finished:
            self.try_seed(list)
        self.lister = True
        return True

    def push(self, docs: dict[str, bytes]) -> None:
        """Work items with their data (id -> bytes), at the end of the queue."""
        if not docs:
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys["items"], mapping=docs)  # type: ignore[arg-type]
            pipe.rpush(self.keys["queue"], *docs)
            pipe.execute()
        self.note("pushed", len(docs))

    def listing_done(self) -> None:
        """This worker's listing is over: no more items will come from it."""
        if not self.lister:
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys["listed"], self.worker)
            pipe.delete(self.keys["lister"])
            pipe.execute()
        self.lister = False

    def data(self, _id: str) -> bytes | None:
        """The data pushed with work item ``_id``."""
        found = self.client.hget(self.keys["items"], _id)
        return found if isinstance(found, bytes) else None

    # -- work items --------------------------------------------------------------------------
    def take(self) -> str | None:
        now = time.time()
        expired, found = self._take(keys=self.k("queue", "leases", "owners", "done"),
                                    args=[now, now + self.lease, self.worker])
        if expired:
            self.note("expired_leases", int(expired))
            logger.warning("Frontier: %d work items of a worker that stopped renewing its "
                           "leases are back in the queue", expired)
        if not found:
            return None
        _id = found.decode() if isinstance(found, bytes) else str(found)
        self.held.add(_id)
        self.note("taken")
        return _id

    def renew(self) -> None:
        if self.lister:
            self._keep_lister(keys=self.k("lister"), args=[self.worker, max(int(self.lease), 3)])
        if not self.held:
            return
        lost = self._renew(keys=self.k("leases", "owners"),
                           args=[time.time() + self.lease, self.worker, *sorted(self.held)])
        if lost:
            self.note("leases_lost", int(lost))
            logger.warning("Frontier: %d leases of this worker expired and went to another "
                           "worker (was this worker stalled longer than PTM_FRONTIER_LEASE_S?)",
                           lost)

    def ack(self, _id: str) -> None:
        if _id not in self.held:
            return
        self.held.discard(_id)
        self._ack(keys=self.k("leases", "owners", "done"), args=[self.worker, _id])
        self.note("done")

    def release(self, ids: Iterable[str] | None = None) -> int:
        """Give back unfinished items (all held ones by default) to the head of the queue."""
        ids = sorted(self.held if ids is None else ids)
        self.held.difference_update(ids)
        if not ids:
            return 0
        n = int(self._release(keys=self.k("queue", "leases", "owners"), args=[self.worker, *ids]))
        self.note("released", n)
        return n

    def sizes(self) -> tuple[int, int]:
        """(items queued, items leased), across all workers."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys["queue"])
            pipe.zcard(self.keys["leases"])
            queued, leased = pipe.execute()
        return int(queued), int(leased)

    def finish(self) -> bool:
        """Mark the seeding finished if no work is left anywhere (True), atomically."""
        return bool(self._finish(keys=self.k("queue", "leases", "seeded", "finished", "lister",
                                             "done", "items", "owners")))

    def close(self) -> None:
        self.client.close()


class FrontierWorker:
    """Drives a spider's work from a :class:`Frontier`: seeds or joins, takes items as the
    spider has room, renews leases, acks each item once its record has passed the pipelines,
    gives back unfinished items at close, and stops when the frontier has stayed empty."""

    def __init__(self, crawler: Crawler, url: str, prefix: str, *, lease: float,
                 idle: float) -> None:
        self.crawler = crawler
        self.release_on_ack: asyncio.Semaphore | None = None  # a slot per item, freed when done
        self.url, self.prefix, self.lease, self.idle = url, prefix, lease, idle
        self._frontier: Frontier | None = None
        self.failed = False
        self.renewer: Any = None
        crawler.signals.connect(self.opened, signal=signals.spider_opened)
        crawler.signals.connect(self.item_settled, signal=signals.item_scraped)
        crawler.signals.connect(self.item_settled, signal=signals.item_dropped)
        crawler.signals.connect(self.item_settled, signal=signals.item_error)
        crawler.signals.connect(self.closed, signal=signals.spider_closed)

    @classmethod
    def from_settings(cls, crawler: Crawler, spider_name: str,
                      params: dict[str, Any]) -> Self | None:
        """The worker for this crawl (Redis is asked when the spider opens), or None when
        ``PTM_FRONTIER`` is empty."""
        config = ptm_settings(crawler)
        if not config.frontier:
            return None
        return cls(crawler, config.frontier, run_key(spider_name, params),
                   lease=config.frontier_lease_s, idle=config.frontier_idle_s)

    @property
    def frontier(self) -> Frontier:
        if self._frontier is None:
            raise RuntimeError("the frontier is used before the spider opened")
        return self._frontier

    @property
    def stats(self) -> StatsCollector:
        assert self.crawler.stats is not None
        return self.crawler.stats

    def opened(self, spider: Spider) -> None:
        """Check the settings and that Redis answers, before any work: else one error line
        and the crawl closes (``frontier_unavailable``)."""
        try:
            ping_frontier(self.url)  # the lease and idle bounds are the settings' rules
            frontier = Frontier(self.url, self.prefix, lease=self.lease, idle=self.idle)
        except ValueError as exc:
            self.failed = True
            self.stats.inc_value("ptm/frontier/errors")
            from ptmspiders.spiders.base import mark_crawl_incomplete

            logger.error("%s", exc)
            mark_crawl_incomplete(self.crawler, CLOSE_REASON)
            raise CloseSpider(CLOSE_REASON) from None
        self._frontier = frontier
        logger.info("Frontier at %s: work items under %s (worker %s)", redacted(self.url),
                    frontier.prefix, frontier.worker)

    def _fail(self, exc: BaseException) -> None:
        """Redis went away: take no more work, end the crawl incomplete (once)."""
        self.stats.inc_value("ptm/frontier/errors")
        if self.failed:
            return
        self.failed = True
        from ptmspiders.spiders.base import mark_crawl_incomplete

        logger.error("Frontier at %s unavailable (%s): taking no more work; a rerun resumes",
                     redacted(self.url), exc)
        mark_crawl_incomplete(self.crawler, CLOSE_REASON)

    async def items(self, todo: Callable[[], list[str]] | None, slots: asyncio.Semaphore,
                    stopping: Callable[[], bool], tick: Callable[[], None] | None = None,
                    ) -> AsyncIterator[str | None]:
        """The ids this worker is to do, each with one of ``slots`` taken for it (the caller
        releases it when the item is finished); ``None`` while it waits for work (a tick, so
        that the caller can hand on finished records). The first worker seeds the frontier
        with ``todo()`` (``None``: a listing worker adds the work; ``tick`` runs before each
        look for work). Ends when the frontier has been empty, with no item leased and no
        worker listing anywhere, for ``PTM_FRONTIER_IDLE_S`` seconds."""
        from twisted.internet import task

        if self._frontier is None or self.failed:
            return
        f = self._frontier
        try:
            while todo is not None:  # seed, or wait for the worker that seeds
                seeded = f.try_seed(todo)  # on the crawl's thread: the store is
                if seeded is not None:
                    break
                if stopping():
                    return
                yield None
                await asyncio.sleep(f.poll)
        except (RedisError, OSError) as exc:
            self._fail(exc)
            return
        self.renewer = task.LoopingCall(self._renew)
        self.renewer.start(f.lease / 3, now=False)
        idle_since: float | None = None
        while not stopping():
            await slots.acquire()
            try:
                if tick is not None:
                    tick()
                _id = f.take()
                queued, leased = (0, 0) if _id else f.sizes()
            except (RedisError, OSError) as exc:
                slots.release()
                self._fail(exc)
                return
            if _id is not None:
                idle_since = None
                yield _id
                continue
            slots.release()
            if queued or leased:
                idle_since = None
            else:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= f.idle:
                    try:
                        if f.finish():
                            logger.info("Frontier %s: no work left for %.0f s "
                                        "(PTM_FRONTIER_IDLE_S): this worker stops", f.prefix,
                                        f.idle)
                            return
                    except (RedisError, OSError) as exc:
                        self._fail(exc)
                        return
                    idle_since = None
            yield None
            await asyncio.sleep(f.poll)

    def _renew(self) -> None:
        try:
            self.frontier.renew()
        except (RedisError, OSError) as exc:
            logger.warning("Frontier: could not renew leases (tried again in %.0f s): %s",
                           self.frontier.lease / 3, exc)

    def item_settled(self, item: Any, **kwargs: Any) -> None:
        """An item's record has passed (or left) the pipelines: its work item is done."""
        if stopping(self.crawler):
            # Records of a stopping crawl may be cut short (transfers cancelled): the item goes
            # back to the queue at close, and the worker that takes it next skips it if its
            # record is complete in the store.
            return
        _id = ItemAdapter(item).get("_id") if ItemAdapter.is_item(item) else None
        if isinstance(_id, str):
            self.ack(_id)

    def ack(self, _id: str) -> None:
        """Work item ``_id`` is done (if this worker holds it)."""
        if self._frontier is None or _id not in self._frontier.held:
            return
        if self.release_on_ack is not None:
            self.release_on_ack.release()
        try:
            self.frontier.ack(_id)
        except (RedisError, OSError) as exc:  # its lease expires; another worker redoes it
            self._fail(exc)

    def closed(self, spider: Spider, reason: str) -> None:
        if self._frontier is None:
            return
        if self.renewer is not None and self.renewer.running:
            self.renewer.stop()
        f = self.frontier
        try:
            given_back = f.release()
        except (RedisError, OSError) as exc:
            given_back = 0
            logger.warning("Frontier: could not give back %d unfinished items (their leases "
                           "expire in %.0f s): %s", len(f.held), f.lease, exc)
        if given_back:
            logger.info("Frontier: %d unfinished work items given back to the queue",
                        given_back)
        for key, value in f.counts.items():
            self.stats.set_value(f"ptm/frontier/{key}", value)
        f.close()

