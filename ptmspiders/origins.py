"""Which URLs a hub may send the crawler to: its own origin (scheme, host, port) only.

A hub's answers name further URLs (``Link: <...>; rel="next"`` paging, HTML "next" links,
redirects). Followed anywhere, a hostile or broken hub could make the crawler read a local file
(``file:///...``) or another host and store those answers as the hub's data. Every spider
follows hub-given links through :func:`follow` (``PtmSpider.next_link``), and
:class:`ptmspiders.middlewares.origin.SameOriginRedirectMiddleware` applies the same rule to
redirects; both count a refusal in ``ptm/refused_link`` through :func:`refuse`.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin, urlsplit

from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.statscollectors import StatsCollector
from w3lib.url import safe_url_string

logger = logging.getLogger(__name__)

REFUSED_STAT = "ptm/refused_link"
REFUSED_REASON = "refused_link"  # the incomplete/gap reason callers record
DEFAULT_PORTS = {"http": 80, "https": 443}


class RefusedLink(IgnoreRequest):
    """A hub-given URL outside the origin of the request that named it."""

    def __init__(self, url: str, asked: str) -> None:
        super().__init__(f"{url[:200]} is not on the origin of {asked[:200]}")
        self.url = url
        self.asked = asked


def origin(url: str) -> str | None:
    """``scheme://host:port`` of an http(s) URL (default ports made explicit, host lowercased);
    ``None`` for any other scheme, a URL without a host, or an invalid port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:  # "Port out of range", a non-numeric port
        return None
    return f"{scheme}://{parts.hostname.lower()}:{port}"


def same_origin(url: str, asked: str) -> bool:
    """``url`` is an http(s) URL on exactly the origin of ``asked``."""
    mine = origin(url)
    return mine is not None and mine == origin(asked)


def next_link(asked: str, base: str, link: str) -> str:
    """The absolute URL of ``link`` (resolved against ``base``, the answer's URL), normalised
    the way Scrapy's ``Request`` normalises it, so the host checked is the host Scrapy would
    contact. Raises :class:`RefusedLink` when it leaves the origin of ``asked`` (the URL that
    was requested)."""
    try:
        url = urljoin(base, link.strip())
    except ValueError:  # e.g. "Invalid IPv6 URL": no request could be made of it either
        raise RefusedLink(link, asked) from None
    try:
        url = safe_url_string(url, "utf-8")
    except ValueError:  # an invalid port: no request could be made of it either
        raise RefusedLink(url, asked) from None
    if not same_origin(url, asked):
        raise RefusedLink(url, asked)
    return url


def refuse(stats: StatsCollector | None, exc: RefusedLink, *, what: str) -> None:
    """Log and count a refused link or redirect (``ptm/refused_link``)."""
    if stats is not None:
        stats.inc_value(REFUSED_STAT)
    logger.error("Refused the %s %.200s: not on the origin of %.200s (a hub may only send the "
                 "crawler to its own scheme, host and port)", what, exc.url, exc.asked)


def asked_url(response: Response) -> str:
    """The URL the answer was requested at (before any redirect)."""
    redirects = response.meta.get("redirect_urls") if response.request is not None else None
    if redirects:
        return str(redirects[0])
    return response.request.url if response.request is not None else response.url


def follow(response: Response, link: str, stats: StatsCollector | None, *, what: str) -> str:
    """:func:`next_link` for a link found in ``response``: the URL to request, or, after
    logging and counting the refusal, :class:`RefusedLink`. The one check every spider uses."""
    try:
        return next_link(asked_url(response), response.url, link)
    except RefusedLink as exc:
        refuse(stats, exc, what=what)
        raise
