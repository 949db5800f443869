"""One listing crawl of a hub at a time on a store: a lock that lives in the store.

Two crawls that list the same hub into one store overwrite each other's models, and the one
that ends second marks as removed what the first one stored after it began. So a spider that
lists its whole hub (``PtmSpider.lists_hub``, and no argument that restricts the listing)
takes the hub's lock, the document ``listing:<hub>`` of the store's ``locks`` collection,
before it writes anything:

- taken in one atomic step of the store (:meth:`ptmspiders.stores.base.Store.take_lock`), with
  the holder's crawl id, spider, host, pid and start;
- renewed while the crawl runs (a heartbeat every third of ``PTM_LOCK_TTL``, on its own thread
  and store connection, so a busy store never holds the crawl up), and released when the
  engine stops; a holder killed without releasing it loses it when its heartbeat expires, or
  at once to a crawl on the same host that finds its pid gone;
- a second crawl waits up to ``PTM_LOCK_WAIT`` seconds for it (Ctrl-C ends the wait), then
  refuses to crawl (finish reason ``store_locked``, ``scrapy crawl`` exit status 4), naming
  the holder.

A crawl that loses its lock while it runs (its heartbeat could not reach the store for a whole
``PTM_LOCK_TTL``, and another crawl took over) is marked incomplete: it marks no removals.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import Spider, signals
from scrapy.exceptions import CloseSpider, NotConfigured

from ptmspiders.config import ptm_settings
from ptmspiders.context import crawl_context, now_iso
from ptmspiders.spiders.base import mark_crawl_incomplete
from ptmspiders.stores import Store, redact_uri
from ptmspiders.stores.base import Doc

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

REFUSED_REASON = "store_locked"  # the finish reason of a crawl that did not get the lock
UNAVAILABLE_REASON = "store_unavailable"  # ... of one that could not ask the store for it
_POLL_SECONDS = 1.0


def lock_name(hub: str) -> str:
    return f"listing:{hub}"


def this_host() -> str:
    return socket.gethostname()


@functools.cache
def pid_space() -> str:
    """Where this process's pid means something: this boot of the host and its pid namespace
    (Linux), so that two containers that share a host name never judge each other's pids;
    empty where that cannot be told."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def pid_alive(pid: Any) -> bool:
    """Whether a process ``pid`` runs on this host (one we may not signal runs too)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_gone(doc: Doc) -> bool:
    """Whether the process a lock or crawl record names (``host``, ``pid_space``, ``pid``)
    ran where this one runs and no longer exists. Elsewhere its pid says nothing: False."""
    return (doc.get("host") == this_host() and bool(pid_space())
            and doc.get("pid_space") == pid_space() and not pid_alive(doc.get("pid")))


def describe(doc: Doc) -> str:
    """The holder of a lock, for a person: which crawl, where, since when."""
    return (f"crawl {doc.get('holder')} (spider {doc.get('spider')}, pid {doc.get('pid')} on "
            f"host {doc.get('host')}, started {doc.get('started_at')}, last heartbeat "
            f"{doc.get('heartbeat_at')})")


@dataclass
class Holder:
    """Who asks for a lock: the crawl's id (that of its ``crawls`` record) and where it runs."""

    id: str
    spider: str
    hub: str
    host: str
    pid: int
    started_at: str
    pid_space: str = field(default_factory=pid_space)

    def doc(self) -> Doc:
        return {"holder": self.id, "spider": self.spider, "hub": self.hub, "host": self.host,
                "pid_space": self.pid_space, "pid": self.pid, "started_at": self.started_at,
                "heartbeat_at": now_iso()}


def try_acquire(store: Store, name: str, holder: Holder, *, ttl: float,
                now: float | None = None) -> Doc | None:
    """Take (or renew) lock ``name`` for ``holder``; ``None`` when it holds it now, else the
    document of the crawl that does. A holder on this host whose process is gone is taken
    over at once, without waiting for its heartbeat to expire."""
    at = time.time() if now is None else now
    current = store.take_lock(name, holder.doc(), now=at, ttl=ttl)
    if current is not None and process_gone(current):
        logger.warning("Taking over the lock %s from %s: its process is gone", name,
                       describe(current))
        current = store.take_lock(name, holder.doc(), now=at, ttl=ttl,
                                  replace=str(current.get("holder")))
    return current


def lock_not_taken(stats: Mapping[str, Any]) -> bool:
    """Whether the crawl closes because it did not get its lock: it must write nothing."""
    return any(stats.get(f"ptm/lock/{k}") for k in ("refused", "failed", "interrupted"))


@contextlib.contextmanager
def stop_signals() -> Iterator[list[int]]:
    """While the crawl waits for its lock, the reactor does not run, so Scrapy's handlers of
    Ctrl-C and SIGTERM could not act: these note the signal (the wait then ends) and Scrapy's
    come back afterwards. Outside the main thread, signals cannot be caught: no change."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    kinds = (signal.SIGINT, signal.SIGTERM)
    before = {kind: signal.getsignal(kind) for kind in kinds}
    for kind in kinds:
        signal.signal(kind, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for kind, handler in before.items():
            # None: a handler not set from Python, which cannot be put back; the default then.
            signal.signal(kind, signal.SIG_DFL if handler is None else handler)


class Heartbeat:
    """Renews a held lock every ``interval`` seconds until stopped, on a thread with its own
    store connection (or, for a store that must stay on the crawl's thread, on the reactor).
    ``lost`` is the document of the crawl that took the lock over, if one did."""

    def __init__(self, store: Store, name: str, holder: Holder, ttl: float) -> None:
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.interval = ttl / 3
        self.lost: Doc | None = None
        self.failures = 0
        self.using = threading.Lock()  # the thread and the crawl's last beat share a connection
        self.own_store = store.for_thread()
        self.store = self.own_store or store
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.loop: Any = None

    def start(self) -> None:
        if self.own_store is not None:
            self.thread = threading.Thread(target=self._run, name="ptm-lock-heartbeat",
                                           daemon=True)
            self.thread.start()
        else:
            from twisted.internet import task

            self.loop = task.LoopingCall(self.beat)
            self.loop.start(self.interval, now=False)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Renew the lock once; a failure is logged and tried again at the next beat."""
        try:
            with self.using:
                if self.lost is not None:
                    return
                current = self.store.take_lock(self.name, self.holder.doc(), now=time.time(),
                                               ttl=self.ttl)
        except Exception as exc:  # the store is away: the lock holds until it expires
            self.failures += 1
            logger.warning("Could not renew the lock %s: %s", self.name, exc)
            return
        if current is not None:
            self.lost = current
            logger.error("Lost the lock %s to %s", self.name, describe(current))

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def release(self) -> None:
        """Stop renewing and free the lock (if still held)."""
        self.stop()
        try:
            with self.using:
                if self.lost is None:
                    self.store.release_lock(self.name, self.holder.id)
        except Exception as exc:  # it expires after PTM_LOCK_TTL anyway
            logger.warning("Could not release the lock %s (it expires on its own): %s",
                           self.name, exc)
        finally:
            if self.own_store is not None:
                self.own_store.close()


class CrawlLock:
    """Takes the hub's lock before a listing crawl writes, renews it, releases it."""

    def __init__(self, crawler: Crawler, wait: float, ttl: float) -> None:
        assert crawler.stats is not None
        self.crawler = crawler
        self.stats = crawler.stats
        self.wait = wait
        self.ttl = ttl
        self.heartbeat: Heartbeat | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlLock:
        s = ptm_settings(crawler)
        if not s.lock_enabled:
            raise NotConfigured("PTM_LOCK_ENABLED is off")
        if not s.store_enabled:
            raise NotConfigured("no store to lock (PTM_STORE_ENABLED is off)")
        ext = cls(crawler, s.lock_wait, s.lock_ttl)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    def needs_lock(self, spider: Spider) -> bool:
        from ptmspiders.history import is_restricted

        return (bool(getattr(spider, "lists_hub", False)) and bool(getattr(spider, "hub", None))
                and not is_restricted(spider))

    def spider_opened(self, spider: Spider) -> None:
        """Take the lock before anything is written, waiting up to ``PTM_LOCK_WAIT``.

        Blocking: nothing of the crawl runs before its spider is open, and the other
        ``spider_opened`` handlers (history's "running" record, first) must come after."""
        if not self.needs_lock(spider):
            return
        context = crawl_context(self.crawler)
        state = context.history
        hub = str(getattr(spider, "hub"))  # noqa: B009 (checked by needs_lock)
        holder = Holder(id=state.crawl_id, spider=spider.name, hub=hub, host=this_host(),
                        pid=os.getpid(), started_at=state.started_at)
        name = lock_name(hub)
        store = context.store
        with stop_signals() as stopped:
            self._acquire(store, name, holder, stopped)
        self.stats.set_value("ptm/lock/held", 1)
        logger.info("Holding the lock %s for crawl %s", name, holder.id)
        self.heartbeat = Heartbeat(store, name, holder, self.ttl)
        self.heartbeat.start()

    def _acquire(self, store: Store, name: str, holder: Holder, stopped: list[int]) -> None:
        """Take the lock or raise :class:`CloseSpider` (refused, store unavailable, or a stop
        signal while waiting)."""
        hub = holder.hub
        deadline = time.monotonic() + self.wait
        waited = False
        while True:
            if stopped:
                self.stats.set_value("ptm/lock/interrupted", 1)
                logger.error("Not crawling %s: stopped while waiting for its lock", hub)
                raise CloseSpider("shutdown")
            try:
                current = try_acquire(store, name, holder, ttl=self.ttl)
            except Exception as exc:  # without the lock, the crawl must not write
                self.stats.set_value("ptm/lock/failed", 1)
                logger.error("Not crawling %s: could not take its lock in %s: %s", hub,
                             redact_uri(store.uri), exc)
                raise CloseSpider(UNAVAILABLE_REASON) from exc
            if current is None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                self.stats.set_value("ptm/lock/refused", 1)
                logger.error(
                    "Not crawling %s: another crawl of it is writing to %s: %s. Two crawls "
                    "of one hub on one store would undo each other's changes and removals; "
                    "run this one when it has ended, or let it wait longer (PTM_LOCK_WAIT=%s "
                    "seconds now)", hub, redact_uri(store.uri), describe(current), self.wait)
                raise CloseSpider(REFUSED_REASON)
            if not waited:
                waited = True
                logger.warning("Waiting up to %.0f s (PTM_LOCK_WAIT) for the lock %s, held by %s",
                               self.wait, name, describe(current))
            time.sleep(min(_POLL_SECONDS, left))

    def spider_closed(self, spider: Spider, reason: str) -> None:
        """Before history infers removals (its handler comes after this one): a crawl that no
        longer holds its lock must not."""
        hb = self.heartbeat
        if hb is None:
            return
        if hb.lost is None:
            hb.beat()  # is it still ours? renewed for the removals to come
        if hb.lost is not None:
            self.stats.set_value("ptm/lock/lost", 1)
            mark_crawl_incomplete(self.crawler, "lock_lost")

    def engine_stopped(self) -> None:
        """After every spider_closed handler (history's removals): free the lock."""
        hb, self.heartbeat = self.heartbeat, None
        if hb is not None:
            hb.release()
