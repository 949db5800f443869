"""Hub API answers stay on the hub's origin: a redirect to another origin is refused.

Scrapy's ``RedirectMiddleware`` (and ``MetaRefreshMiddleware``) follow a 3xx to any http(s)
host. For a request whose answer is taken as a hub's data (every JSON API request:
``meta["ptm_expect"]``, see ``PtmSpider.json_request``), the redirected request is refused here
before it is sent when its origin differs from the URL first asked: logged, counted in
``ptm/refused_link``, and its errback receives :class:`ptmspiders.origins.RefusedLink` (a
listing records the crawl incomplete). Same-origin redirects (the Hub's 307 for a renamed
repository) go on. Other requests (a README the Hub redirects to its CDN) are not affected.
``PTM_SAME_ORIGIN_REDIRECTS_ENABLED`` switches it off.

It also keeps every request on http(s): the ``packages`` spider enables Scrapy's ``data:``
handler for its in-process flows only (``PackageCrawler.flow_request``, marked with
``meta["ptm_flow"]``); any other non-http(s) request is refused the same way.
"""

from __future__ import annotations

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from ptmspiders.config import ptm_settings
from ptmspiders.origins import RefusedLink, refuse, same_origin

EXPECT_META = "ptm_expect"  # set by PtmSpider.json_request on every hub API request
FLOW_META = "ptm_flow"  # set only by PackageCrawler.flow_request (a data: URI, no download)
WEB_SCHEMES = ("http://", "https://")


class SameOriginRedirectMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SameOriginRedirectMiddleware:
        if not ptm_settings(crawler).same_origin_redirects_enabled:
            raise NotConfigured("PTM_SAME_ORIGIN_REDIRECTS_ENABLED is off")
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        if not request.url.startswith(WEB_SCHEMES) and not (
                request.url.startswith("data:") and request.meta.get(FLOW_META)):
            exc = RefusedLink(request.url, request.meta.get("redirect_urls", [request.url])[0])
            refuse(self.crawler.stats, exc, what="request")
            raise exc
        redirected_from = request.meta.get("redirect_urls")
        if not redirected_from or not request.meta.get(EXPECT_META):
            return
        if not same_origin(request.url, redirected_from[0]):
            exc = RefusedLink(request.url, redirected_from[0])
            refuse(self.crawler.stats, exc, what="redirect")
            raise exc
