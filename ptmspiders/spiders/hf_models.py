"""Hugging Face Hub models: the list API with ``expand``, cursor-paged by ``Link`` headers.

One list call returns up to 1,000 models with every property the schema needs, so a full sweep
costs about one API call per 1,000 models. Owners are fetched once each.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response
from twisted.python.failure import Failure

from ptmspiders import hf_enrichment, hf_frontier, hf_incremental
from ptmspiders.args import RESTRICTS, Limit, Names, SpiderParams, Text, one_of
from ptmspiders.config import DEFAULT_OWNER_MODE, OwnerMode, owners_mode, ptm_settings
from ptmspiders.frontier import SCHEDULER
from ptmspiders.hf_frontier import HfEnrichFrontier
from ptmspiders.hub_answers import BadResponse, parse_link_header
from ptmspiders.items import ModelItem, OwnerItem
from ptmspiders.middlewares.queued_rewrite import REAIM_META
from ptmspiders.origins import REFUSED_REASON, RefusedLink
from ptmspiders.parsers import huggingface as hf
from ptmspiders.spiders.base import URL_TOO_LONG, PtmSpider, count_url_too_long, url_too_long
from ptmspiders.stores import crawler_store, first_crawl_of

logger = logging.getLogger(__name__)

# The next list page waits behind the page's owner and enrichment requests: asked first, it
# would let a first crawl queue owner look-ups (and items riding on enrichment requests)
# without bound, since the quota lets pages through far faster than per-owner calls.
LIST_PRIORITY = -10

def _expand(value: list[str]) -> list[str]:
    unknown = set(value) - hf.EXPANDABLE
    if unknown:
        raise ValueError(f"unknown properties {', '.join(sorted(unknown))}")
    return value or list(hf.DEFAULT_EXPAND)


class HfModelsParams(SpiderParams):
    """``hf_models`` arguments."""

    limit: Limit = Field(None, description="at most this many models",
                         json_schema_extra=RESTRICTS)
    author: Text = Field(None, description="only this user's or organisation's models",
                         json_schema_extra=RESTRICTS)
    search: Text = Field(None, description="substring of the model id",
                         json_schema_extra=RESTRICTS)
    filter: Names = Field(  # the Hub's own parameter name
        default_factory=list, description="comma-separated tags, all of which must match",
        json_schema_extra=RESTRICTS)
    sort: Annotated[Text, AfterValidator(one_of(hf.SORT_KEYS))] = Field(
        None, description=f"descending by one of {', '.join(sorted(hf.SORT_KEYS))}")
    ids: Names = Field(
        default_factory=list, json_schema_extra=RESTRICTS,
        description="comma-separated repo ids: fetch exactly these by the detail endpoint")
    owners: Annotated[OwnerMode | None, BeforeValidator(
        lambda v: None if v is None else owners_mode(v))] = Field(
        None, description="owner look-ups: orgs, full or off (default: PTM_HF_OWNERS)")
    expand: Annotated[Names, AfterValidator(_expand)] = Field(
        default_factory=lambda: list(hf.DEFAULT_EXPAND),
        description="comma-separated expand properties (default: all the schema needs)")

    @field_validator("ids")
    @classmethod
    def _no_repeats(cls, ids: list[str]) -> list[str]:
        return list(dict.fromkeys(ids))

    @model_validator(mode="after")
    def _ids_or_listing(self) -> HfModelsParams:
        listing = [n for n in ("limit", "author", "search", "filter", "sort") if getattr(self, n)]
        if self.ids and listing:
            raise ValueError(f"-a ids cannot go with {', '.join('-a ' + n for n in listing)}: "
                             "those choose from the listing, which -a ids does not read")
        return self


class HfModelsSpider(PtmSpider[HfModelsParams]):
    name = "hf_models"
    hub = hf.HUB
    frontier: HfEnrichFrontier | None = None
    # With PTM_FRONTIER: scrapy-redis's scheduler for the work items (ptmspiders/frontier.py).
    custom_settings = {"SCHEDULER": SCHEDULER}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.emitted = 0
        self.owners = self.args.owners or DEFAULT_OWNER_MODE  # start() applies PTM_HF_OWNERS
        self.owners_requested: set[str] = set()
        self.owner_kinds_found: dict[str, int] = {}  # overviews found per kind (org/user)
        # Organisations named in the user overviews parsed so far: asked as organisations,
        # with no guess (reaim() applies this to look-ups queued before it was learnt).
        self.known_orgs: set[str] = set()
        # Stored users an ``owners=orgs`` crawl recognised without their overview: a ``full``
        # crawl asks the users' endpoint for them (one call each, the kind being known).
        self.users_without_overview: set[str] = set()
        # No model of the hub was stored when the crawl began: pages have nothing to compare.
        self.first_crawl = False

    @property
    def collect_owners(self) -> bool:
        return self.owners != "off"

    @property
    def endpoint(self) -> str:
        return ptm_settings(self.crawler).hf_endpoint

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> HfModelsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        assert isinstance(spider, HfModelsSpider)
        # PTM_FRONTIER with enrichment on: one worker lists, all enrich (hf_frontier.py).
        spider.frontier = HfEnrichFrontier.for_spider(spider)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        if self.frontier is None or self.frontier.listing:
            async for request in self.list_hub():
                yield request

    async def list_hub(self) -> AsyncIterator[Request]:
        config = ptm_settings(self.crawler)
        self.owners = self.args.owners or config.hf_owners
        if self.collect_owners and config.store_enabled:
            # Owners stored by an earlier crawl cost no request, but for the users an
            # ``orgs`` crawl stored without their overview, which ``full`` asks for once.
            store = crawler_store(self.crawler)
            self.owners_requested |= {
                i.split(":", 1)[1] for i in store.ids("owners", {"hub": self.hub})
            }
            if self.owners == "full":
                self.users_without_overview = {
                    i.split(":", 1)[1] for i in store.ids(
                        "owners", {"hub": self.hub, "extra.overview": hf.OVERVIEW_SKIPPED})
                }
                self.owners_requested -= self.users_without_overview
                # The organisations stored users belong to: any of them that turns up as a
                # new owner is asked as an organisation (one read at start, none per owner).
                for doc in store.query("owners", {"hub": self.hub, "type": "user"},
                                       fields=["orgs"]):
                    orgs = doc.get("orgs")
                    if isinstance(orgs, list):
                        self.known_orgs.update(o for o in orgs if isinstance(o, str))
                self.known_orgs -= self.owners_requested
        if config.store_enabled:
            # Instead of a stored-models lookup per list page (about 2% of the crawl's thread
            # in a first sweep, scripts/bench.py --py-spy at N=100,000).
            self.first_crawl = first_crawl_of(self.crawler, self.hub)
        args = self.args
        if args.ids:
            # dont_filter: with JOBDIR, a restarted ``-a ids=`` crawl asks for every id again
            # (the dupefilter would remember those asked before the kill and drop them).
            for repo_id in args.ids:
                yield self.json_request(
                    hf.detail_url(self.endpoint, repo_id, args.expand), expect="object",
                    callback=self.parse_detail, errback=self.errback_count("detail"),
                    dont_filter=True,
                    meta={"ptm_repo_id": repo_id, "handle_httpstatus_list": [404]})
            return
        page_size = config.hf_page_size
        url = hf.list_url(self.endpoint, limit=min(args.limit or page_size, page_size),
                          author=args.author, search=args.search, filters=args.filter,
                          sort=args.sort, expand=args.expand)
        # With JOBDIR, a killed crawl resumes at the last page whose models were stored.
        self.listing_key = f"{self.name}:{url}"
        start_url = self.listing_start(self.listing_key, url)
        if start_url is None:
            return
        yield self.list_request(start_url, callback=self.parse_list,
                                errback=self.errback_listing, priority=LIST_PRIORITY,
                                dont_filter=True, expect="list")

    def parse_list(self, response: Response) -> Iterator[Request | ModelItem]:
        if not self.list_answered(response):
            return
        seen_at = self.seen_at()
        try:
            items, rejects = hf.parse_models_page(response.body, endpoint=self.endpoint,
                                                  source_url=response.url, seen_at=seen_at)
        except BadResponse as exc:
            self.bad_response(response, exc, what="model list page")
            self.mark_incomplete(f"list_page_{exc.reason}")
            return
        self.count("list_pages")
        for entry, reason in rejects:
            self.count(f"rejected/{reason}")
            logger.warning("Skipped a list entry of %s: %s (%.80r)", response.url, reason, entry)
        limit = self.args.limit
        if limit is not None:
            items = items[: max(limit - self.emitted, 0)]
        self.emitted += len(items)
        next_url = parse_link_header(response.headers.get("Link")).get("next")
        if limit is not None and self.emitted >= limit:
            next_url = None
        try:
            next_url = self.next_link(response, next_url)
            refused = False
        except RefusedLink:
            next_url, refused = None, True
        if refused:
            # The rest of the listing is unseen: no removals, and no checkpoint past this
            # page (a resumed run asks the hub again).
            self.mark_incomplete(REFUSED_REASON)
        elif next_url in self.list_pages_seen:
            logger.error("The next link of %s points back to %s: listing stopped", response.url,
                         next_url)
            self.mark_incomplete("list_cursor_loop")
            next_url = None  # and no checkpoint past this page: a resumed run tries it again
        else:
            self.listing_page(getattr(self, "listing_key", response.url),
                              [i._id for i in items], next_url)
        # The page's outputs are built in one go, so the per-page state of refresh_needed and
        # carry_over is never shared with the next page's callback, which may run meanwhile:
        # the next page is asked for first, and the Hub prepares it while these items are
        # processed (Scrapy's scraper-slot size limit keeps at most a few pages in memory).
        refresh = self.refresh_needed(items)
        outputs: list[Request | ModelItem] = []
        for item in items:
            if item._id in refresh:
                outputs.extend(self.enrich(item))
            else:
                outputs.append(self.carry_over(item))
            outputs.extend(self.owner_requests(item.owner, item))
        if next_url:
            yield self.list_request(next_url, callback=self.parse_list,
                                    errback=self.errback_listing, priority=LIST_PRIORITY,
                                    dont_filter=True, expect="list")
        yield from outputs

    # Incremental crawls and enrichment plug in through these three methods.
    def refresh_needed(self, items: list[ModelItem]) -> set[str]:
        """Ids of the page's models whose repository changed since the last crawl (all, with
        ``-a full=1`` or an empty store): only those cost further requests."""
        # One batched lookup per list page (sha + carried fields), never one per model.
        self.stored_for_carry: dict[str, dict[str, Any]] = {}
        ids = [item._id for item in items]
        if (self.args.full or self.first_crawl or not items
                or not ptm_settings(self.crawler).store_enabled):
            self.count("incremental/refresh", len(ids))
            return set(ids)
        stored = crawler_store(self.crawler).get_many(
            "models", ids, fields=hf_incremental.stored_fields(hf_incremental.HF_CARRIED_FIELDS))
        refresh = set()
        for item in items:
            doc = stored.get(item._id)
            if hf_incremental.needs_refresh(item.latest_commit_sha, doc) or \
                    hf_enrichment.enricher(self).lacks(doc):  # e.g. enrichment newly switched on
                refresh.add(item._id)
            elif doc is not None:
                self.stored_for_carry[item._id] = doc
        self.count("incremental/refresh", len(refresh))
        self.count("incremental/unchanged", len(items) - len(refresh))
        return refresh

    def enrich(self, item: ModelItem) -> Iterator[Request | ModelItem]:
        """Requests that add what the list lacks (card, commits, files), ending in the item
        (with a frontier, the item goes to whichever worker takes it)."""
        if self.frontier is not None:
            yield from self.frontier.add(item)
            return
        yield from hf_enrichment.enricher(self).start(item)

    def work_step(self, response: Response, **kwargs: Any) -> Any:
        """A model's enrichment taken from the shared frontier: its first step."""
        return hf_frontier.run_step(self, response, **kwargs)

    def work_step_failed(self, failure: Failure) -> Any:
        return hf_frontier.run_step_failed(self, failure)

    def carry_over(self, item: ModelItem) -> ModelItem:
        """An unchanged model: keep what earlier enrichment stored, refresh the list fields."""
        stored = getattr(self, "stored_for_carry", {}).pop(item._id, None)
        return hf_incremental.carry_over(item, stored, hf_incremental.HF_CARRIED_FIELDS)

    def parse_detail(self, response: Response) -> Iterator[Request | ModelItem]:
        asked = response.meta["ptm_repo_id"]
        if response.status == 404:
            self.count("not_found")
            logger.warning("Model %s not found (404) at %s", asked, response.url)
            return
        try:
            item = hf.parse_model_detail(response.body, endpoint=self.endpoint,
                                         source_url=response.url, seen_at=self.seen_at())
        except BadResponse as exc:
            self.bad_response(response, exc, what="model detail")
            return
        if response.meta.get("redirect_urls") and item.hub_id != asked:
            # A renamed repository: the Hub answered 307 with the new id.
            item.extra["renamed_from"] = asked
            self.count("renamed")
        yield item
        yield from self.owner_requests(item.owner, item)

    def owner_requests(self, owner: str | None, item: ModelItem | None = None,
                       ) -> Iterator[Request]:
        if not owner or not self.collect_owners or owner in self.owners_requested:
            return
        self.owners_requested.add(owner)
        # A user stored without its overview: the organisations' 404 is known already.
        tried = ("org",) if owner in self.users_without_overview else ()
        # The organisations' URL, the longer of the two a look-up may ask.
        longest = hf.owner_url(self.endpoint, owner, "org")
        if url_too_long(self.settings, longest):
            count_url_too_long(self.crawler.stats, longest, what="owner look-up")
            if item is not None:
                hf_enrichment.record_gap(item, "owner", URL_TOO_LONG)
            return
        yield self.owner_request(owner, self.owner_kind_guess(owner), tried=tried)

    def owner_kind_guess(self, owner: str) -> str:
        """The endpoint to ask first. The list does not say whether an owner is an
        organisation or a user (the Hub has no endpoint that answers for both), and a wrong
        guess costs a 404 and a second call: an organisation a user overview named is one;
        otherwise the kind found more often so far (organisations on a tie). On the Hub most
        owners are users."""
        if self.owners == "orgs" or owner in self.known_orgs:
            return "org"
        if owner in self.users_without_overview:
            return "user"
        found = self.owner_kinds_found
        return "user" if found.get("user", 0) > found.get("org", 0) else "org"

    def owner_request(self, owner: str, kind: str, tried: tuple[str, ...]) -> Request:
        # dont_filter: owner_requests dedupes, so the dupefilter need not remember each owner.
        # REAIM_META: QueuedRewriteMiddleware asks reaim() again when the request is sent.
        return Request(hf.owner_url(self.endpoint, owner, kind), callback=self.parse_owner,
                       errback=self.errback_count("owner"), dont_filter=True,
                       meta={"ptm_owner": owner, "ptm_owner_kind": kind,
                             "ptm_owner_tried": tried, "handle_httpstatus_list": [404],
                             "ptm_expect": "object", REAIM_META: True})

    def reaim(self, request: Request) -> Request | None:
        """A queued owner look-up aimed at users, for a name that a user overview parsed
        since then lists as an organisation: the organisation's endpoint instead. Under a
        quota, owner look-ups (one API call each) wait in the queue long after the listing
        is done, and the user overviews answered meanwhile name organisations."""
        owner = request.meta.get("ptm_owner")
        if (owner not in self.known_orgs or request.meta.get("ptm_owner_kind") != "user"
                or "org" in request.meta.get("ptm_owner_tried", ())):
            return None
        self.count("owners/reaimed")
        return self.owner_request(owner, "org", request.meta.get("ptm_owner_tried", ()))

    def parse_owner(self, response: Response) -> Iterator[Request | OwnerItem]:
        name = response.meta["ptm_owner"]
        kind = response.meta["ptm_owner_kind"]
        seen_at = self.seen_at()
        if response.status == 404:
            # Without ptm_owner_tried (a request queued in a JOBDIR by an older version), the
            # order was always organisation, then user.
            earlier = response.meta.get("ptm_owner_tried", ("org",) if kind == "user" else ())
            tried = (*earlier, kind)
            if self.owners == "orgs" and kind == "org" and "user" not in earlier:
                # An owner of listed models that is no organisation is a user.
                self.count("owners/users_without_overview")
                yield hf.user_without_overview(name, endpoint=self.endpoint, seen_at=seen_at,
                                               source_url=response.url)
                return
            other = "user" if kind == "org" else "org"
            if other not in tried:  # not this kind of account: perhaps the other
                yield self.owner_request(name, other, tried)
                return
            self.count("owners/unknown")
            yield hf.unknown_owner(name, endpoint=self.endpoint, seen_at=seen_at,
                                   reason="no organization or user overview (404)")
            return
        try:
            owner = hf.parse_owner(response.body, name=name, kind=kind, endpoint=self.endpoint,
                                   source_url=response.url, seen_at=seen_at)
        except BadResponse as exc:
            self.bad_response(response, exc, what="owner overview")
            return
        self.owner_kinds_found[kind] = self.owner_kinds_found.get(kind, 0) + 1
        self.known_orgs.update(owner.orgs)
        yield owner

