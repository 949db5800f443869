"""``scrapy crawl``, refusing wrong spider arguments in one line before the crawl starts, and
exiting non-zero when the crawl ended incomplete (see :mod:`ptmspiders.outcome` for the codes).

Scrapy creates the spider inside the crawl's asyncio task, where an exception raised by its
``__init__`` surfaces as a 20-line "Task exception was never retrieved" traceback. The
spider's parameter model (:mod:`ptmspiders.args`) is asked here first instead: a wrong value
or an unknown name is logged as one error line and the command exits with status 2 (a usage
error, as for Scrapy's own), with no crawl record written and no request sent. So is a setting
that breaks its rule (:mod:`ptmspiders.config`), a component (``-s 'EXTENSIONS={...}'`` and
the like) whose import path names nothing, an unknown spider, and a ``JOBDIR`` or local feed
file (``-o``) that cannot be written. A store (or Redis frontier) that cannot be opened or
reached is one error line and exit 1, before the crawl starts.

Scrapy's own command exits 0 whenever the spider could start, so a crawl whose hub refused
every connection looked like a success to cron. This one runs the crawl the same way, through
the public ``CrawlerProcess`` API, keeps the crawler, and reads the outcome from its final
stats."""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError
from scrapy.settings import BaseSettings
from scrapy.utils.misc import load_object

from ptmspiders.args import ArgumentError
from ptmspiders.config import PtmSettings, SettingsError
from ptmspiders.middlewares.ratelimit_redis import ping_frontier
from ptmspiders.outcome import EXIT_USAGE, crawl_problems, exit_status
from ptmspiders.spiders.base import PtmSpider
from ptmspiders.stores import (
    StoreError,
    driver_message,
    is_store_file,
    open_store,
    redact_uri,
)

logger = logging.getLogger(__name__)


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) < 1:
            raise UsageError
        if len(args) > 1:
            raise UsageError(
                "running 'scrapy crawl' with more than one spider is not supported")
        if self.arguments_refused(args[0], opts.spargs):
            self.exitcode = EXIT_USAGE
            return
        assert self.crawler_process is not None
        spiders = self.crawler_process.spider_loader.list()
        if args[0] not in spiders:  # Scrapy's KeyError here was a traceback
            logger.error("No spider %r: one of %s", args[0], ", ".join(sorted(spiders)))
            self.exitcode = EXIT_USAGE
            return
        try:
            crawler = self.crawler_process.create_crawler(args[0])
            config = PtmSettings.from_settings(crawler.settings)  # components read it later
            check_components(crawler.settings)
        except SettingsError as exc:
            logger.error("%s", exc)
            self.exitcode = EXIT_USAGE
            return
        jobdir = crawler.settings.get("JOBDIR")
        try:  # as Scrapy makes it; a file there failed its dupefilter with two tracebacks
            if jobdir:
                Path(jobdir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.error("JOBDIR=%s cannot be used: %s", jobdir, f"{exc.filename} is not a folder"
                         if isinstance(exc, FileExistsError) else exc)
            self.exitcode = EXIT_USAGE
            return
        for uri in crawler.settings.getdict("FEEDS"):
            problem = feed_problem(str(uri), config.store_uri)
            if problem:  # Scrapy failed at the first item: three tracebacks, and exit 0
                logger.error("Cannot write the feed %s: %s", uri, problem)
                self.exitcode = EXIT_USAGE
                return
        # Ctrl-C while a server does not answer: before Scrapy's handlers are in place. Like
        # those, it counts even when the shell started the command with SIGINT ignored (a
        # background job of a script).
        inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            problem = self.servers_problem(config)
        except KeyboardInterrupt:
            logger.error("Interrupted before the crawl started")
            self.exitcode = 130
            return
        finally:
            signal.signal(signal.SIGINT, inherited)
        if problem:
            logger.error("%s", problem)
            self.exitcode = 1
            return
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        stats = crawler.stats.get_stats() if crawler.stats is not None else {}
        self.exitcode = exit_status(stats)
        if self.exitcode:
            logger.error("Crawl %s did not do its whole job (%s): exit status %d", args[0],
                         ", ".join(crawl_problems(stats)) or "refused by the store's lock",
                         self.exitcode)

    @staticmethod
    def servers_problem(config: PtmSettings) -> str | None:
        """Why the crawl's frontier or store cannot be used (one line), or None. Redis first:
        opening a SQLite store creates its file, which a crawl that cannot start should not
        leave behind."""
        if config.frontier:
            try:
                ping_frontier(config.frontier)
            except ValueError as exc:  # Redis down or unreachable: the crawl cannot start
                return str(exc)
        if config.store_enabled or config.history_enabled or config.lock_enabled:
            problem = store_problem(config.store_uri)
            if problem:  # failed inside the crawl: three tracebacks (and MongoDB's 30 s)
                return problem
        return None

    def arguments_refused(self, spider: str, spargs: dict[str, str]) -> bool:
        """Whether the ``-a`` arguments are wrong for the spider (then logged in one line)."""
        if self.crawler_process is None:
            return False
        try:
            spidercls = self.crawler_process.spider_loader.load(spider)
        except KeyError:
            return False  # run() reports an unknown spider
        if not issubclass(spidercls, PtmSpider):
            return False
        try:
            spidercls.parse_args(spargs)
        except ArgumentError as exc:
            logger.error("%s", exc)
            return True
        return False


# Component dicts a user may give with -s, whose keys Scrapy (and, for three of them, the
# project's add-on) loads inside the crawl's task.
COMPONENT_SETTINGS = ("ADDONS", "DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "EXTENSIONS",
                      "ITEM_PIPELINES")


def check_components(settings: BaseSettings) -> None:
    """Raises :class:`SettingsError` for a component whose import path names nothing, which
    would otherwise fail inside the crawl's task, as a traceback, with exit status 0."""
    for name in COMPONENT_SETTINGS:
        for key in settings.getdict(name):
            if not isinstance(key, str):
                continue
            try:
                load_object(key)
            except (ImportError, NameError, ValueError) as exc:
                raise SettingsError(f"{name}: cannot load {key!r}: {exc}") from None


def feed_problem(uri: str, store_uri: str = "") -> str | None:
    """Why a local feed file (``-o``/``-O``) cannot be written: a folder, a file where a
    folder of its path should be, or a file of the SQLite store at ``store_uri`` (``-O``
    emptied it). None when it may be (or when it is not a local path, or names a folder
    through ``%(...)s`` placeholders Scrapy fills in later)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("", "file") or "%(" in uri:
        return None
    path = Path(parts.path if parts.scheme == "file" else uri)
    if path.is_dir():
        return "it is a folder"
    if is_store_file(store_uri, path):
        return "it is a file of the store (PTM_STORE_URI)"
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else f"{parent} is not a folder"
    return None


def store_problem(uri: str) -> str | None:
    """Why the store at ``uri`` cannot be used (one line), or None: it is opened and read
    once, so an unreachable MongoDB answers within its server selection timeout."""
    from pymongo.errors import PyMongoError

    try:
        with open_store(uri) as store:
            store.exists("crawls", {})
    except StoreError as exc:
        return str(exc)
    except (PyMongoError, sqlite3.Error) as exc:
        return f"Cannot use the store {redact_uri(uri)}: {driver_message(exc)}"
    return None
