"""History and incremental logic as components: pure functions, then the pipeline, the
extension and the spider hooks built from a crawler (``get_crawler``) over both stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from scrapy.exceptions import NotConfigured

from ptmspiders import hf_incremental
from ptmspiders.changes import ModelComparison, diff_docs
from ptmspiders.context import crawl_context
from ptmspiders.history import CrawlHistory, ModelHistory, crawl_state
from ptmspiders.items import ModelItem, field_names, to_doc
from ptmspiders.spiders.base import now_iso
from ptmspiders.spiders.hf_models import HfModelsSpider
from ptmspiders.stores import Store
from ptmspiders.stores.base import Encoded
from ptmspiders.stores.writer import BackgroundWriter
from tests.conftest import ptm_crawler

OLD = "2020-01-01T00:00:00.000Z"
FIELDS = [f for f in field_names(ModelItem)]


def model(i: int, *, seen: str = OLD, **kw: Any) -> ModelItem:
    base: dict[str, Any] = dict(
        _id=f"huggingface:o/m{i}", hub="huggingface", hub_id=f"o/m{i}", name=f"m{i}", owner="o",
        hub_uid=f"uid{i}", latest_commit_sha=f"sha{i}", downloads=i, likes=1, tags=["a", "b"],
        crawl={"first_seen": OLD, "last_seen": seen, "source_url": None})
    base.update(kw)
    return ModelItem(**base)


def crawler_for(store: Store, spider_kwargs: dict[str, Any] | None = None,
                **settings: Any) -> tuple[Any, HfModelsSpider]:
    settings.setdefault("PTM_HF_OWNERS", False)
    crawler = ptm_crawler(HfModelsSpider, settings)
    crawl_context(crawler).use_store(store)  # the crawl's one store
    crawler.stats.open_spider()
    spider = HfModelsSpider.from_crawler(crawler, **(spider_kwargs or {}))
    crawler.spider = spider
    return crawler, spider


class CountingStore:
    """Wraps a store and counts calls, to show lookups are batched."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)
        return wrapped


# -- pure functions ------------------------------------------------------------------------------

def test_diff_docs_scalars_lists_objects() -> None:
    old = {"downloads": 5, "likes": 1, "license": "mit", "gated": False, "tags": ["a", "b"],
           "files": [{"path": "x", "size": 1}], "card": {"present": True, "length": 10},
           "crawl": {"last_seen": "1"}, "raw": {"a": 1}, "datasets": None, "papers": []}
    new = {"downloads": 7, "likes": 1.0, "license": None, "gated": 0, "tags": ["b", "c"],
           "files": [{"path": "x", "size": 1}, {"path": "y"}],
           "card": {"present": True, "length": 12}, "crawl": {"last_seen": "2"},
           "raw": {"a": 2}, "datasets": [], "papers": None}
    changed, values, lists = diff_docs(old, new, old.keys())
    assert changed == ["downloads", "license", "gated", "tags", "files", "card"]
    assert values == {"downloads": {"old": 5, "new": 7}, "license": {"old": "mit", "new": None},
                      "gated": {"old": False, "new": 0}, "card.length": {"old": 10, "new": 12}}
    assert lists == {"tags": {"added": ["c"], "removed": ["a"]},
                     "files": {"added": ["y"], "removed": []}}
    assert diff_docs(old, old, old.keys()) == ([], {}, {})


def test_carry_over_keeps_what_enrichment_stored() -> None:
    listed = model(1, card={"present": True, "has_model_index": False},
                   files=[{"path": "a.bin", "size": None, "sha256": None}], risk=None)
    stored = {"card": {"present": True, "has_model_index": True, "length": 99},
              "files": [{"path": "a.bin", "size": 10, "sha256": "s", "lfs": True}],
              "risk": {"weight_formats": ["pickle"], "pickle_only": True}}
    item = hf_incremental.carry_over(listed, stored)
    assert item.card == {"present": True, "has_model_index": True, "length": 99}
    assert item.files == stored["files"]
    assert item.risk == stored["risk"]
    # a thinner stored file list does not replace a richer listed one
    thin = hf_incremental.carry_over(model(2, files=[{"path": "a", "size": 5}]),
                                  {"files": [{"path": "a", "size": None}], "card": None})
    assert thin.files == [{"path": "a", "size": 5}]
    assert thin.card == {"present": None, "has_model_index": False}
    assert hf_incremental.carry_over(model(3), None).files == []
    assert hf_incremental.needs_refresh("s", None) and hf_incremental.needs_refresh(None, {"x": 1})
    assert not hf_incremental.needs_refresh("s", {"latest_commit_sha": "s"})


# -- the spider hooks ----------------------------------------------------------------------------

def test_refresh_needed_is_one_lookup_per_page(store: Store) -> None:
    enriched = to_doc(model(1, files=[{"path": "w.bin", "size": 3, "sha256": "x"}],
                            card={"present": True, "has_model_index": False, "length": 5}))
    store.upsert("models", [enriched, to_doc(model(2))])
    counting = CountingStore(store)
    crawler, spider = crawler_for(counting)  # type: ignore[arg-type]
    page = [model(1), model(2, latest_commit_sha="moved"), model(3)]
    assert spider.refresh_needed(page) == {"huggingface:o/m2", "huggingface:o/m3"}
    assert counting.calls == {"get_many": 1}
    kept = spider.carry_over(model(1))
    assert kept.files == [{"path": "w.bin", "size": 3, "sha256": "x"}]
    assert kept.card["length"] == 5
    assert crawler.stats.get_value("ptm/incremental/unchanged") == 1
    _, full = crawler_for(counting, {"full": "1"})
    assert full.refresh_needed(page) == {item._id for item in page}
    assert counting.calls == {"get_many": 1}  # -a full=1 asks the store nothing


def _first_request(start: AsyncIterator[Any]) -> Any:
    async def first() -> Any:
        return await anext(start)
    return asyncio.run(first())


def test_a_first_crawl_asks_the_store_once_not_per_page(store: Store) -> None:
    counting = CountingStore(store)
    hub = "http://127.0.0.1:9"  # never asked: only the first request is built
    _, spider = crawler_for(counting, HF_ENDPOINT=hub)  # type: ignore[arg-type]
    _first_request(spider.start())
    page = [model(1), model(2)]
    assert spider.first_crawl
    assert spider.refresh_needed(page) == {item._id for item in page}
    assert "get_many" not in counting.calls
    store.upsert("models", [to_doc(model(1))])  # once the hub has a stored model ...
    crawler, later = crawler_for(counting, HF_ENDPOINT=hub)  # type: ignore[arg-type]
    _first_request(later.start())
    assert not later.first_crawl
    assert later.refresh_needed(page) == {"huggingface:o/m2"}  # ... each page is compared
    assert counting.calls["get_many"] == 1
    assert crawler.stats.get_value("ptm/incremental/unchanged") == 1


def test_history_and_spider_share_one_answer_to_first_crawl(store: Store) -> None:
    """Asked at spider_opened, before any write: the spider's later start() gets the same
    answer without a second probe, even once the crawl has stored a model."""
    counting = CountingStore(store)
    crawler, spider = crawler_for(counting, HF_ENDPOINT="http://127.0.0.1:9")  # type: ignore
    ext = CrawlHistory.from_crawler(crawler)
    ext.spider_opened(spider)
    store.upsert("models", [to_doc(model(1))])  # the crawl's own first write
    _first_request(spider.start())
    assert ext.state.baseline and spider.first_crawl
    assert counting.calls["exists"] == 1


# -- comparing each written batch ---------------------------------------------------------------

def history_writer(store: Any, baseline: bool = False,
                   **settings: Any) -> tuple[Any, ModelHistory, BackgroundWriter]:
    """A crawl's write path without the thread: the same hook, run inline. ``baseline``: the
    crawl is its hub's first (known before the hook is added, as in spider_opened)."""
    crawler, _ = crawler_for(store, **settings)
    history = ModelHistory(crawler, crawl_state(crawler))
    history.state.baseline = baseline
    writer = BackgroundWriter(store, None)
    writer.add_hook("models", history.comparison(), history.apply)
    return crawler, history, writer


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "encoded"])
def test_history_compares_each_batch_before_it_is_written(
        store: Store, encoded: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alike for plain documents and for those the store encoded on the crawl's thread, each
    of which is decoded once (new ones serve the renames lookup and their record)."""
    store.upsert("models", [to_doc(model(i)) for i in range(100)])
    counting = CountingStore(store)
    crawler, history, writer = history_writer(counting)
    decodes: list[str] = []
    decode = Encoded.decode
    monkeypatch.setattr(Encoded, "decode", lambda self: decodes.append(self.id) or decode(self))
    items = [model(i, downloads=i + (1 if i % 10 == 0 else 0)) for i in range(100)]
    items += [model(200, hub_uid="uid7", hub_id="o/m7-renamed"), model(201, hub_uid="fresh")]
    docs = [writer.encode(to_doc(i)) if encoded else to_doc(i) for i in items]
    for start in range(0, len(docs), 40):
        writer.submit("models", docs[start:start + 40])
    writer.close()
    assert counting.calls["get_many"] == 3 + 1  # 3 batches of <= 40, the renamed model's old doc
    encodes = any(isinstance(d, Encoded) for d in docs)  # SQLite's encode does, MongoDB's not
    assert sorted(decodes) == (sorted(i._id for i in items) if encodes else [])
    assert counting.calls["query"] == 1  # hub_uid lookup for the new ids only
    state = history.state
    assert {k: state.counts[k] for k in ("new", "changed", "unchanged", "renamed")} == {
        "new": 1, "changed": 10, "unchanged": 90, "renamed": 1}
    assert state.renamed_away == {"huggingface:o/m7": "huggingface:o/m200"}
    records = {r["model_id"]: r for r in store.query("changes", {"crawl_id": state.crawl_id})}
    assert len(records) == 12
    assert records["huggingface:o/m30"]["values"] == {"downloads": {"old": 30, "new": 31}}
    assert records["huggingface:o/m30"]["fields"] == ["downloads"]
    assert records["huggingface:o/m201"]["kind"] == "new"
    renamed = records["huggingface:o/m200"]
    assert renamed["kind"] == "renamed" and renamed["renamed_from"] == "huggingface:o/m7"
    assert renamed["values"]["hub_id"] == {"old": "o/m7", "new": "o/m7-renamed"}
    assert crawler.stats.get_value("ptm/history/records") == 12
    assert crawler.stats.get_value("ptm/history/unchanged") == 90
    # what was compared is what got written
    assert store.get("models", "huggingface:o/m30")["downloads"] == 31


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "encoded"])
def test_first_crawl_of_a_hub_is_a_baseline_without_new_records(
        store: Store, encoded: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted as new, no record per model, no renames lookup; a model already stored (the
    same id twice in the crawl) is still compared, and it alone is decoded for that."""
    counting = CountingStore(store)
    _crawler, history, writer = history_writer(counting, baseline=True)
    decoded: list[str] = []
    decode = Encoded.decode
    monkeypatch.setattr(Encoded, "decode", lambda self: decoded.append(self.id) or decode(self))

    def prepare(item: ModelItem) -> Any:
        return writer.encode(to_doc(item)) if encoded else to_doc(item)

    writer.submit("models", [prepare(model(i)) for i in range(10)])
    writer.submit("models", [prepare(model(3, downloads=99)), prepare(model(11))])
    writer.close()
    encodes = encoded and isinstance(prepare(model(0)), Encoded)  # SQLite does, MongoDB not
    assert decoded == (["huggingface:o/m3"] if encodes else [])
    assert "query" not in counting.calls
    assert history.state.counts["new"] == 11 and history.state.counts["changed"] == 1
    records = list(store.query("changes", {}))
    assert [(r["model_id"], r["kind"]) for r in records] == [("huggingface:o/m3", "changed")]
    assert store.count("models") == 11


def test_baseline_only_when_the_hub_has_no_stored_model(store: Store) -> None:
    crawler, spider = crawler_for(store)
    ext = CrawlHistory.from_crawler(crawler)
    ext.spider_opened(spider)
    assert ext.state.baseline is True
    assert store.get("crawls", ext.state.crawl_id)["baseline"] is True
    store.upsert("models", [to_doc(model(1, hub="tfhub", _id="tfhub:o/m1"))])
    crawler, spider = crawler_for(store)
    ext = CrawlHistory.from_crawler(crawler)
    ext.spider_opened(spider)
    assert ext.state.baseline is True  # another hub's models do not count
    store.upsert("models", [to_doc(model(1))])
    crawler, spider = crawler_for(store)
    ext = CrawlHistory.from_crawler(crawler)
    ext.spider_opened(spider)
    assert ext.state.baseline is False


def test_history_never_costs_a_batch_its_write(store: Store,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    crawler, history, writer = history_writer(store)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("lookup failed")
    reading = CountingStore(store)
    reading.get_many = broken  # type: ignore[method-assign]
    history.apply(history.comparison()(reading, "models", [to_doc(model(9))]))  # type: ignore[arg-type]
    assert crawler.stats.get_value("ptm/history/errors") == 1
    monkeypatch.setattr(ModelComparison, "compare", broken)
    writer.submit("models", [to_doc(model(1)), to_doc(model(2))])
    writer.close()
    assert store.count("models") == 2
    assert crawler.stats.get_value("ptm/history/errors") == 2


@pytest.mark.parametrize("settings", [{"PTM_HISTORY_ENABLED": False},
                                      {"PTM_STORE_ENABLED": False}])
def test_history_switches_off(store: Store, settings: dict[str, Any]) -> None:
    crawler, _ = crawler_for(store, **settings)
    with pytest.raises(NotConfigured):
        CrawlHistory.from_crawler(crawler)


# -- the extension -------------------------------------------------------------------------------

def close_crawl(store: Store, *, reason: str = "finished", spider_kwargs: dict[str, Any] | None
                = None, incomplete: bool = False, **settings: Any) -> tuple[dict[str, Any], Any]:
    """A crawl that emits m1, notes m2 unchanged, drops m3 and does not see m4, m5."""
    store.upsert("models", [to_doc(model(i)) for i in range(1, 6)])
    store.upsert("models", [to_doc(model(9, hub="tfhub", _id="tfhub:x"))])  # another hub
    store.set_fields("models", ["huggingface:o/m2"], {"removed_at": OLD})
    crawler, spider = crawler_for(store, spider_kwargs, **settings)
    ext = CrawlHistory.from_crawler(crawler)
    ext.spider_opened(spider)
    assert store.get("crawls", ext.state.crawl_id)["status"] == "running"
    store.upsert("models", [to_doc(model(1, seen=now_iso()))])  # emitted and stored
    spider.note_unchanged("models", "huggingface:o/m2")
    ext.item_dropped(item=model(3), response=None, exception=None, spider=spider)
    if incomplete:
        spider.mark_incomplete("list_page_invalid_json")
    ext.spider_closed(spider, reason)
    record = store.get("crawls", ext.state.crawl_id)
    return record, {d["_id"]: d["removed_at"] for d in store.query("models", {},
                                                                   fields=["removed_at"])}


def test_baseline_crawl_closes_without_scanning_for_missing_models(store: Store) -> None:
    counting = CountingStore(store)
    crawler, spider = crawler_for(counting)  # type: ignore[arg-type]
    ext = CrawlHistory.from_crawler(crawler)
    ext.spider_opened(spider)
    store.upsert("models", [to_doc(model(i, seen=now_iso())) for i in range(3)])
    counting.calls.clear()
    ext.spider_closed(spider, "finished")
    record = store.get("crawls", ext.state.crawl_id)
    assert record["baseline"] is True and record["complete"] is True
    assert record["counts"]["missing"] == 0
    assert "query" not in counting.calls and "count" not in counting.calls


def test_complete_crawl_marks_unseen_models_removed(store: Store) -> None:
    record, removed = close_crawl(store)
    assert record["complete"] is True and record["finish_reason"] == "finished"
    assert record["counts"]["missing"] == 2 and record["counts"]["reappeared"] == 1
    assert record["counts"]["unchanged"] == 1  # the noted one
    gone = {i for i, at in removed.items() if at}
    assert gone == {"huggingface:o/m4", "huggingface:o/m5"}  # not the dropped m3, not tfhub
    assert removed["huggingface:o/m2"] is None  # noted unchanged: seen again
    changes = {c["model_id"]: c for c in store.query("changes", {"crawl_id": record["_id"]})}
    assert {i: c["kind"] for i, c in changes.items()} == {
        "huggingface:o/m2": "reappeared", "huggingface:o/m4": "removed",
        "huggingface:o/m5": "removed"}
    assert changes["huggingface:o/m2"]["values"]["removed_at"] == {"old": OLD, "new": None}
    assert store.count("models") == 6  # nothing deleted


@pytest.mark.parametrize(("kwargs", "reason", "incomplete"), [
    ({"limit": "3"}, "finished", False),
    ({"author": "o"}, "finished", False),
    ({}, "shutdown", False),
    ({}, "finished", True),
])
def test_partial_crawls_infer_no_removals(store: Store, kwargs: dict[str, Any], reason: str,
                                          incomplete: bool) -> None:
    record, removed = close_crawl(store, reason=reason, spider_kwargs=kwargs,
                                  incomplete=incomplete)
    assert record["complete"] is False
    assert record["counts"]["missing"] == 0
    assert {i for i, at in removed.items() if at} == set()  # m2 came back, nobody left
    assert record["arguments"] == {k: int(v) if k == "limit" else v for k, v in kwargs.items()}


@pytest.mark.parametrize("kwargs", [
    {"ids": "o/m1"}, {"filter": "en"}, {"search": "m"}, {"limit": "5"},
])
def test_each_argument_the_model_marks_restricting_keeps_removals(
        store: Store, kwargs: dict[str, Any]) -> None:
    record, removed = close_crawl(store, spider_kwargs=kwargs)
    assert record["restricted"] is True and record["complete"] is False
    assert {i for i, at in removed.items() if at} == set()


def test_arguments_that_restrict_nothing_leave_the_crawl_complete(store: Store) -> None:
    """Sorting, owner look-ups, a full refetch and the scheduler's ``_job`` still see the whole
    hub: removals are inferred, and the record holds the arguments as the model parsed them."""
    record, removed = close_crawl(store, spider_kwargs={
        "sort": "likes", "owners": "0", "full": "yes", "_job": "7f3a"})
    assert record["restricted"] is False and record["complete"] is True
    assert {i for i, at in removed.items() if at} == {"huggingface:o/m4", "huggingface:o/m5"}
    assert record["arguments"] == {"sort": "likes", "owners": "off", "full": True}


def test_a_crawl_missing_too_much_of_its_hub_retires_nothing(store: Store) -> None:
    """2 of 5 stored models unseen is over a 0.3 ratio: an empty or truncated listing that
    still finished must not mark the hub removed."""
    record, removed = close_crawl(store, PTM_HISTORY_MAX_MISSING_RATIO=0.3)
    assert record["complete"] is False
    assert record["stats"]["ptm/history/removals_refused"] == 2
    assert record["counts"]["missing"] == 0
    assert {i for i, at in removed.items() if at} == set()
    with pytest.raises(ValueError, match=r"^PTM_HISTORY_MAX_MISSING_RATIO=0: input should be"):
        crawler_for(store, PTM_HISTORY_MAX_MISSING_RATIO=0)  # the crawl does not start
