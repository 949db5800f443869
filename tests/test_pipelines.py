"""Pipelines as components, built from a crawler with ``get_crawler``."""

import sqlite3
import time

import pytest
from scrapy.exceptions import DropItem, NotConfigured
from scrapy.utils.misc import build_from_crawler

from ptmspiders.items import ModelItem, OwnerItem
from ptmspiders.pipelines import NormalizePipeline, StorePipeline, ValidatePipeline
from ptmspiders.spiders.hf_models import HfModelsSpider
from ptmspiders.stores import crawler_store
from tests.conftest import process, ptm_crawler

CRAWL = {"first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-01T00:00:00Z",
         "source_url": None}


def model(i=1, **kw):
    base = dict(_id=f"huggingface:o/m{i}", hub="huggingface", hub_id=f"o/m{i}", name=f"m{i}",
                owner="o", crawl=dict(CRAWL))
    base.update(kw)
    return ModelItem(**base)


def crawler_for(tmp_path, **settings):
    settings.setdefault("PTM_STORE_URI", f"sqlite:///{tmp_path}/ptm.sqlite")
    crawler = ptm_crawler(HfModelsSpider, settings)
    crawler.stats.open_spider()
    return crawler


def test_normalize_pipeline_canonicalises(tmp_path):
    pipe = build_from_crawler(NormalizePipeline, crawler_for(tmp_path))
    item = process(pipe, model(
        license="Apache License 2.0", libraries=["tf", "PyTorch", "pytorch"],
        github_repos=["https://github.com/Org/Repo.git", "https://github.com/org/repo/issues"],
        tags=["arxiv:2106.09685", "doi:10.57967/HF/0001", "x", "x"],
        papers=["https://arxiv.org/abs/1706.03762v5"], last_modified="2024-01-01T10:00:00+01:00",
    ))
    assert item.license == "apache-2.0"
    assert item.libraries == ["tensorflow", "pytorch"]
    assert item.github_repos == ["org/repo"]
    assert item.tags == ["arxiv:2106.09685", "doi:10.57967/HF/0001", "x"]
    assert item.papers == ["arxiv:1706.03762", "arxiv:2106.09685", "doi:10.57967/hf/0001"]
    assert item.last_modified == "2024-01-01T09:00:00Z"


def test_validate_pipeline_drops_and_counts(tmp_path):
    crawler = crawler_for(tmp_path)
    pipe = build_from_crawler(ValidatePipeline, crawler)
    assert process(pipe, model()) is not None
    with pytest.raises(DropItem, match="invalid_downloads"):
        process(pipe, model(2, downloads=-5))
    with pytest.raises(DropItem, match="invalid_hub"):
        process(pipe, model(3, hub="elsewhere"))
    pipe.close_spider()  # valid items are added to the stats in thousands, and at the close
    stats = crawler.stats.get_stats()
    assert stats["ptm/dropped/invalid_downloads"] == 1
    assert stats["ptm/dropped/invalid_hub"] == 1
    assert stats["ptm/dropped"] == 2
    assert stats["ptm/valid/models"] == 1


def test_valid_items_reach_the_stats_in_thousands(tmp_path):
    crawler = crawler_for(tmp_path)
    pipe = build_from_crawler(ValidatePipeline, crawler)
    for i in range(ValidatePipeline.REPORT_EVERY + 1):
        process(pipe, model(i))
    assert crawler.stats.get_value("ptm/valid/models") == ValidatePipeline.REPORT_EVERY
    pipe.close_spider()
    assert crawler.stats.get_value("ptm/valid/models") == ValidatePipeline.REPORT_EVERY + 1


def test_store_pipeline_batches_and_flushes_on_close(tmp_path):
    crawler = crawler_for(tmp_path, PTM_STORE_BATCH_SIZE=3, PTM_STORE_FLUSH_SECONDS=3600)
    pipe = build_from_crawler(StorePipeline, crawler)
    pipe.open_spider()
    for i in range(4):
        process(pipe, model(i))
    owner = OwnerItem(_id="huggingface:o", hub="huggingface", name="o", crawl=dict(CRAWL))
    process(pipe, owner)
    assert pipe.writer.behind  # a file store is written behind the crawl
    pipe.writer.sync()
    store = crawler_store(crawler)
    assert store.count("models") == 3  # one full batch written, one item buffered
    assert crawler.stats.get_value("ptm/stored/models") == 3
    pipe.close_spider()
    assert store.count("models") == 4
    assert store.count("owners") == 1
    assert crawler.stats.get_value("ptm/stored/models") == 4


def test_store_pipeline_reports_how_long_its_writer_was_busy(tmp_path):
    """``ptm/store/writer_busy_seconds``: the writer's time on batches, its pace beside the
    crawl's (``ptm/store/wait_seconds``: how long the crawl waited for it)."""
    crawler = crawler_for(tmp_path, PTM_STORE_BATCH_SIZE=2, PTM_STORE_FLUSH_SECONDS=3600,
                          PTM_STORE_WRITER="thread")  # whose store this test can slow down
    pipe = build_from_crawler(StorePipeline, crawler)
    pipe.open_spider()
    writer_store = pipe.writer.thread_store
    real_upsert = writer_store.upsert

    def slow(collection, docs):
        time.sleep(0.2)
        return real_upsert(collection, docs)
    writer_store.upsert = slow
    for i in range(4):
        process(pipe, model(i))
    pipe.close_spider()
    assert crawler_store(crawler).count("models") == 4
    assert 0.4 <= crawler.stats.get_value("ptm/store/writer_busy_seconds") < 30
    assert crawler.stats.get_value("ptm/store/wait_seconds") >= 0


def test_store_pipeline_counts_a_failed_write_and_goes_on(tmp_path):
    crawler = crawler_for(tmp_path, PTM_STORE_BATCH_SIZE=2, PTM_STORE_FLUSH_SECONDS=3600,
                          PTM_STORE_WRITER="thread")  # whose store this test can slow down
    pipe = build_from_crawler(StorePipeline, crawler)
    pipe.open_spider()
    writer_store = pipe.writer.thread_store
    real_upsert = writer_store.upsert
    calls = []

    def flaky(collection, docs):
        calls.append(len(docs))
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real_upsert(collection, docs)
    writer_store.upsert = flaky
    items = [model(i) for i in range(5)]
    assert [process(pipe, i) for i in items] == items  # every item comes through
    pipe.close_spider()
    assert crawler_store(crawler).count("models") == 3  # the first batch of 2 is lost, counted
    assert crawler.stats.get_value("ptm/store/failed/models") == 2
    assert crawler.stats.get_value("ptm/stored/models") == 3


def test_store_pipeline_drops_an_item_its_store_cannot_encode_and_keeps_the_batch(tmp_path):
    """An integer beyond 64 bits fits the schema, not JSON as orjson writes it: that one item
    is dropped and counted, where it would have cost its whole batch in the writer."""
    crawler = crawler_for(tmp_path, PTM_STORE_BATCH_SIZE=3, PTM_STORE_FLUSH_SECONDS=3600)
    validate = build_from_crawler(ValidatePipeline, crawler)
    pipe = build_from_crawler(StorePipeline, crawler)
    pipe.open_spider()
    items = [model(i) for i in range(4)]
    items[1].raw = {"n": 2**70}
    for item in items:
        process(validate, item)
    for i, item in enumerate(items):
        if i == 1:
            with pytest.raises(DropItem, match="unencodable: huggingface:o/m1"):
                process(pipe, item)
        else:
            assert process(pipe, item) is item
    pipe.close_spider()
    assert sorted(crawler_store(crawler).ids("models")) == [
        "huggingface:o/m0", "huggingface:o/m2", "huggingface:o/m3"]
    assert crawler.stats.get_value("ptm/dropped/unencodable") == 1
    assert crawler.stats.get_value("ptm/dropped") == 1
    assert crawler.stats.get_value("ptm/stored/models") == 3


def test_store_pipeline_switch_and_bad_settings(tmp_path):
    with pytest.raises(NotConfigured):
        build_from_crawler(StorePipeline, crawler_for(tmp_path, PTM_STORE_ENABLED=False))
    with pytest.raises(ValueError, match="PTM_STORE_BATCH_SIZE"):
        build_from_crawler(StorePipeline, crawler_for(tmp_path, PTM_STORE_BATCH_SIZE=0))
    with pytest.raises(ValueError, match="PTM_STORE_TRANSACTION_SIZE"):
        build_from_crawler(StorePipeline, crawler_for(tmp_path, PTM_STORE_TRANSACTION_SIZE=0))
