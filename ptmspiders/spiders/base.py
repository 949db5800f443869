"""What every hub spider shares: timestamps, JSON decoding with counted failures, paging."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast, get_args, get_origin

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from scrapy_spider_metadata import Args

from ptmspiders.args import SpiderParams, parse_params
from ptmspiders.context import crawl_context, now_iso
from ptmspiders.hub_answers import BadResponse, load_json
from ptmspiders.origins import REFUSED_REASON, RefusedLink, follow

logger = logging.getLogger(__name__)

LIST_URL_META = "ptm_list_url"  # the listing page a request asks for (its URL before redirects)


URL_TOO_LONG = "url_too_long"  # the gap a request too long for a URL leaves


def url_too_long(settings: BaseSettings, url: str) -> bool:
    """Longer than Scrapy's ``URLLENGTH_LIMIT`` (0: no limit): its ``UrlLengthMiddleware``
    would drop the request silently, so spiders ask this before building one from hub-given
    names, and record a gap instead."""
    limit = settings.getint("URLLENGTH_LIMIT")
    return bool(limit) and len(url) > limit


def count_url_too_long(stats: StatsCollector | None, url: str, *, what: str) -> None:
    """Log and count (``ptm/gaps/url_too_long``) a request not made for its URL's length."""
    if stats is not None:
        stats.inc_value(f"ptm/gaps/{URL_TOO_LONG}")
    logger.warning("No %s: its URL is %d characters long (URLLENGTH_LIMIT): %.120s...", what,
                   len(url), url)


def mark_crawl_incomplete(crawler: Crawler, reason: str) -> None:
    """Mark the crawl incomplete from outside its spider (a pipeline, an extension): once per
    reason, so that history infers no removals and ``scrapy crawl`` exits non-zero."""
    spider = getattr(crawler, "spider", None)
    if isinstance(spider, PtmSpider):
        spider.mark_incomplete_once(reason)
    elif crawler.stats is not None and not crawler.stats.get_value(f"ptm/incomplete/{reason}"):
        crawler.stats.set_value("ptm/incomplete", True)
        crawler.stats.inc_value(f"ptm/incomplete/{reason}")
        logger.error("Crawl is incomplete: %s", reason)


ParamsT = TypeVar("ParamsT", bound=SpiderParams)


class PtmSpider(Args[ParamsT], Spider):
    """Base of all hub spiders. ``hub`` is the value of the documents' ``hub`` field.

    A spider is ``PtmSpider[ItsParams]``: its ``-a`` arguments are validated by that model
    (:mod:`ptmspiders.args`) into ``self.args`` when the spider is created."""

    hub: ClassVar[str]
    args: ParamsT
    # A spider that lists its whole hub, so that a complete crawl may mark the models it no
    # longer saw removed: one such crawl of a hub at a time writes to a store (it holds the
    # hub's lock, ptmspiders/crawllock.py). A spider that writes only part of a hub (a worker
    # of a distributed crawl) sets it False: it needs no lock and never marks removals.
    lists_hub: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = self.parse_args(kwargs)
        # Not Args.__init__, which logs pydantic's many-line message and hands every argument
        # to Spider.__init__, making each raw string an attribute (``self.full == "0"``): the
        # spider reads its arguments from ``self.args`` only. The scheduler's (``_job``) are
        # attributes, as Scrapy makes them.
        Spider.__init__(self, *args, **{k: v for k, v in kwargs.items() if k.startswith("_")})
        self.incomplete_reasons: list[str] = []
        # Documents the hub still lists but that were not re-emitted because they are unchanged
        # (incremental crawls); history must count them as seen, not as removed.
        self.unchanged: dict[str, set[str]] = {}
        # Listing pages asked for and not yet answered or failed (see list_request()).
        self.lists_outstanding: set[str] = set()
        # Listing pages parsed. List requests skip the dupefilter (a JOBDIR resume must ask
        # again), so a page queued twice (checkpoint and a gracefully stopped job's queue) is
        # parsed once, and a spider can tell a cursor that points back (list_answered()).
        self.list_pages_seen: set[str] = set()

    @classmethod
    def params_model(cls) -> type[SpiderParams]:
        """The ``X`` of the nearest ``PtmSpider[X]`` among the class's ancestors."""
        for klass in cls.__mro__:
            for base in klass.__dict__.get("__orig_bases__", ()):
                origin, params = get_origin(base), get_args(base)
                if isinstance(origin, type) and issubclass(origin, Args) and params and \
                        isinstance(params[0], type) and issubclass(params[0], SpiderParams):
                    return params[0]
        return SpiderParams

    @classmethod
    def parse_args(cls, given: dict[str, Any]) -> ParamsT:
        """The ``-a`` arguments ``given``, validated; an ``ArgumentError`` in one line."""
        return cast(ParamsT, parse_params(cls.params_model(), given,
                                           spider=getattr(cls, "name", cls.__name__)))

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> PtmSpider[Any]:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider._check_listings, signal=signals.spider_idle)
        return spider

    def note_unchanged(self, collection: str, doc_id: str) -> None:
        self.unchanged.setdefault(collection, set()).add(doc_id)

    def count(self, key: str, n: int = 1) -> None:
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value(f"ptm/{key}", n)

    def bad_response(self, response: Response, exc: BadResponse, *, what: str) -> None:
        """Log and count a response that could not be used."""
        self.count(f"bad_response/{exc.reason}")
        logger.error("Unusable %s from %s (%s): %s", what, response.url, response.status,
                     exc.reason)

    def mark_incomplete(self, reason: str) -> None:
        """The crawl did not see the whole catalogue: later steps must not infer removals."""
        self.incomplete_reasons.append(reason)
        if self.crawler.stats is not None:
            self.crawler.stats.set_value("ptm/incomplete", True)
            self.crawler.stats.inc_value(f"ptm/incomplete/{reason}")
        logger.error("Crawl of %s is incomplete: %s", self.hub, reason)

    def decode(self, response: Response, expect: type | tuple[type, ...],
               *, what: str, listing: bool = False) -> Any | None:
        """JSON body, or ``None`` after logging and counting; a failed listing page ends the
        listing and marks the crawl incomplete."""
        try:
            return load_json(response.body, expect)
        except BadResponse as exc:
            self.bad_response(response, exc, what=what)
            if listing:
                self.mark_incomplete(f"list_page_{exc.reason}")
            return None

    def mark_incomplete_once(self, reason: str) -> None:
        """:meth:`mark_incomplete`, the first time ``reason`` comes up only."""
        if reason not in self.incomplete_reasons:
            self.mark_incomplete(reason)

    @staticmethod
    def seen_at() -> str:
        return now_iso()

    @staticmethod
    def json_request(url: str, *, expect: str, meta: dict[str, Any] | None = None,
                     **kwargs: Any) -> Request:
        """A request whose answer must be JSON of the given shape (``"list"``, ``"object"`` or
        ``"any"``): the retry middleware retries HTML, truncated or wrongly shaped bodies like a
        5xx before the callback sees them. Every JSON request of every spider should use it
        (or set ``meta["ptm_expect"]`` itself)."""
        if expect not in ("list", "object", "any"):
            raise ValueError(f"expect={expect!r}: one of list, object, any")
        return Request(url, meta={**(meta or {}), "ptm_expect": expect}, **kwargs)

    def listing_start(self, listing: str, first_url: str) -> str | None:
        """Where a paged listing starts: ``first_url``, or with ``JOBDIR`` the checkpoint of a
        killed run; ``None`` if that run completed the listing. List-page requests must be
        ``dont_filter=True`` (the JOBDIR dupefilter remembers pages whose models were lost), so
        the spider guards against cursor loops itself; after a graceful stop Scrapy's queue may
        hold the same page again, which the spider then parses once."""
        done, resume_url = crawl_context(self.crawler).checkpoints.resume(listing)
        if done:
            logger.info("Listing %s is complete in this JOBDIR: nothing to resume", listing)
            return None
        if not resume_url:
            return first_url
        self.count("resumed_listings")
        # This run sees only the rest of the listing: history must not infer removals.
        self.incomplete_reasons.append("resumed")
        if self.crawler.stats is not None:
            self.crawler.stats.set_value("ptm/incomplete", True)
            self.crawler.stats.inc_value("ptm/incomplete/resumed")
        logger.info("Resuming listing %s at %s (JOBDIR checkpoint)", listing, resume_url)
        return resume_url

    def listing_page(self, listing: str, ids: list[str], next_url: str | None) -> None:
        """Register a parsed list page (before yielding its items): once ``ids`` are stored,
        a resumed crawl continues at ``next_url`` (``None``: the listing is complete)."""
        crawl_context(self.crawler).checkpoints.page(listing, ids, next_url)

    def list_request(self, url: str, *, expect: str, meta: dict[str, Any] | None = None,
                     **kwargs: Any) -> Request:
        """A listing page's :meth:`json_request`, tracked until its callback calls
        :meth:`list_answered` or :meth:`errback_listing` sees it fail."""
        self.lists_outstanding.add(url)
        return self.json_request(url, expect=expect, meta={**(meta or {}), LIST_URL_META: url},
                                 **kwargs)

    def list_answered(self, response: Response) -> bool:
        """The start of a listing callback: ``False`` for a page already parsed (counted in
        ``ptm/list_pages_duplicate``), which the callback then skips."""
        self.lists_outstanding.discard(response.meta.get(LIST_URL_META, response.url))
        if response.url in self.list_pages_seen:
            self.count("list_pages_duplicate")
            return False
        self.list_pages_seen.add(response.url)
        return True

    def next_link(self, response: Response, link: str | None, *, what: str = "next link",
                  ) -> str | None:
        """The absolute URL of a hub-given next link (``None``: there is none). A link off the
        origin of the page asked (another host, ``file://``...) is logged, counted in
        ``ptm/refused_link`` and raises :class:`~ptmspiders.origins.RefusedLink`; a listing
        then ends there and records the crawl incomplete."""
        if not link:
            return None
        return follow(response, link, self.crawler.stats, what=what)

    def request_too_long(self, request: Request) -> None:
        """A request ``UrlLengthMiddleware`` dropped (a spider checks hub-given names before
        it builds one; this is the net): what it would have fetched is unseen."""
        count_url_too_long(self.crawler.stats, request.url, what="request")
        self.lists_outstanding.discard(request.meta.get(LIST_URL_META, request.url))
        self.mark_incomplete(URL_TOO_LONG)

    def _check_listings(self) -> None:
        """At idle, a listing page that was asked for but neither answered nor failed was lost
        on the way (a scheduler or middleware error, logged where it happened): the listing
        stopped early, so the crawl is incomplete and history must not infer removals."""
        if self.lists_outstanding:
            logger.error("Listing pages were lost before being fetched (%d), e.g. %s",
                         len(self.lists_outstanding), min(self.lists_outstanding))
            self.lists_outstanding.clear()
            self.mark_incomplete("list_request_lost")

    def errback_listing(self, failure: Any) -> None:
        """A listing request that finally failed (after retries): the listing ends here."""
        request = getattr(failure, "request", None)
        if request is not None:
            self.lists_outstanding.discard(request.meta.get(LIST_URL_META, request.url))
        url = request.url if request is not None else "?"
        if isinstance(getattr(failure, "value", None), RefusedLink):
            # A redirect off the hub's origin, refused (logged and counted) before it was sent.
            self.mark_incomplete(REFUSED_REASON)
            return
        self.count("list_failed")
        logger.error("Listing request failed for good: %s (%s)", url, failure.getErrorMessage())
        self.mark_incomplete("list_request_failed")

    def errback_count(self, what: str) -> Callable[[Any], None]:
        def _errback(failure: Any) -> None:
            request = getattr(failure, "request", None)
            self.count(f"failed/{what}")
            logger.error("%s request failed for good: %s (%s)", what,
                         request.url if request is not None else "?", failure.getErrorMessage())
        return _errback
