"""The GitHub-catalogue base spider as a component: tree handling, the blob-sha skip against
both stores, files that cannot be parsed; and the CollectionItem/schema pair it introduced."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from scrapy import Request
from scrapy.http import TextResponse

from ptmspiders.context import crawl_context
from ptmspiders.github import git_blob_sha
from ptmspiders.items import CollectionItem, ModelItem, field_names, to_doc
from ptmspiders.pipelines.validate import load_schema, schema_error
from ptmspiders.spiders.pytorch_hub import PytorchHubSpider
from ptmspiders.stores import Store
from tests.conftest import ptm_crawler

GOOD = b"---\ntitle: Good\ngithub-id: a/b\n---\ntorch.hub.load('a/b', 'net')\n"
OTHER = b"---\ntitle: Other\n---\n"


def tree_body(files: dict[str, bytes]) -> bytes:
    return json.dumps({"sha": "t" * 40, "truncated": False, "tree": [
        {"path": path, "mode": "100644", "type": "blob", "sha": git_blob_sha(content),
         "size": len(content)} for path, content in files.items()]}).encode()


def make_spider(store: Store | None, **kwargs: Any) -> PytorchHubSpider:
    settings = {"GITHUB_API_URL": "https://api.github.test",
                "GITHUB_RAW_URL": "https://raw.github.test",
                "PTM_STORE_ENABLED": store is not None}
    crawler = ptm_crawler(PytorchHubSpider, settings)
    if store is not None:
        crawl_context(crawler).use_store(store)
    crawler.stats.open_spider()  # type: ignore[union-attr]
    spider = PytorchHubSpider.from_crawler(crawler, **kwargs)
    return spider


def started(spider: PytorchHubSpider) -> Request:
    async def collect() -> list[Request]:
        return [r async for r in spider.start()]

    return asyncio.run(collect())[0]


def stats(spider: PytorchHubSpider) -> dict[str, Any]:
    return spider.crawler.stats.get_stats()  # type: ignore[union-attr]


def stored_doc(_id: str, path: str, sha: str) -> dict[str, Any]:
    item = ModelItem(_id=_id, hub="pytorch_hub", hub_id=_id.split(":")[1], name="x",
                     extra={"path": path, "blob_sha": sha},
                     crawl={"first_seen": "a", "last_seen": "a", "source_url": None})
    return to_doc(item)


def test_start_asks_for_the_tree_once():
    spider = make_spider(None)
    request = started(spider)
    assert request.url == ("https://api.github.test/repos/pytorch/hub/git/trees/master"
                           "?recursive=1")
    assert request.headers["Accept"] == b"application/vnd.github+json"


def test_unchanged_files_are_skipped_and_noted(store):
    store.upsert("models", [
        stored_doc("pytorch_hub:good", "good.md", git_blob_sha(GOOD)),
        stored_doc("pytorch_hub:other", "other.md", "0" * 40),  # content changed since
        {**stored_doc("huggingface:x", "good.md", git_blob_sha(GOOD)), "hub": "huggingface"},
    ])
    spider = make_spider(store)
    tree_request = started(spider)
    response = TextResponse(tree_request.url, body=tree_body(
        {"good.md": GOOD, "other.md": OTHER, "new.md": GOOD, "README.md": b"# hi"}))
    requests = list(spider.parse_tree(response))
    assert [r.url.rsplit("/", 1)[1] for r in requests] == ["other.md", "new.md"]
    assert spider.unchanged == {"models": {"pytorch_hub:good"}}
    assert stats(spider)["ptm/catalogue_files"] == 3
    assert stats(spider)["ptm/unchanged_documents"] == 1


def test_full_reads_everything(store):
    store.upsert("models", [stored_doc("pytorch_hub:good", "good.md", git_blob_sha(GOOD))])
    spider = make_spider(store, full="1")
    tree_request = started(spider)
    requests = list(spider.parse_tree(TextResponse(tree_request.url,
                                                   body=tree_body({"good.md": GOOD}))))
    assert len(requests) == 1 and spider.unchanged == {}


def test_file_responses_become_stamped_items_or_counted_skips():
    spider = make_spider(None)
    tree_request = started(spider)
    files = {"good.md": GOOD, "bad.md": b"no front matter"}
    requests = list(spider.parse_tree(TextResponse(tree_request.url, body=tree_body(files))))
    by_name = {r.url.rsplit("/", 1)[1]: r for r in requests}
    good = by_name["good.md"]
    items = list(spider.parse_file_response(TextResponse(good.url, body=GOOD),
                                            **good.cb_kwargs))
    assert [i._id for i in items] == ["pytorch_hub:good"]
    assert items[0].extra["blob_sha"] == git_blob_sha(GOOD)
    assert items[0].extra["entrypoints"] == ["net"]
    bad = by_name["bad.md"]
    assert list(spider.parse_file_response(TextResponse(bad.url, body=b"no front matter"),
                                           **bad.cb_kwargs)) == []
    # The branch moved between the tree call and the read: the parsed content's sha is kept.
    moved = list(spider.parse_file_response(TextResponse(good.url, body=GOOD + b"\n"),
                                            **good.cb_kwargs))
    assert moved[0].extra["blob_sha"] == git_blob_sha(GOOD + b"\n")
    s = stats(spider)
    assert s["ptm/skipped/no_front_matter"] == 1 and s["ptm/blob_sha_mismatch"] == 1


def test_unusable_tree_marks_the_crawl_incomplete():
    spider = make_spider(None)
    tree_request = started(spider)
    html = TextResponse(tree_request.url, body=b"<html>Whoa there!</html>", status=200)
    assert list(spider.parse_tree(html)) == []
    assert stats(spider)["ptm/incomplete/tree_html_instead_of_json"] == 1


def test_collection_item_mirrors_its_schema():
    schema = load_schema("collection")
    assert set(field_names(CollectionItem)) == set(schema["properties"])
    item = CollectionItem(_id="tfhub:g/collections/x/1", hub="tfhub", hub_id="g/collections/x/1",
                          name="x/1", members=["g/m/1"],
                          crawl={"first_seen": "a", "last_seen": "a", "source_url": None})
    assert schema_error("collection", to_doc(item)) is None
    assert schema_error("collection", {**to_doc(item), "members": [""]}) == "invalid_members"
    assert schema_error("collection", {**to_doc(item), "hub": "gitlab"}) == "invalid_hub"


def test_a_file_turned_malformed_does_not_remove_its_stored_documents(store):
    store.upsert("models", [stored_doc("pytorch_hub:good", "good.md", "0" * 40)])
    spider = make_spider(store)
    tree_request = started(spider)
    broken = b"---\ntitle: [\nnot yaml at all\n---\n"
    [request] = spider.parse_tree(TextResponse(tree_request.url,
                                               body=tree_body({"good.md": broken})))
    assert list(spider.parse_file_response(TextResponse(request.url, body=broken),
                                           **request.cb_kwargs)) == []
    assert stats(spider)["ptm/skipped/bad_front_matter"] == 1
    assert spider.unchanged == {"models": {"pytorch_hub:good"}}


def test_a_parser_bug_on_one_file_is_counted_not_raised(monkeypatch):
    spider = make_spider(None)
    tree_request = started(spider)
    [request] = spider.parse_tree(TextResponse(tree_request.url,
                                               body=tree_body({"good.md": GOOD})))

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("unexpected")

    monkeypatch.setattr(spider, "parse_file", boom)
    assert list(spider.parse_file_response(TextResponse(request.url, body=GOOD),
                                           **request.cb_kwargs)) == []
    assert stats(spider)["ptm/skipped/parser_error"] == 1


def test_paths_argument_restricts_the_catalogue_files(caplog):
    spider = make_spider(None, paths="good.md,sub/")
    tree_request = started(spider)
    files = {"good.md": GOOD, "other.md": OTHER, "good.md.bak.md": GOOD}
    with caplog.at_level(logging.WARNING):
        requests = list(spider.parse_tree(TextResponse(tree_request.url,
                                                       body=tree_body(files))))
    assert [r.url.rsplit("/", 1)[1] for r in requests] == ["good.md"]
    assert stats(spider)["ptm/catalogue_files"] == 1
    # A path matching no file (a typo) is said, not a silent crawl of less.
    assert stats(spider)["ptm/paths_unmatched"] == 1
    assert "-a paths: no catalogue file at or below sub/ in pytorch/hub@master" in caplog.text


def test_requests_queued_by_an_earlier_run_are_ignored():
    # A gracefully stopped JOBDIR crawl leaves its queue: the restart reads the tree again
    # and schedules its own reads, so the old run's answers yield nothing.
    earlier, spider = make_spider(None), make_spider(None)
    old_tree, tree = started(earlier), started(spider)
    assert tree.dont_filter and tree.meta["ptm_expect"] == "object"
    body = tree_body({"good.md": GOOD})
    (old_file,) = earlier.parse_tree(TextResponse(old_tree.url, body=body, request=old_tree))
    assert list(spider.parse_tree(TextResponse(old_tree.url, body=body,
                                               request=old_tree))) == []
    (current,) = spider.parse_tree(TextResponse(tree.url, body=body, request=tree))
    assert current.dont_filter and "ptm_expect" not in current.meta  # Markdown
    assert list(spider.parse_file_response(
        TextResponse(old_file.url, body=GOOD, request=old_file), **old_file.cb_kwargs)) == []
    items = list(spider.parse_file_response(
        TextResponse(current.url, body=GOOD, request=current), **current.cb_kwargs))
    assert [i._id for i in items] == ["pytorch_hub:good"]
    assert stats(spider)["ptm/stale_requests"] == 2
    assert stats(spider)["ptm/files_parsed"] == 1
