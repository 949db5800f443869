"""modelzoo.co: the JSON API first, headless Chromium for what the API refuses.

One list call returns every model; one detail call per model adds the README (``long_desc``)
and papers. A detail the API refuses (403, an HTML page instead of JSON, 5xx after retries) is
taken from the JavaScript page ``/model/{slug}`` rendered by scrapy-playwright in the system
Chromium (``PTM_CHROMIUM_PATH``), and a refused list from the rendered home page; when no
browser is usable the list entry alone is stored, so a model is never lost because its detail
was.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from scrapy import Request
from scrapy.http import Response
from scrapy.settings import BaseSettings

from ptmspiders.args import RESTRICTS, Limit, Names, SpiderParams, blank_is
from ptmspiders.config import PtmSettings, ptm_settings
from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import ModelItem
from ptmspiders.parsers import modelzoo as mz
from ptmspiders.spiders.base import URL_TOO_LONG, PtmSpider, count_url_too_long, url_too_long

logger = logging.getLogger(__name__)

PLAYWRIGHT_HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# Detail answers the callback sees (after RetryMiddleware gave up on the retryable ones).
DETAIL_STATUSES = [403, 404, 408, 429, 500, 502, 503, 504]
RenderMode = Literal["fallback", "always", "never"]


def browser_problem(settings: PtmSettings) -> str | None:
    """Why the browser fallback cannot run here, or ``None`` when it can."""
    if not settings.modelzoo_browser:
        return "PTM_MODELZOO_BROWSER is off"
    if importlib.util.find_spec("scrapy_playwright") is None:
        return "scrapy-playwright is not installed (pip install scrapy-playwright)"
    path = settings.chromium_path
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return (f"Chromium not found at {path} (apt-get install -y chromium, or point "
                "PTM_CHROMIUM_PATH at a Chromium binary)")
    return None


class ModelzooParams(SpiderParams):
    """``modelzoo`` arguments."""

    limit: Limit = Field(None, description="at most this many models",
                         json_schema_extra=RESTRICTS)
    slugs: Names = Field(default_factory=list, json_schema_extra=RESTRICTS,
                         description="comma-separated slugs: fetch exactly these")
    render: Annotated[RenderMode, blank_is("fallback")] = Field(
        "fallback", description="the browser: fallback (only where the API refuses), always "
                                "(every model from its rendered page) or never")

    @model_validator(mode="after")
    def _slugs_or_limit(self) -> ModelzooParams:
        if self.slugs and self.limit is not None:
            raise ValueError("-a slugs cannot go with -a limit: every slug given is fetched")
        return self


class ModelzooSpider(PtmSpider[ModelzooParams]):
    name = "modelzoo"
    hub = mz.HUB

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        """scrapy-playwright for this spider only, and only when a browser can start: other
        spiders (and this one's API calls) keep Scrapy's plain HTTP handler."""
        super().update_settings(settings)
        config = PtmSettings.from_settings(settings)  # no crawler yet
        if browser_problem(config) is not None:
            return
        # Only the site's own scheme: each handler instance starts its own Playwright driver.
        scheme = urlsplit(config.modelzoo_url).scheme
        handlers = dict(settings.getdict("DOWNLOAD_HANDLERS"))
        handlers[scheme or "https"] = PLAYWRIGHT_HANDLER
        timeout_ms = int(config.modelzoo_render_timeout * 1000)
        settings.setdict({
            "DOWNLOAD_HANDLERS": handlers,
            "PLAYWRIGHT_BROWSER_TYPE": "chromium",
            "PLAYWRIGHT_LAUNCH_OPTIONS": {
                "executable_path": config.chromium_path,
                "headless": True,
                "args": CHROMIUM_ARGS,
            },
            "PLAYWRIGHT_MAX_CONTEXTS": 1,
            "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 2,  # a page costs a renderer process
            "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": timeout_ms,
        }, priority="spider")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen_slugs: set[str] = set()

    @property
    def base(self) -> str:
        return ptm_settings(self.crawler).modelzoo_url

    async def start(self) -> AsyncIterator[Request | ModelItem]:
        config = ptm_settings(self.crawler)
        self.render_timeout_ms = int(config.modelzoo_render_timeout * 1000)
        self.api_retries = min(config.modelzoo_api_retries, config.retry_times)
        self.browser_problem = browser_problem(config)
        if self.browser_problem and self.args.render != "never":
            logger.warning("No browser fallback for modelzoo: %s. Models whose API detail is "
                           "refused are stored from the list alone.", self.browser_problem)
        if self.args.slugs:
            for slug in self.args.slugs:
                for request in self.model_requests({"slug": slug}, source_url=None):
                    yield request
            return
        yield self.api_request(mz.list_url(self.base), callback=self.parse_list,
                               errback=self.errback_list)

    def api_request(self, url: str, *, meta: dict[str, Any] | None = None, **kwargs: Any
                    ) -> Request:
        """An API call: a JSON object, or after ``api_retries`` retries the callback's
        fallback. dont_filter: a JOBDIR restart crawls again instead of finding every URL
        seen (``seen_slugs`` keeps details unique within a run)."""
        return self.json_request(
            url, expect="object", headers=mz.api_headers(self.base), dont_filter=True,
            meta={**(meta or {}), "handle_httpstatus_list": DETAIL_STATUSES,
                  "max_retry_times": self.api_retries}, **kwargs)

    def parse_list(self, response: Response) -> Iterator[Request | ModelItem]:
        if response.status != 200:
            self.count(f"list_refused/{response.status}")
            logger.error("modelzoo refused the model list %s (%s)", response.url,
                         response.status)
            yield from self.list_fallback(f"list_status_{response.status}")
            return
        try:
            entries, rejects = mz.parse_list(response.body)
        except BadResponse as exc:
            self.bad_response(response, exc, what="model list")
            yield from self.list_fallback(f"list_page_{exc.reason}")
            return
        self.count("list_pages")
        yield from self.entries(entries, rejects, response.url)

    def errback_list(self, failure: Any) -> Iterator[Request]:
        self.count("list_failed")
        logger.error("modelzoo list request failed for good: %s (%s)", failure.request.url,
                     failure.getErrorMessage())
        yield from self.list_fallback("list_request_failed")

    def list_fallback(self, reason: str) -> Iterator[Request]:
        """The home page, rendered, lists the same models as the list API."""
        if self.args.render == "never" or self.browser_problem:
            self.mark_incomplete(reason)
            return
        from scrapy_playwright.page import PageMethod

        self.count("browser/requests")
        yield Request(mz.home_url(self.base), callback=self.parse_home,
                      errback=self.errback_home, dont_filter=True,
                      meta={"playwright": True, "ptm_reason": reason,
                            "playwright_page_methods": [
                                PageMethod("wait_for_selector", mz.HOME_RENDERED_SELECTOR,
                                           timeout=self.render_timeout_ms)]})

    def parse_home(self, response: Response) -> Iterator[Request | ModelItem]:
        try:
            entries, rejects = mz.parse_rendered_list(response.text)
        except BadResponse as exc:
            self.bad_response(response, exc, what="rendered model list")
            self.mark_incomplete(response.meta["ptm_reason"])
            return
        self.count("browser/rendered_list")
        logger.warning("modelzoo model list taken from the rendered home page %s (%s)",
                       response.url, response.meta["ptm_reason"])
        yield from self.entries(entries, rejects, response.url)

    def errback_home(self, failure: Any) -> None:
        self.count("browser/failed")
        logger.error("Rendering %s in Chromium failed: %s", failure.request.url,
                     failure.getErrorMessage())
        self.mark_incomplete(failure.request.meta["ptm_reason"])

    def entries(self, entries: list[dict[str, Any]], rejects: list[tuple[Any, str]],
                url: str) -> Iterator[Request | ModelItem]:
        for entry, reason in rejects:
            self.count(f"rejected/{reason}")
            logger.warning("Skipped a list entry of %s: %s (%.80r)", url, reason, entry)
        for entry in entries:
            if self.args.limit is not None and len(self.seen_slugs) >= self.args.limit:
                return
            yield from self.model_requests(entry, source_url=url)

    def model_requests(self, entry: dict[str, Any], *, source_url: str | None
                       ) -> Iterator[Request | ModelItem]:
        slug = entry["slug"]
        if slug in self.seen_slugs:
            self.count("duplicates")
            return
        self.seen_slugs.add(slug)
        meta = {"ptm_entry": entry, "ptm_list_url": source_url}
        if self.args.render == "always":
            yield from self.fallback(entry, source_url, reason="render_always")
            return
        url = mz.detail_url(self.base, slug)
        if url_too_long(self.settings, url):  # UrlLengthMiddleware would drop it silently
            count_url_too_long(self.crawler.stats, url, what="model detail")
            if source_url is not None:
                yield from self.list_only(entry, source_url, reason=URL_TOO_LONG)
            return
        yield self.api_request(url, callback=self.parse_detail, errback=self.errback_detail,
                               meta=meta)

    def parse_detail(self, response: Response) -> Iterator[Request | ModelItem]:
        entry = response.meta["ptm_entry"]
        list_url = response.meta.get("ptm_list_url")
        if response.status == 404:
            self.count("not_found")
            if list_url is None:  # a slug given with -a slugs that the site does not know
                logger.error("modelzoo has no model %r (404 at %s)", entry["slug"], response.url)
                return
            logger.warning("modelzoo lists %s but has no detail for it (404 at %s)",
                           entry["slug"], response.url)
            yield from self.list_only(entry, list_url, reason="detail_404")
            return
        if response.status != 200:
            self.count(f"api_refused/{response.status}")
            logger.info("modelzoo API answered %s for %s", response.status, response.url)
            yield from self.fallback(entry, list_url, reason=f"api_{response.status}")
            return
        try:
            detail = mz.parse_detail(response.body)
        except BadResponse as exc:
            self.bad_response(response, exc, what="model detail")
            yield from self.fallback(entry, list_url, reason=f"api_{exc.reason}")
            return
        yield mz.build_item(entry, detail, base=self.base, source="api",
                            source_url=response.url, seen_at=self.seen_at())

    def errback_detail(self, failure: Any) -> Iterator[Request | ModelItem]:
        request = failure.request
        self.count("failed/detail")
        logger.warning("modelzoo detail request failed for good: %s (%s)", request.url,
                       failure.getErrorMessage())
        yield from self.fallback(request.meta["ptm_entry"], request.meta.get("ptm_list_url"),
                                 reason="api_failed")

    def fallback(self, entry: dict[str, Any], list_url: str | None, *, reason: str
                 ) -> Iterator[Request | ModelItem]:
        """The rendered page instead of the API detail, if a browser can run."""
        if self.args.render == "never" or self.browser_problem:
            self.count("browser/unavailable")
            yield from self.list_only(entry, list_url, reason=reason)
            return
        from scrapy_playwright.page import PageMethod

        self.count("browser/requests")
        yield Request(
            mz.page_url(self.base, entry["slug"]), callback=self.parse_page,
            errback=self.errback_page, dont_filter=True,
            meta={"playwright": True, "ptm_entry": entry, "ptm_list_url": list_url,
                  "ptm_reason": reason,
                  "playwright_page_methods": [
                      PageMethod("wait_for_selector", mz.RENDERED_SELECTOR,
                                 timeout=self.render_timeout_ms)]})

    def parse_page(self, response: Response) -> Iterator[ModelItem]:
        entry = response.meta["ptm_entry"]
        try:
            detail = mz.parse_rendered_page(response.text)
        except BadResponse as exc:
            self.bad_response(response, exc, what="rendered model page")
            yield from self.list_only(entry, response.meta.get("ptm_list_url"),
                                 reason=f"page_{exc.reason}")
            return
        self.count("browser/rendered")
        item = mz.build_item(entry, detail, base=self.base, source="browser",
                             source_url=response.url, seen_at=self.seen_at())
        item.extra["browser_reason"] = response.meta.get("ptm_reason")
        yield item

    def errback_page(self, failure: Any) -> Iterator[ModelItem]:
        request = failure.request
        message = failure.getErrorMessage()
        self.count("browser/failed")
        logger.error("Rendering %s in Chromium failed: %s", request.url, message)
        if "BrowserType.launch" in message and not self.browser_problem:
            # A browser that cannot start will not start for the next model either.
            self.browser_problem = f"Chromium failed to start: {message}"
        yield from self.list_only(request.meta["ptm_entry"], request.meta.get("ptm_list_url"),
                             reason="browser_failed")

    def list_only(self, entry: dict[str, Any], list_url: str | None, *, reason: str
                  ) -> Iterator[ModelItem]:
        """The model from its listing entry alone. A slug given with ``-a slugs`` has no
        entry: a document of the slug alone named a model that may not exist (a typo while
        the API refused), so nothing is stored, and that is said and counted."""
        if list_url is None:
            self.count("skipped/slug_without_detail")
            logger.warning("modelzoo: nothing stored for -a slugs=%s: its detail is unusable "
                           "(%s)", entry["slug"], reason)
            return
        self.count("list_only")
        item = mz.build_item(entry, None, base=self.base, source="list", source_url=list_url,
                             seen_at=self.seen_at())
        item.extra["detail_error"] = reason
        yield item
