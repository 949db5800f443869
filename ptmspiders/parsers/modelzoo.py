"""modelzoo.co bodies -> unified items: the JSON API, and the browser-rendered model page.

The site is a JavaScript app over a JSON API: ``/api/models/0/`` lists every model
(``{models: [{slug, title, description, stars, link, framework, categories[]}]}``) and
``/api/models/{slug}/`` adds ``long_desc`` (HTML) and ``papers`` (``{title: url}``). The detail
carries no slug, so the slug of the list entry is the model's id (PTMTorrent numbered details by
download order, which is why its ids changed between runs). When the API refuses a model, the page
``/model/{slug}`` rendered by headless Chromium is parsed into the same detail shape.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote

import orjson
from bs4 import BeautifulSoup, Tag

from ptmspiders.hub_answers import BadResponse, load_json
from ptmspiders.items import ModelItem, make_id
from ptmspiders.normalize import as_int, as_list, dedupe, github_repo

HUB = "modelzoo"

# The elements the pages' scripts mark last; the browser waits for them before the HTML is read.
RENDERED_SELECTOR = "article.model-page[data-rendered]"
HOME_RENDERED_SELECTOR = "main.model-list[data-rendered]"

_PAPER_HOSTS = ("arxiv.org/", "doi.org/", "openreview.net/", "aclanthology.org/", "aclweb.org/")


def api_headers(base: str) -> dict[str, str]:
    """What the site's own front end sends; without them the API answers 403."""
    return {"Accept": "application/json, text/plain, */*", "Referer": f"{base.rstrip('/')}/"}


def list_url(base: str) -> str:
    return f"{base.rstrip('/')}/api/models/0/"


def detail_url(base: str, slug: str) -> str:
    """A slug is one path segment, quoted: ``-a slugs=a#b`` asked for model ``a``, and
    ``../x`` (given or listed) for another path of the site."""
    return f"{base.rstrip('/')}/api/models/{quote(slug, safe='')}/"


def page_url(base: str, slug: str) -> str:
    return f"{base.rstrip('/')}/model/{quote(slug, safe='')}"


def home_url(base: str) -> str:
    return f"{base.rstrip('/')}/"


def fingerprint(entry: Any) -> str:
    return hashlib.sha1(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_list(body: bytes) -> tuple[list[dict[str, Any]], list[tuple[Any, str]]]:
    """The list entries worth a detail call, and the rejected ones (entry, reason)."""
    data = load_json(body, dict)
    models = data.get("models")
    if not isinstance(models, list):
        raise BadResponse("wrong_shape", "no models list")
    entries: list[dict[str, Any]] = []
    rejects: list[tuple[Any, str]] = []
    for entry in models:
        if not isinstance(entry, dict):
            rejects.append((entry, "entry_not_object"))
        elif not isinstance(entry.get("slug"), str) or not _SLUG_RE.match(entry["slug"]):
            rejects.append((entry, "entry_without_slug"))
        else:
            entries.append(entry)
    return entries, rejects


_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.~-]*$")


def parse_detail(body: bytes) -> dict[str, Any]:
    """``/api/models/{slug}/``: a dict of the detail shape, or :class:`BadResponse`."""
    data = load_json(body, dict)
    if not data.get("title") and "long_desc" not in data:
        raise BadResponse("wrong_shape", "detail without title or long_desc")
    return data


def parse_rendered_page(html: str | bytes) -> dict[str, Any]:
    """The DOM of ``/model/{slug}`` after its script ran -> the detail shape of the API.

    The unrendered page is an empty shell; it raises ``BadResponse("not_rendered")``.
    """
    soup = BeautifulSoup(html, "lxml")
    page = soup.select_one("article.model-page")
    if page is None or page.get("data-rendered") is None:
        raise BadResponse("not_rendered", "no rendered model in the page")
    title = _text(page.select_one(".model-title"))
    if not title:
        raise BadResponse("not_rendered", "rendered page without a title")
    link_tag = page.select_one("a.model-link[href]")
    readme = page.select_one(".model-readme")
    papers: dict[str, str] = {}
    for a in page.select(".model-papers a[href]"):
        href = str(a.get("href", "")).strip()
        if href:
            papers[_text(a) or href] = href
    return {
        "title": title,
        "description": _text(page.select_one(".model-description")) or None,
        "stars": as_int(_text(page.select_one(".model-stars"))),
        "link": str(link_tag["href"]).strip() if link_tag is not None else None,
        "framework": _text(page.select_one(".model-framework")) or None,
        "categories": _categories(page.select(".model-categories a[href]")),
        "papers": papers or None,
        "long_desc": readme.decode_contents().strip() if readme is not None else None,
    }


def parse_rendered_list(html: str | bytes) -> tuple[list[dict[str, Any]], list[tuple[Any, str]]]:
    """The home page's model cards after its script ran -> list entries, as the list API gives
    them, and the rejected cards (card text, reason)."""
    soup = BeautifulSoup(html, "lxml")
    listing = soup.select_one("main.model-list")
    if listing is None or listing.get("data-rendered") is None:
        raise BadResponse("not_rendered", "no rendered model list in the page")
    entries: list[dict[str, Any]] = []
    rejects: list[tuple[Any, str]] = []
    for card in listing.select(".model-card"):
        slug = card.get("data-slug")
        if not isinstance(slug, str) or not _SLUG_RE.match(slug):
            rejects.append((_text(card)[:80], "entry_without_slug"))
            continue
        link_tag = card.select_one("a.model-card-link[href]")
        entries.append({
            "slug": slug,
            "title": _text(card.select_one(".model-card-title")) or None,
            "description": _text(card.select_one(".model-card-description")) or None,
            "stars": as_int(_text(card.select_one(".model-card-stars"))),
            "link": str(link_tag["href"]).strip() if link_tag is not None else None,
            "framework": _text(card.select_one(".model-card-framework")) or None,
            "categories": _categories(card.select(".model-card-categories a[href]")),
        })
    return entries, rejects


def _categories(links: list[Tag]) -> list[dict[str, Any]]:
    categories = []
    for a in links:
        slug = str(a.get("href", "")).rstrip("/").rsplit("/", 1)[-1]
        categories.append({"slug": slug, "title": _text(a),
                           "short_title": a.get("data-short-title")})
    return categories


def build_item(
    entry: dict[str, Any],
    detail: dict[str, Any] | None,
    *,
    base: str,
    source: str,
    source_url: str | None,
    seen_at: str,
) -> ModelItem:
    """A list entry merged with its detail (API or rendered page; ``None`` if neither came).

    ``source`` says where the detail came from: ``api``, ``browser`` or ``list`` (none).
    """
    slug = entry["slug"]
    merged: dict[str, Any] = {**entry, **{k: v for k, v in (detail or {}).items()
                                          if v is not None or k not in entry}}
    link = merged.get("link") if isinstance(merged.get("link"), str) else None
    repo = github_repo(link) if link else None
    owner = repo.split("/")[0] if repo else None
    if repo and link:
        # github_repo lower-cases; keep the owner as the link spells it for display.
        m = re.search(r"github\.com[/:]([^/]+)/", link, re.IGNORECASE)
        owner = m.group(1) if m else owner
    categories = [c for c in as_list(merged.get("categories")) if isinstance(c, dict)]
    papers_value = merged.get("papers")
    paper_map = {str(k): str(v) for k, v in papers_value.items() if isinstance(v, str)} \
        if isinstance(papers_value, dict) else {}
    long_desc = merged.get("long_desc") if isinstance(merged.get("long_desc"), str) else None
    framework = merged.get("framework")
    summary = merged.get("description") if isinstance(merged.get("description"), str) else None

    extra: dict[str, Any] = {"detail_source": source, "list_fingerprint": fingerprint(entry)}
    if summary:
        extra["summary"] = summary
    if link:
        extra["link"] = link
    if paper_map:
        extra["papers"] = paper_map
    if long_desc:
        extra["description_format"] = "html"
    if as_int(merged.get("id")) is not None:
        extra["api_id"] = as_int(merged.get("id"))

    return ModelItem(
        _id=make_id(HUB, slug),
        hub=HUB,
        hub_id=slug,
        name=slug,
        owner=owner,
        url=page_url(base, slug),
        owner_url=f"https://github.com/{owner}" if owner else None,
        title=merged.get("title") if isinstance(merged.get("title"), str) else None,
        description=long_desc or summary,
        tasks=dedupe(c.get("slug") for c in categories if isinstance(c.get("slug"), str)),
        libraries=[framework] if isinstance(framework, str) and framework else [],
        tags=dedupe(_category_tag(c) for c in categories),
        papers=dedupe([*paper_map.values(), *_paper_links(long_desc)]),
        github_repos=[link] if repo and link else [],
        likes=as_int(merged.get("stars")),
        files=[],
        extra=extra,
        raw={"list": entry, "detail": detail},
        crawl={"first_seen": seen_at, "last_seen": seen_at, "source_url": source_url},
    )


def _category_tag(category: dict[str, Any]) -> str | None:
    for key in ("short_title", "title", "slug"):
        value = category.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _paper_links(html: str | None) -> list[str]:
    """Paper links (arXiv, DOI, ...) in the README HTML; ids come from the pipeline."""
    if not html or "<a" not in html:
        return []
    soup = BeautifulSoup(html, "lxml")
    hrefs = (str(a.get("href", "")) for a in soup.find_all("a", href=True))
    return [h for h in hrefs if any(host in h for host in _PAPER_HOSTS)]


def _text(tag: Tag | None) -> str:
    return tag.get_text(" ", strip=True) if tag is not None else ""
