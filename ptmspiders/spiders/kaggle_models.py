"""Kaggle Models (TF Hub's successor): the list API, paged by ``pageToken`` until it is empty.

Each list entry already holds the model's instances (framework, license, version), so a full
sweep costs one call per page and no detail calls. Credentials (``KAGGLE_USERNAME`` and
``KAGGLE_KEY``) are attached by ``HubAuthMiddleware``, only to the ``KAGGLE_API_URL`` origin.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import AfterValidator, Field
from scrapy import Request
from scrapy.http import Response

from ptmspiders.args import RESTRICTS, Limit, SpiderParams, Text, one_of
from ptmspiders.config import ptm_settings
from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import ModelItem
from ptmspiders.parsers import kaggle
from ptmspiders.spiders.base import PtmSpider

logger = logging.getLogger(__name__)

AUTH_STATUSES = [401, 403]


class KaggleModelsParams(SpiderParams):
    """``kaggle_models`` arguments."""

    owner: Text = Field(None, description="only this user's or organisation's models",
                        json_schema_extra=RESTRICTS)
    search: Text = Field(None, description="search term", json_schema_extra=RESTRICTS)
    sort_by: Annotated[Text, AfterValidator(one_of(kaggle.SORT_BY))] = Field(
        None, description=f"one of {', '.join(kaggle.SORT_BY)}")
    limit: Limit = Field(None, description="at most this many models",
                         json_schema_extra=RESTRICTS)


class KaggleModelsSpider(PtmSpider[KaggleModelsParams]):
    name = "kaggle_models"
    hub = kaggle.HUB

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.emitted = 0
        self.seen_ids: set[str] = set()
        self.seen_tokens: set[str] = set()

    @property
    def api_url(self) -> str:
        return ptm_settings(self.crawler).kaggle_api_url

    async def start(self) -> AsyncIterator[Request]:
        self.page_size = ptm_settings(self.crawler).kaggle_page_size
        if not (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
            logger.warning("KAGGLE_USERNAME/KAGGLE_KEY are not set: listing anonymously, which "
                           "Kaggle may refuse (401)")
        first = self.page_url(None)
        # With JOBDIR, a killed crawl resumes at the last page whose models were stored.
        self.listing_key = f"{self.name}:{first}"
        start_url = self.listing_start(self.listing_key, first)
        if start_url is not None:
            yield self.page_request(start_url)

    def page_url(self, token: str | None) -> str:
        args = self.args
        size = self.page_size
        if args.limit is not None:
            size = min(size, args.limit - self.emitted)
        return kaggle.list_url(self.api_url, page_size=size, page_token=token,
                               search=args.search, sort_by=args.sort_by, owner=args.owner)

    def page_request(self, url: str) -> Request:
        return self.list_request(url, expect="object", callback=self.parse_list,
                                 errback=self.errback_listing, dont_filter=True,
                                 headers={"Accept": "application/json"},
                                 meta={"handle_httpstatus_list": AUTH_STATUSES})

    def parse_list(self, response: Response) -> Iterator[Request | ModelItem]:
        if not self.list_answered(response):
            return
        if response.status in AUTH_STATUSES:
            self.count(f"auth_refused/{response.status}")
            logger.error("Kaggle refused %s (%s): set KAGGLE_USERNAME and KAGGLE_KEY to a valid "
                         "API key (kaggle.com > Settings > API)", response.url, response.status)
            self.mark_incomplete(f"auth_{response.status}")
            return
        try:
            items, rejects, token, total = kaggle.parse_list_page(
                response.body, api_url=self.api_url, source_url=response.url,
                seen_at=self.seen_at())
        except BadResponse as exc:
            self.bad_response(response, exc, what="model list page")
            self.mark_incomplete(f"list_page_{exc.reason}")
            return
        self.count("list_pages")
        if total is not None and self.crawler.stats is not None:
            self.crawler.stats.set_value("ptm/kaggle/total_results", total)
        for entry, reason in rejects:
            self.count(f"rejected/{reason}")
            logger.warning("Skipped a list entry of %s: %s (%.80r)", response.url, reason, entry)
        fresh: list[ModelItem] = []
        limit = self.args.limit
        for item in items:
            if limit is not None and self.emitted >= limit:
                break
            if item._id in self.seen_ids:  # paging over a changing ranking repeats entries
                self.count("duplicates")
                continue
            self.seen_ids.add(item._id)
            self.emitted += 1
            fresh.append(item)
        if limit is not None and self.emitted >= limit:
            token = None
        own = parse_qs(urlsplit(response.url).query).get("pageToken", [None])[0]
        if token is not None and (token in self.seen_tokens or token == own):
            logger.error("Kaggle returned page token %r twice (at %s): stopping to avoid a loop",
                         token, response.url)
            self.mark_incomplete("page_token_loop")
            # No checkpoint past this page: a resumed run tries it again.
        else:
            next_url = None
            if token is not None:
                self.seen_tokens.add(token)
                next_url = self.page_url(token)
            self.listing_page(getattr(self, "listing_key", response.url),
                              [i._id for i in fresh], next_url)
            if next_url is not None:
                yield self.page_request(next_url)
        yield from fresh
