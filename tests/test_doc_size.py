"""Documents past PTM_MAX_DOC_BYTES: cut field by field (doc_size.fit), then in the store stage."""

from __future__ import annotations

import copy

import orjson
import pytest
from scrapy.exceptions import DropItem
from scrapy.utils.misc import build_from_crawler

from ptmspiders import doc_size
from ptmspiders.items import ModelItem, to_doc
from ptmspiders.pipelines import StorePipeline, ValidatePipeline
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.spiders.hf_models import HfModelsSpider
from ptmspiders.stores import crawler_store
from tests.conftest import process, ptm_crawler

CRAWL = {"first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-01T00:00:00Z",
         "source_url": None}
MB = 1_000_000


def model(i: int = 1, **kw: object) -> ModelItem:
    base: dict[str, object] = dict(
        _id=f"huggingface:o/m{i}", hub="huggingface", hub_id=f"o/m{i}", name=f"m{i}",
        owner="o", crawl=dict(CRAWL))
    base.update(kw)
    return ModelItem(**base)


def oversized() -> ModelItem:
    """A card's front matter and a README body as a hub could send them: 3.5 MB in all."""
    return model(
        description="d" * 200_000,
        tags=["ok"],
        card={"present": True, "has_model_index": False,
              "sections": [f"Evaluation {i}" for i in range(30_000)]},
        raw={"cardData": {"summary": "s" * 3 * MB, "license": "mit"}, "id": "o/m1"},
        extra={"note": "kept"})


def fit(doc: dict, limit: int = MB) -> tuple[dict, list[doc_size.Cut]]:
    fitted = doc_size.fit(doc, doc_size.size_of(doc), limit)
    assert doc_size.size_of(fitted[0]) <= limit
    assert fitted is not None
    return fitted


def test_the_largest_field_is_cut_first_and_only_as_far_as_needed() -> None:
    doc = to_doc(oversized())
    before = copy.deepcopy(doc)
    new, cuts = fit(doc)
    assert doc == before  # the input is not changed
    assert doc_size.size_of(new) <= MB
    assert [c.field for c in cuts] == ["raw.cardData.summary"]
    kept = new["raw"]["cardData"]["summary"]
    assert 0 < len(kept) < 3 * MB and "s" * len(kept) == kept  # its start, not emptied
    assert new["raw"]["cardData"]["license"] == "mit" and new["raw"]["id"] == "o/m1"
    assert new["description"] == doc["description"] and new["card"] == doc["card"]
    assert new["extra"] == {"note": "kept", "truncated": [
        {"field": "raw.cardData.summary", "bytes": cuts[0].bytes}]}
    assert cuts[0].bytes > 2 * MB
    assert schema_error("model", new) is None


def test_lists_keep_their_first_elements_and_typed_objects_their_keys() -> None:
    doc = to_doc(oversized())
    new, cuts = fit(doc, 100_000)
    assert doc_size.size_of(new) <= 100_000
    # raw must go whole (a free-form object loses keys), then the card's and description's
    # values are cut to what is left
    assert {c.field for c in cuts} >= {"raw.cardData", "card.sections", "description"}
    assert new["raw"] == {}
    sections = new["card"]["sections"]
    assert sections == doc["card"]["sections"][:len(sections)]
    assert new["card"]["present"] is True and new["card"]["has_model_index"] is False
    assert (new["_id"], new["hub_id"], new["crawl"]) == (doc["_id"], doc["hub_id"], doc["crawl"])
    assert schema_error("model", new) is None


def test_free_form_keys_may_go_and_many_cuts_are_summed_per_field() -> None:
    doc = to_doc(model(raw={f"k{i}": "v" * 1000 for i in range(2000)}))
    new, cuts = fit(doc, 50_000)
    assert doc_size.size_of(new) <= 50_000
    assert len(new["raw"]) < 2000 and len(cuts) > doc_size.MAX_MARKS
    assert new["extra"]["truncated"] == [{"field": "raw", "bytes": sum(c.bytes for c in cuts)}]


def test_identity_fields_are_never_cut() -> None:
    doc = to_doc(model(hub_id="x" * 60_000, raw={"blob": "y" * 60_000}))
    new, cuts = doc_size.fit(doc, doc_size.size_of(doc), 50_000)
    assert new["hub_id"] == doc["hub_id"] and new["_id"] == doc["_id"]
    assert "raw" in {c.field.split(".")[0] for c in cuts}
    assert doc_size.size_of(new) > 50_000  # the identity alone is over: kept, the rest cut


def crawler_for(uri: str, **settings: object):
    crawler = ptm_crawler(HfModelsSpider, {"PTM_STORE_URI": uri, **settings})
    crawler.stats.open_spider()
    return crawler


@pytest.fixture(params=["sqlite", "mongomock"])
def store_uri(request: pytest.FixtureRequest, tmp_path) -> str:
    """SQLite's encoding gives the size; mongomock's documents are measured as JSON."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ptm.sqlite"
    return f"mongomock://localhost/ptm_doc_size_{tmp_path.name}"


def run(crawler, items: list[ModelItem]) -> list[object]:
    validate = build_from_crawler(ValidatePipeline, crawler)
    store = build_from_crawler(StorePipeline, crawler)
    store.open_spider()
    out: list[object] = []
    for item in items:
        process(validate, item)
        try:
            out.append(process(store, item))
        except DropItem as exc:
            out.append(exc)
    store.close_spider()
    return out


def test_an_oversized_model_is_kept_cut_marked_counted_and_stored(store_uri: str) -> None:
    crawler = crawler_for(store_uri)
    big, small = oversized(), model(2)
    assert run(crawler, [big, small]) == [big, small]
    store = crawler_store(crawler)
    doc = store.get("models", "huggingface:o/m1")
    assert doc is not None and len(orjson.dumps(doc)) <= MB
    assert [t["field"] for t in doc["extra"]["truncated"]] == ["raw.cardData.summary"]
    assert doc["extra"]["note"] == "kept" and doc["raw"]["cardData"]["license"] == "mit"
    assert schema_error("model", doc) is None
    assert big.raw == doc["raw"] and big.extra == doc["extra"]  # the item says what is stored
    assert store.get("models", "huggingface:o/m2")["extra"] == {}
    stats = crawler.stats
    assert stats.get_value("ptm/truncated") == 1
    assert stats.get_value("ptm/truncated/raw") == 1
    assert stats.get_value("ptm/stored/models") == 2
    assert stats.get_value("ptm/dropped") is None


def test_a_model_whose_identity_alone_is_too_large_is_kept_and_counted(tmp_path) -> None:
    crawler = crawler_for(f"sqlite:///{tmp_path}/ptm.sqlite", PTM_MAX_DOC_BYTES=20_000)
    out = run(crawler, [model(1, hub_id="x" * 30_000), model(2)])
    assert not isinstance(out[0], DropItem)
    assert crawler.stats.get_value("ptm/oversized_identity") == 1
    assert crawler.stats.get_value("ptm/dropped/oversized") is None
    assert len(crawler_store(crawler).ids("models")) == 2


def test_a_model_no_store_can_hold_is_dropped_and_counted(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(doc_size, "HARD_MAX_DOC_BYTES", 50_000)
    crawler = crawler_for(f"sqlite:///{tmp_path}/ptm.sqlite", PTM_MAX_DOC_BYTES=20_000)
    out = run(crawler, [model(1, hub_id="x" * 60_000), model(2)])
    assert isinstance(out[0], DropItem) and "oversized" in str(out[0])
    assert crawler.stats.get_value("ptm/dropped/oversized") == 1
    assert crawler_store(crawler).ids("models") == {"huggingface:o/m2"}


def test_no_bound_and_bad_bounds(tmp_path) -> None:
    crawler = crawler_for(f"sqlite:///{tmp_path}/ptm.sqlite", PTM_MAX_DOC_BYTES=0)
    big = oversized()
    run(crawler, [big])
    doc = crawler_store(crawler).get("models", "huggingface:o/m1")
    assert doc is not None and doc["raw"] == big.raw and "truncated" not in doc["extra"]
    for bad in (-1, 100, "lots"):
        with pytest.raises(ValueError, match="PTM_MAX_DOC_BYTES"):
            build_from_crawler(StorePipeline, crawler_for(f"sqlite:///{tmp_path}/x.sqlite",
                                                          PTM_MAX_DOC_BYTES=bad))
