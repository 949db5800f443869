"""Hostile hubs and bad input (issue 24): links and redirects stay on the hub's origin, one bad
list entry costs only itself, and a name too long for a URL costs its requests, not its model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from scrapy import Request
from scrapy.http import TextResponse
from scrapy.spiderloader import SpiderLoader
from scrapy.spidermiddlewares.urllength import UrlLengthMiddleware as ScrapyUrlLengthMiddleware
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object
from scrapy.utils.project import get_project_settings
from twisted.python.failure import Failure

from ptmspiders import settings as ptm_settings
from ptmspiders.github import TreeEntry
from ptmspiders.hf_enrichment import enricher
from ptmspiders.hub_answers import BadResponse, UndecodableEntry, load_json
from ptmspiders.items import ModelItem, to_doc
from ptmspiders.middlewares.origin import FLOW_META, SameOriginRedirectMiddleware
from ptmspiders.middlewares.retry import malformed_reason
from ptmspiders.middlewares.urllength import UrlLengthMiddleware
from ptmspiders.origins import RefusedLink, next_link, same_origin
from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.parsers import huggingface as hf
from ptmspiders.parsers import kaggle
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.spiders.hf_models import HfModelsSpider
from ptmspiders.spiders.modelhub import ModelhubSpider
from ptmspiders.spiders.modelzoo import ModelzooSpider
from ptmspiders.spiders.packages import PackagesSpider
from ptmspiders.stores import open_store
from tests.conftest import FIXTURES, crawl_stats, hub_env, ptm_crawler, run_crawl
from tests.mockhub import MockHub, MockRequest, MockResponse
from tests.mockhub.faults import fill_models
from tests.mockhub.huggingface import encode_cursor

EP = "http://hub.test"
SEEN = "2026-01-01T00:00:00.000Z"
DEEP = b"[" * 100_000 + b"]" * 100_000  # orjson refuses more than 1024 levels
LONG_OWNER = "o" * 1_000_000  # a model id of 1 MB


def spider(**settings: Any) -> HfModelsSpider:
    crawler = ptm_crawler(HfModelsSpider, {"HF_ENDPOINT": EP, "PTM_STORE_ENABLED": False,
                                           **settings})
    crawler.stats.open_spider()  # type: ignore[union-attr]
    return HfModelsSpider.from_crawler(crawler, owners="orgs")  # type: ignore[return-value]


def stats(s: HfModelsSpider) -> dict[str, Any]:
    return s.crawler.stats.get_stats()  # type: ignore[union-attr]


def response(url: str, body: bytes, headers: dict[str, str] | None = None,
             meta: dict[str, Any] | None = None) -> TextResponse:
    return TextResponse(url, body=body, headers=headers or {}, encoding="utf-8",
                        request=Request(url, meta=meta or {}))


def entry(repo_id: str, **kw: Any) -> dict[str, Any]:
    return {"_id": "0" * 24, "id": repo_id, "author": repo_id.split("/")[0], "sha": "a" * 40,
            **kw}


# -- the origin rule -----------------------------------------------------------------------

ASKED = "http://127.0.0.1:8000/api/models?limit=2"


@pytest.mark.parametrize("link", [
    "/api/models?cursor=abc", "?cursor=abc", "http://127.0.0.1:8000/api/models?cursor=abc",
    "HTTP://127.0.0.1:8000/api/models?cursor=abc",
])
def test_a_link_on_the_origin_asked_is_followed(link: str) -> None:
    url = next_link(ASKED, ASKED, link)
    assert url.startswith("http://127.0.0.1:8000/api/models") and "cursor=abc" in url
    assert Request(url).url == url  # what was checked is what Scrapy asks for


@pytest.mark.parametrize("link", [
    "file:///etc/passwd", "data:application/json,[]", "ftp://127.0.0.1:8000/x",
    "s3://bucket/key", "http://127.0.0.2:8000/api/models", "http://127.0.0.1:8001/api/models",
    "https://127.0.0.1:8000/api/models", "//evil.test/api/models", "http://evil.test/",
    "http://127.0.0.1:8000@evil.test/api/models",
    "http://evil.test\\@127.0.0.1:8000/api/models",  # Scrapy would ask evil.test
    "http://127.0.0.1:99999/api/models", "http://[::1",
])
def test_a_link_off_the_origin_asked_is_refused(link: str) -> None:
    with pytest.raises(RefusedLink):
        next_link(ASKED, ASKED, link)


def test_default_ports_are_the_same_origin() -> None:
    assert same_origin("https://huggingface.co:443/api/models", "https://HuggingFace.co/x")
    assert not same_origin("http://huggingface.co/api/models", "https://huggingface.co/x")


def test_list_page_with_a_foreign_next_link_ends_the_listing_incomplete() -> None:
    for target in ("file:///etc/passwd", "http://127.0.0.2/api/models?cursor=x"):
        s = spider()
        out = list(s.parse_list(response(f"{EP}/api/models?limit=2", orjson.dumps(
            [entry("acme-ai/a"), entry("acme-ai/b")]), {"Link": f'<{target}>; rel="next"'})))
        assert [o.hub_id for o in out if isinstance(o, ModelItem)] == ["acme-ai/a", "acme-ai/b"]
        assert [r.url for r in out if isinstance(r, Request)] == [
            f"{EP}/api/organizations/acme-ai/overview"]
        assert stats(s)["ptm/refused_link"] == 1
        assert s.incomplete_reasons == ["refused_link"]


def test_tree_and_commit_pages_with_a_foreign_next_link_leave_a_gap() -> None:
    s = spider(PTM_HF_FILES=True, PTM_HF_COMMITS=True, PTM_HF_SIGNATURE_METHOD="api")
    item = hf.parse_model(entry("acme-ai/demo", siblings=[{"rfilename": "model.bin"}]),
                          endpoint=EP, source_url=None, seen_at=SEEN)
    (tree,) = enricher(s).start(item)
    page = b'[{"type": "file", "path": "model.bin", "size": 1}]'
    (commits,) = tree.callback(response(tree.url, page, {
        "Link": '<http://127.0.0.2/api/models/acme-ai/demo/tree/x?p=1>; rel="next"'}),
        **tree.cb_kwargs)
    assert "/commits/" in commits.url and commits.url.startswith(EP)
    (done,) = commits.callback(response(commits.url, b'[{"id": "' + b"b" * 40 + b'"}]', {
        "Link": '<file:///etc/passwd>; rel="next"'}), **commits.cb_kwargs)
    assert done is item
    assert item.enrichment is not None
    assert item.enrichment["gaps"] == {"files": "refused_link", "commits": "refused_link"}
    assert item.files == [{"path": "model.bin", "size": None, "sha256": None}]  # the list's
    assert stats(s)["ptm/refused_link"] == 2


def test_a_tree_request_whose_redirect_was_refused_leaves_a_gap() -> None:
    s = spider(PTM_HF_FILES=True)
    item = hf.parse_model(entry("acme-ai/demo"), endpoint=EP, source_url=None, seen_at=SEEN)
    (tree,) = enricher(s).start(item)
    failure = Failure(RefusedLink("http://127.0.0.2/x", tree.url))
    failure.request = tree  # type: ignore[attr-defined]
    assert list(tree.errback(failure)) == [item]
    assert item.enrichment is not None
    assert item.enrichment["gaps"] == {"files": "refused_link"}


def redirected(url: str, first: str, **meta: Any) -> Request:
    return Request(url, meta={"redirect_urls": [first], **meta})


def test_a_hub_api_redirect_to_another_origin_is_refused_before_it_is_sent() -> None:
    s = spider()
    mw = SameOriginRedirectMiddleware.from_crawler(s.crawler)
    first = f"{EP}/api/models?cursor=x"
    with pytest.raises(RefusedLink):
        mw.process_request(redirected("http://127.0.0.2/api/models?cursor=x", first,
                                      ptm_expect="list"))
    assert stats(s)["ptm/refused_link"] == 1
    # On the hub's origin (a renamed repository's 307), or not an API answer (a README that
    # the Hub serves from its CDN): sent.
    assert mw.process_request(redirected(f"{EP}/api/models/new/name", first,
                                         ptm_expect="object")) is None
    assert mw.process_request(redirected("http://cdn.test/README.md", first)) is None


def test_a_refused_listing_redirect_makes_the_crawl_incomplete() -> None:
    s = spider()
    request = s.list_request(f"{EP}/api/models?cursor=x", expect="list")
    failure = Failure(RefusedLink("http://127.0.0.2/api/models", request.url))
    failure.request = request  # type: ignore[attr-defined]
    s.errback_listing(failure)
    assert s.incomplete_reasons == ["refused_link"] and not s.lists_outstanding


def project_settings() -> dict[str, Any]:
    """The project's settings module, but the reactor (a test process has its own)."""
    return {k: v for k, v in vars(ptm_settings).items()
            if k.isupper() and k != "TWISTED_REACTOR"}


def test_no_spider_can_read_files_s3_ftp_or_data_urls() -> None:
    loader = SpiderLoader.from_settings(get_project_settings())
    names = loader.list()
    assert "hf_models" in names and "modelzoo" in names
    for name in names:
        crawler = ptm_crawler(loader.load(name), project_settings())
        handlers = crawler.settings.getwithbase("DOWNLOAD_HANDLERS")
        for scheme in ("file", "s3", "ftp"):
            assert handlers[scheme] is None, (name, scheme)
        # packages answers its own in-process flows with data: URIs; nothing else may use it
        assert (handlers["data"] is None) == (name != "packages"), name
        mws = build_component_list(crawler.settings.getwithbase("DOWNLOADER_MIDDLEWARES"))
        assert SameOriginRedirectMiddleware in [load_object(m) for m in mws]


# -- one bad entry costs only itself ---------------------------------------------------------

def page_with_deep_entry() -> bytes:
    tricky = entry("acme-ai/a", cardData={"text": '[{"unbalanced in a string'})
    return b"[" + orjson.dumps(tricky) + b",\n" + DEEP + b", " + orjson.dumps(
        entry("acme-ai/b")) + b"]\n"


def test_an_entry_nested_too_deep_costs_only_itself() -> None:
    items, rejects = hf.parse_models_page(page_with_deep_entry(), endpoint=EP,
                                          source_url=None, seen_at=SEEN)
    assert [i.hub_id for i in items] == ["acme-ai/a", "acme-ai/b"]
    assert items[0].raw["cardData"]["text"] == '[{"unbalanced in a string'
    assert [reason for _, reason in rejects] == ["entry_too_deep"]
    assert isinstance(rejects[0][0], UndecodableEntry)
    assert len(repr(rejects[0][0])) < 80  # logged as is


@pytest.mark.parametrize("body", [
    b"[" + DEEP + b", {\"id\": 1",  # the page itself is cut
    b"[" + DEEP + b", {\"id\": 1,}]",  # another entry is broken
    b"[" + DEEP + b", ]",
    b"[" + DEEP + b"] x",
    b"{\"models\": [], \"next\": {\"a\": " + DEEP + b"}}",  # only arrays are split
])
def test_a_page_that_is_broken_beyond_one_deep_entry_stays_unusable(body: bytes) -> None:
    with pytest.raises(BadResponse) as exc:
        load_json(body, list)
    assert exc.value.reason in ("invalid_json", "truncated_json")


def test_a_kaggle_page_with_a_deep_entry_keeps_the_others_and_its_token() -> None:
    fixture = json.loads((FIXTURES / "kaggle" / "models.json").read_text())[:2]
    body = (b'{"models": [' + orjson.dumps(fixture[0]) + b", " + DEEP + b", "
            + orjson.dumps(fixture[1]) + b'], "nextPageToken": "t2", "totalResults": 3}')
    items, rejects, token, total = kaggle.parse_list_page(
        body, api_url="http://kaggle.test/api/v1", source_url=None, seen_at=SEEN)
    assert len(items) == 2 and token == "t2" and total == 3
    assert [reason for _, reason in rejects] == ["entry_too_deep"]


def test_a_page_with_a_deep_entry_is_not_retried() -> None:
    body = page_with_deep_entry()
    answer = response(f"{EP}/api/models", body)
    assert malformed_reason(answer, "list") is None
    assert len(load_json(body, list)) == 3


def test_list_page_with_a_deep_entry_yields_the_others_and_counts_the_reject() -> None:
    s = spider()
    out = list(s.parse_list(response(f"{EP}/api/models", page_with_deep_entry())))
    assert [o.hub_id for o in out if isinstance(o, ModelItem)] == ["acme-ai/a", "acme-ai/b"]
    assert stats(s)["ptm/rejected/entry_too_deep"] == 1
    assert not s.incomplete_reasons


# -- a name too long for a URL ----------------------------------------------------------------

def test_a_model_id_too_long_for_a_url_is_stored_with_its_gaps() -> None:
    s = spider(PTM_HF_CARDS=True, PTM_HF_FILES=True, PTM_HF_COMMITS=True)
    long_id = f"{LONG_OWNER}/model"
    body = orjson.dumps([entry(long_id, siblings=[{"rfilename": "README.md"}]),
                         entry("acme-ai/short")])
    out = list(s.parse_list(response(f"{EP}/api/models", body)))
    limit = s.settings.getint("URLLENGTH_LIMIT")
    requests = [o for o in out if isinstance(o, Request)]
    assert requests and all(len(r.url) <= limit for r in requests)
    assert not any(LONG_OWNER in r.url for r in requests)
    (item,) = [o for o in out if isinstance(o, ModelItem)]  # the short one waits on its card
    assert item.hub_id == long_id and item.owner == LONG_OWNER
    assert item.enrichment == {"sha": "a" * 40, "steps": ["card", "files", "commits"],
                               "gaps": {"card": "url_too_long", "files": "url_too_long",
                                        "commits": "url_too_long", "owner": "url_too_long"}}
    assert schema_error("model", to_doc(item)) is None
    # The gaps last: the next crawl does not ask again for the same sha.
    assert enricher(s).lacks(to_doc(item)) is False
    assert stats(s)["ptm/gaps/url_too_long"] == 4


def test_a_plain_sweep_records_the_owner_gap() -> None:
    s = spider()
    out = list(s.parse_list(response(f"{EP}/api/models", orjson.dumps(
        [entry(f"{LONG_OWNER}/model")]))))
    (item,) = out
    assert isinstance(item, ModelItem)
    assert item.enrichment == {"sha": "a" * 40, "steps": [], "gaps": {"owner": "url_too_long"}}
    assert schema_error("model", to_doc(item)) is None


def test_a_request_still_too_long_is_dropped_loudly_and_the_crawl_incomplete() -> None:
    s = spider()
    mw = UrlLengthMiddleware.from_crawler(s.crawler)
    s.crawler.spider = s
    short = Request(f"{EP}/raw/models.json")
    assert mw.get_processed_request(short, None) is short
    assert not s.incomplete_reasons
    long = s.list_request(f"{EP}/raw/{LONG_OWNER}.json", expect="list")
    assert mw.get_processed_request(long, None) is None
    assert s.incomplete_reasons == ["url_too_long"] and not s.lists_outstanding
    assert stats(s)["ptm/gaps/url_too_long"] == 1
    settings = ptm_crawler(HfModelsSpider, project_settings()).settings
    used = [load_object(m) if isinstance(m, str) else m
            for m in build_component_list(settings.getwithbase("SPIDER_MIDDLEWARES"))]
    assert UrlLengthMiddleware in used and ScrapyUrlLengthMiddleware not in used


# -- whole crawls against a hostile hub ------------------------------------------------------

def stored_models(tmp_path: Path) -> dict[str, Any]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return {d["_id"]: d for d in store.query("models", {"hub": "huggingface"},
                                                 fields=["removed_at", "enrichment"])}


@pytest.mark.crawl
@pytest.mark.parametrize("mode", ["file_link", "foreign_link", "foreign_redirect"])
def test_a_hostile_hub_cannot_send_the_crawl_elsewhere(tmp_path: Path, mode: str) -> None:
    with MockHub() as hub, MockHub(host="127.0.0.2") as foreign:
        models = fill_models(hub, 60, owners=4)
        fill_models(foreign, 60, owners=4)
        for m in foreign.hf.models:  # type: ignore[attr-defined]
            m["id"] = "foreign-" + m["id"]
        args = ("-s", "PTM_HF_PAGE_SIZE=20", "-a", "owners=off")
        first = run_crawl("hf_models", hub, tmp_path, *args)
        assert "ptm/incomplete" not in crawl_stats(first)
        # The third page (the models after the first 40) is where the hub turns hostile.
        hostile = hub.hostile  # type: ignore[attr-defined]
        hostile.when = f"cursor={encode_cursor(40)}"
        if mode == "file_link":
            hostile.next_link = "file:///etc/passwd"
        elif mode == "foreign_link":
            hostile.next_link = f"{foreign.url}/"
        else:
            hostile.redirect_to = foreign.url
        second = run_crawl("hf_models", hub, tmp_path, *args, "-a", "full=1",
                           expect_exit=EXIT_INCOMPLETE)
        foreign_requests = foreign.requests()

    stats = crawl_stats(second)
    assert stats["ptm/refused_link"] == 1
    assert stats["ptm/incomplete/refused_link"] == 1
    assert foreign_requests == []
    docs = stored_models(tmp_path)
    assert set(docs) == {f"huggingface:{m['id']}" for m in models}  # nothing foreign
    assert not [i for i, d in docs.items() if d.get("removed_at")]  # unseen is not removed
    assert "root:" not in second.stderr  # /etc/passwd was not read


def deep_first_page(hub: MockHub, req: MockRequest, resp: MockResponse) -> MockResponse:
    if req.path == "/api/models" and not req.arg("cursor"):
        resp.body = b"[" + DEEP + b"," + resp.body[1:]
    return resp


@pytest.mark.crawl
def test_a_crawl_stores_the_valid_models_of_a_page_with_a_deep_entry(tmp_path: Path) -> None:
    with MockHub() as hub:
        models = fill_models(hub, 30, owners=4)
        long_id = f"{LONG_OWNER}/model"
        hub.hf.models.insert(3, {**models[0], "id": long_id,  # type: ignore[attr-defined]
                                 "author": LONG_OWNER, "_id": "f" * 24})
        hub.after.append(deep_first_page)
        result = run_crawl("hf_models", hub, tmp_path, "-s", "PTM_HF_PAGE_SIZE=20",
                           "-s", "PTM_HF_FILES=1", env=hub_env(hub), timeout=300)
        too_long = [r for r in hub.requests() if LONG_OWNER in r.raw_target]

    stats = crawl_stats(result)
    docs = stored_models(tmp_path)
    assert set(docs) == {f"huggingface:{m['id']}" for m in models} | {f"huggingface:{long_id}"}
    assert stats["ptm/rejected/entry_too_deep"] == 1
    assert "ptm/incomplete" not in stats
    assert "ptm/retry/count" not in stats  # the page was read once
    gaps = docs[f"huggingface:{long_id}"]["enrichment"]["gaps"]
    assert gaps == {"files": "url_too_long", "owner": "url_too_long"}
    assert stats["ptm/gaps/url_too_long"] == 2
    assert "urllength/request_ignored_count" not in stats
    assert too_long == []
    assert json.dumps(stats)  # the stats dump parsed


@pytest.mark.crawl
def test_a_file_tree_cannot_send_the_crawl_elsewhere(tmp_path: Path) -> None:
    with MockHub() as hub, MockHub(host="127.0.0.2") as foreign:
        hub.hf_git.tree_page_size = 1  # type: ignore[attr-defined]
        hostile = hub.hostile  # type: ignore[attr-defined]
        hostile.next_link, hostile.when = f"{foreign.url}/", "/tree/"
        result = run_crawl("hf_models", hub, tmp_path, "-s", "PTM_HF_FILES=1",
                           "-a", "author=acme-ai", "-a", "owners=off")
        trees = hub.requests("/api/models/acme-ai/")
        foreign_requests = foreign.requests()

    stats = crawl_stats(result)
    docs = stored_models(tmp_path)
    assert trees and foreign_requests == []
    gaps = {i: d["enrichment"]["gaps"] for i, d in docs.items()}
    assert len(docs) >= 2
    assert all(g == {"files": "refused_link"} for g in gaps.values()), gaps
    assert stats["ptm/refused_link"] == len(docs)
    assert "ptm/incomplete" not in stats  # the models were all listed


def test_modelzoo_and_modelhub_store_a_model_whose_url_would_be_too_long() -> None:
    zoo_crawler = ptm_crawler(ModelzooSpider, {"MODELZOO_URL": EP, "PTM_STORE_ENABLED": False,
                                               "PTM_MODELZOO_BROWSER": False})
    zoo_crawler.stats.open_spider()  # type: ignore[union-attr]
    zoo = ModelzooSpider.from_crawler(zoo_crawler)
    slug = "s" * 5000
    (item,) = zoo.model_requests({"slug": slug, "title": "Long"}, source_url=f"{EP}/api/x/")
    assert isinstance(item, ModelItem) and item.hub_id == slug
    assert item.extra["detail_error"] == "url_too_long"

    hub_crawler = ptm_crawler(ModelhubSpider, {"GITHUB_RAW_URL": f"{EP}/raw",
                                               "PTM_STORE_ENABLED": False})
    hub_crawler.stats.open_spider()  # type: ignore[union-attr]
    mh = ModelhubSpider.from_crawler(hub_crawler)
    mh.raw_base = f"{EP}/raw"
    repo = "r" * 5000
    index = orjson.dumps([{"name": "long", "github": f"https://github.com/acme/{repo}"},
                          {"name": "short", "github": "https://github.com/acme/short"}])
    out = list(mh.parse_file(TreeEntry("models.json", "blob", "0" * 40), index,
                             source_url=f"{EP}/raw/models.json", seen_at=SEEN))
    (long_item,) = [o for o in out if isinstance(o, ModelItem)]
    assert long_item.extra["config_error"] == "url_too_long"
    assert [r.url for r in out if isinstance(r, Request)] == [
        f"{EP}/raw/acme/short/master/contrib_src/model/config.json"]
    for c in (zoo_crawler, hub_crawler):
        assert c.stats.get_value("ptm/gaps/url_too_long") == 1  # type: ignore[union-attr]


def test_only_the_packages_flows_may_use_a_data_uri() -> None:
    crawler = ptm_crawler(PackagesSpider, project_settings())
    mw = SameOriginRedirectMiddleware(crawler)
    for url in ("data:text/plain,evil", "file:///etc/passwd", "ftp://x/y", "s3://b/k"):
        with pytest.raises(RefusedLink):
            mw.process_request(Request(url))
    for url in ("file:///etc/passwd", "ftp://x/y", "s3://b/k"):
        with pytest.raises(RefusedLink):  # a flow's mark lets no other scheme through
            mw.process_request(Request(url, meta={FLOW_META: "onnx_package"}))
    mw.process_request(Request("data:,", meta={FLOW_META: "onnx_package"}))  # its own flows
    mw.process_request(Request("https://hub.example/x"))
    assert crawler.stats is not None
    assert crawler.stats.get_value("ptm/refused_link") == 7
