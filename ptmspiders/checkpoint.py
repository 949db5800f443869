"""Listing checkpoints that make a ``JOBDIR`` crawl resumable after a ``SIGKILL``.

Scrapy's own ``JOBDIR`` state survives only a graceful stop: the disk queues write their
bookkeeping on close, and items still buffered by ``StorePipeline`` die with the process while
their page already counts as crawled. So a hard kill could lose both pending requests and
buffered items.

Design: a listing (the paged catalogue a spider walks) advances its checkpoint only when the
models of a page are durable. The spider registers each list page as it parses it: the ids it
yields and the URL of the next page (:meth:`Checkpoints.page`). ``StorePipeline`` reports ids
after each flush has committed them (:meth:`Checkpoints.settled`); dropped or failed items count
as settled too, since they will never be stored. When every id of the oldest pending pages is
settled, the checkpoint moves to the next page's URL and is written atomically (temporary file,
fsync, rename) to ``JOBDIR/ptm-checkpoints.json``. A restarted crawl starts each listing at its
checkpoint; pages after it are fetched again and their models upserted, so the store holds each
model once. Without ``JOBDIR`` all of this is off. What Scrapy itself keeps in ``JOBDIR`` is
reset after a kill (:class:`KilledRunRecovery`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from ptmspiders.config import ptm_settings

logger = logging.getLogger(__name__)

FILENAME = "ptm-checkpoints.json"


@dataclass
class _Page:
    next_url: str | None
    pending: set[str] = field(default_factory=set)


class Checkpoints:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.state: dict[str, dict[str, Any]] = {}
        self.pages: dict[str, deque[_Page]] = {}
        self.waiting: dict[str, list[_Page]] = {}  # id -> pages still waiting for it
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self.state = dict(data.get("listings", {}))
            except (OSError, ValueError, AttributeError) as exc:
                raise ValueError(f"unreadable checkpoint file {path}: {exc}") from exc

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def resume(self, listing: str) -> tuple[bool, str | None]:
        """(done, next URL) of a listing from an earlier run; (False, None) if none."""
        entry = self.state.get(listing)
        if not entry:
            return False, None
        return bool(entry.get("done")), entry.get("next")

    def page(self, listing: str, ids: Iterable[str], next_url: str | None) -> None:
        """A list page was parsed: ``ids`` must be durable before ``next_url`` is recorded."""
        if not self.enabled:
            return
        page = _Page(next_url, set(ids))
        for _id in page.pending:
            self.waiting.setdefault(_id, []).append(page)
        self.pages.setdefault(listing, deque()).append(page)
        self._advance()

    def settled(self, ids: Iterable[str]) -> None:
        """These ids are stored (or will never be): pages waiting only for them are done."""
        if not self.enabled or not self.waiting:
            return
        for _id in ids:
            for page in self.waiting.pop(_id, ()):
                page.pending.discard(_id)
        self._advance()

    def _advance(self) -> None:
        changed = False
        for listing, pages in self.pages.items():
            while pages and not pages[0].pending:
                done = pages.popleft()
                entry = self.state.setdefault(listing, {"pages": 0})
                entry["pages"] = int(entry.get("pages", 0)) + 1
                entry["next"] = done.next_url
                entry["done"] = done.next_url is None
                changed = True
        if changed:
            self._save()

    def _save(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump({"version": 1, "listings": self.state}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


RUNNING = "ptm-running"  # present in JOBDIR while a crawl runs; a clean close removes it
SCRAPY_STATE = ("requests.queue", "requests.seen")


class KilledRunRecovery:
    """Discards the request queue and seen-requests file a killed run left in ``JOBDIR``.

    Scrapy writes its disk queues' bookkeeping (``active.json``, a queue's size header or
    ``info.json``) only on a clean close. After a ``SIGKILL`` the queue files hold records
    their bookkeeping does not describe: reopening them crashed the first push of a resumed
    crawl (``struct.error`` in queuelib), which lost the listing's next page, or would replay
    stale requests. The seen-requests file may name requests that died in that queue, which the
    dupefilter would then drop for good. The listing checkpoints, written atomically, are what a
    killed crawl resumes from, so this state is removed before the scheduler opens it.
    A graceful stop (one Ctrl-C) still resumes from Scrapy's own queue.
    """

    def __init__(self, crawler: Crawler, jobdir: Path) -> None:
        assert crawler.stats is not None
        self.stats = crawler.stats
        self.sentinel = jobdir / RUNNING
        self.discarded: list[str] = []
        if self.sentinel.exists():
            for name in SCRAPY_STATE:
                path = jobdir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
                else:
                    continue
                self.discarded.append(name)
            logger.warning("The last crawl in %s did not stop cleanly (killed?): discarded "
                           "Scrapy's state (%s); listings resume from their checkpoints",
                           jobdir, ", ".join(self.discarded) or "none left")
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        # spider_closed is sent after the scheduler has closed (and saved its queue).
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> KilledRunRecovery:
        jobdir = crawler.settings.get("JOBDIR")
        if not jobdir or not ptm_settings(crawler).killed_run_recovery_enabled:
            raise NotConfigured
        return cls(crawler, Path(jobdir))

    def spider_opened(self) -> None:
        # Only once the crawl runs: a run that failed to start leaves Scrapy's state alone.
        self.sentinel.parent.mkdir(parents=True, exist_ok=True)
        self.sentinel.write_text(f"{os.getpid()}\n")
        if self.discarded:
            self.stats.set_value("ptm/jobdir/killed_run_state_discarded", len(self.discarded))

    def spider_closed(self) -> None:
        self.sentinel.unlink(missing_ok=True)
