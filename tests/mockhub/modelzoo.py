"""modelzoo.co: its JSON API and its JavaScript model pages (see ../shared/HUBS.md).

- ``GET /api/models/0/`` -> ``{models: [{slug, title, description, stars, link, framework,
  categories[]}]}`` (every model in one answer).
- ``GET /api/models/{slug}/`` -> ``{id, title, description, stars, long_desc, link, papers,
  framework, categories}`` (no slug); unknown slugs answer 404 ``{"detail": "Not found."}``.
- ``GET /api/categories/`` and ``/api/categories/{slug}/{offset}/``.
- The API answers 403 with an HTML page unless the request carries ``Accept:
  application/json`` and a ``Referer`` on the site, as the site's own front end sends them.
- ``GET /model/{slug}`` is the single-page app: an empty ``#root`` and a script that builds the
  model's DOM a moment after load, from data that only the script decodes. Without running
  JavaScript the page holds no model at all. ``GET /`` (the home page) lists every model's card
  the same way.

Knobs for tests (``hub.modelzoo``): ``refuse`` (slugs whose detail answers 403 whatever the
headers), ``html_detail`` (200 with a challenge page instead of JSON), ``fail_detail`` (503),
``broken_pages`` (model pages whose script fails, so they never render),
``broken_list`` (the list body cut short), ``refuse_list`` (the list answers 403 whatever the
headers); ``models`` may be edited.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.mockhub.server import MockHub, MockRequest, MockResponse

LIST_FIELDS = ("slug", "title", "description", "stars", "link", "framework", "categories")
DETAIL_FIELDS = ("title", "description", "stars", "long_desc", "link", "papers", "framework",
                 "categories")
PAGE_SIZE = 12  # category listings page by offset

FORBIDDEN_PAGE = ("<!DOCTYPE html><html><head><title>403 Forbidden</title></head>"
                  "<body><h1>Forbidden</h1><p>You don't have permission to access this resource."
                  "</p></body></html>")
CHALLENGE_PAGE = ("<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
                  "<body><p>Checking your browser before accessing modelzoo.co.</p></body></html>")

PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Model Zoo</title></head>
<body>
<div id="root"><noscript>You need to enable JavaScript to run this app.</noscript></div>
<script>
(function () {
  var raw = "%(data)s";
  var bytes = Uint8Array.from(atob(raw), function (c) { return c.charCodeAt(0); });
  var m = JSON.parse(new TextDecoder("utf-8").decode(bytes));
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== null && text !== undefined) { e.textContent = text; }
    return e;
  }
  setTimeout(function () {
    document.title = m.title + " - Model Zoo";
    var art = el("article", "model-page");
    art.appendChild(el("h1", "model-title", m.title));
    if (m.description) { art.appendChild(el("p", "model-description", m.description)); }
    if (m.stars !== null && m.stars !== undefined) {
      art.appendChild(el("span", "model-stars", m.stars.toLocaleString("en-US")));
    }
    art.appendChild(el("span", "model-framework", m.framework));
    if (m.link) { var a = el("a", "model-link", "Source"); a.href = m.link; art.appendChild(a); }
    var cats = el("ul", "model-categories");
    (m.categories || []).forEach(function (c) {
      var li = el("li"), ca = el("a", null, c.title);
      ca.setAttribute("href", "/category/" + c.slug);
      ca.setAttribute("data-short-title", c.short_title);
      li.appendChild(ca); cats.appendChild(li);
    });
    art.appendChild(cats);
    var papers = el("ul", "model-papers");
    Object.keys(m.papers || {}).forEach(function (t) {
      var li = el("li"), pa = el("a", null, t);
      pa.setAttribute("href", m.papers[t]);
      li.appendChild(pa); papers.appendChild(li);
    });
    art.appendChild(papers);
    var readme = el("div", "model-readme");
    readme.innerHTML = m.long_desc || "";
    art.appendChild(readme);
    art.setAttribute("data-rendered", "");
    document.getElementById("root").replaceChildren(art);
  }, 150);
})();
</script>
</body>
</html>
"""


HOME_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Model Zoo - Deep learning code and pretrained models</title>
</head>
<body>
<div id="root"><noscript>You need to enable JavaScript to run this app.</noscript></div>
<script>
(function () {
  var raw = "%(data)s";
  var bytes = Uint8Array.from(atob(raw), function (c) { return c.charCodeAt(0); });
  var models = JSON.parse(new TextDecoder("utf-8").decode(bytes));
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== null && text !== undefined) { e.textContent = text; }
    return e;
  }
  setTimeout(function () {
    var list = el("main", "model-list");
    models.forEach(function (m) {
      var card = el("div", "model-card");
      card.setAttribute("data-slug", m.slug);
      var t = el("a", "model-card-title", m.title);
      t.setAttribute("href", "/model/" + m.slug);
      card.appendChild(t);
      if (m.description) { card.appendChild(el("p", "model-card-description", m.description)); }
      if (m.stars !== null && m.stars !== undefined) {
        card.appendChild(el("span", "model-card-stars", m.stars.toLocaleString("en-US")));
      }
      card.appendChild(el("span", "model-card-framework", m.framework));
      if (m.link) {
        var a = el("a", "model-card-link", "Source"); a.setAttribute("href", m.link);
        card.appendChild(a);
      }
      var cats = el("ul", "model-card-categories");
      (m.categories || []).forEach(function (c) {
        var li = el("li"), ca = el("a", null, c.title);
        ca.setAttribute("href", "/category/" + c.slug);
        ca.setAttribute("data-short-title", c.short_title);
        li.appendChild(ca); cats.appendChild(li);
      });
      card.appendChild(cats);
      list.appendChild(card);
    });
    list.setAttribute("data-rendered", "");
    document.getElementById("root").replaceChildren(list);
  }, 150);
})();
</script>
</body>
</html>
"""


@dataclass
class ModelZoo:
    models: list[Any] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    html_detail: set[str] = field(default_factory=set)
    fail_detail: set[str] = field(default_factory=set)
    broken_list: bool = False
    refuse_list: bool = False
    broken_pages: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, folder: Path) -> ModelZoo:
        if not (folder / "models.json").is_file():
            return cls()
        return cls(models=json.loads((folder / "models.json").read_text()),
                   categories=json.loads((folder / "categories.json").read_text()))

    def by_slug(self, slug: str) -> tuple[int, dict[str, Any]] | None:
        for i, m in enumerate(self.models):
            if isinstance(m, dict) and m.get("slug") == slug:
                return i, m
        return None


def api_allowed(hub: MockHub, req: MockRequest) -> bool:
    accept = req.headers.get("accept", "")
    referer = req.headers.get("referer", "")
    return "application/json" in accept and referer.startswith(hub.base_url(req))


def forbidden() -> MockResponse:
    return MockResponse.text(FORBIDDEN_PAGE, status=403, content_type="text/html; charset=utf-8")


def not_found() -> MockResponse:
    return MockResponse.json({"detail": "Not found."}, status=404)


def list_models(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    zoo: ModelZoo = hub.modelzoo  # type: ignore[attr-defined]
    if not api_allowed(hub, req) or zoo.refuse_list:
        return forbidden()
    rows = list_rows(zoo)
    response = MockResponse.json({"models": rows})
    if zoo.broken_list:
        response.body = response.body[: len(response.body) // 2]
    return response


def list_rows(zoo: ModelZoo) -> list[Any]:
    return [{k: e.get(k) for k in LIST_FIELDS} if isinstance(e, dict) and "slug" in e else e
            for e in zoo.models]


def model_detail(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    zoo: ModelZoo = hub.modelzoo  # type: ignore[attr-defined]
    slug = m.group("slug")
    if not api_allowed(hub, req) or slug in zoo.refuse:
        return forbidden()
    if slug in zoo.fail_detail:
        return MockResponse.text("Service Unavailable", status=503)
    if slug in zoo.html_detail:
        return MockResponse.text(CHALLENGE_PAGE, content_type="text/html; charset=utf-8")
    found = zoo.by_slug(slug)
    if found is None:
        return not_found()
    index, model = found
    return MockResponse.json({"id": index + 1, **{k: model.get(k) for k in DETAIL_FIELDS}})


def list_categories(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    if not api_allowed(hub, req):
        return forbidden()
    return MockResponse.json({"categories": hub.modelzoo.categories})  # type: ignore[attr-defined]


def category_models(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    zoo: ModelZoo = hub.modelzoo  # type: ignore[attr-defined]
    if not api_allowed(hub, req):
        return forbidden()
    slug, offset = m.group("slug"), int(m.group("offset"))
    category = next((c for c in zoo.categories if c["slug"] == slug), None)
    if category is None:
        return not_found()
    rows = [{k: e.get(k) for k in LIST_FIELDS} for e in zoo.models
            if isinstance(e, dict) and any(c.get("slug") == slug
                                           for c in e.get("categories") or [])]
    return MockResponse.json({"category": category, "models": rows[offset:offset + PAGE_SIZE]})


def render_page(model: dict[str, Any]) -> str:
    data = json.dumps({k: model.get(k) for k in DETAIL_FIELDS}, ensure_ascii=False)
    return PAGE_TEMPLATE % {"data": base64.b64encode(data.encode()).decode()}


def model_page(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    found = hub.modelzoo.by_slug(m.group("slug"))  # type: ignore[attr-defined]
    if found is None:
        return MockResponse.text(f"<html><body><h1>Not found: {html.escape(m.group('slug'))}"
                                 "</h1></body></html>", status=404,
                                 content_type="text/html; charset=utf-8")
    page = render_page(found[1])
    if found[1]["slug"] in hub.modelzoo.broken_pages:  # type: ignore[attr-defined]
        page = page.replace("var m = JSON.parse(", "var m = JSON.parse('{' + ")
    return MockResponse.text(page, content_type="text/html; charset=utf-8")


def render_home(models: list[dict[str, Any]]) -> str:
    data = json.dumps(models, ensure_ascii=False)
    return HOME_TEMPLATE % {"data": base64.b64encode(data.encode()).decode()}


def home_page(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    zoo: ModelZoo = hub.modelzoo  # type: ignore[attr-defined]
    cards = [r for r in list_rows(zoo) if isinstance(r, dict) and "slug" in r]
    return MockResponse.text(render_home(cards), content_type="text/html; charset=utf-8")


def register(hub: MockHub) -> None:
    hub.modelzoo = ModelZoo.load(hub.fixtures / "modelzoo")  # type: ignore[attr-defined]
    hub.route("GET", r"/api/models/0/", list_models)
    hub.route("GET", r"/api/models/(?P<slug>[^/]+)/", model_detail)
    hub.route("GET", r"/api/categories/", list_categories)
    hub.route("GET", r"/api/categories/(?P<slug>[^/]+)/(?P<offset>\d+)/", category_models)
    hub.route("GET", r"/model/(?P<slug>[^/]+)/?", model_page)
    hub.route("GET", r"/", home_page)
