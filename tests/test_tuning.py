"""The garbage-collector tuning extension (``ptmspiders.perf.tuning``) as a component."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler

from ptmspiders.perf.tuning import InterpreterTuning
from ptmspiders.spiders.hf_models import HfModelsSpider


@pytest.fixture(autouse=True)
def gc_state() -> Iterator[None]:
    """Every test leaves the interpreter's collector as it found it."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def extension(**settings: object) -> InterpreterTuning:
    crawler = get_crawler(HfModelsSpider, {"PTM_STORE_ENABLED": False, **settings})
    crawler.stats.open_spider()  # type: ignore[union-attr]
    return InterpreterTuning.from_crawler(crawler)


def test_disabled_raises_not_configured() -> None:
    with pytest.raises(NotConfigured):
        extension(PTM_PERF_GC=False)


@pytest.mark.parametrize("value", ["50000,20", "a,b,c", [0, 10, 10], [100, -1, 10]])
def test_bad_thresholds_are_a_clear_error(value: object) -> None:
    with pytest.raises(ValueError, match=r"^PTM_GC_THRESHOLDS="):
        extension(PTM_GC_THRESHOLDS=value)


def test_thresholds_from_a_string_or_a_list() -> None:
    assert extension(PTM_GC_THRESHOLDS="40000, 5, 7").thresholds == (40000, 5, 7)
    assert extension(PTM_GC_THRESHOLDS=[40000, 5, 7]).thresholds == (40000, 5, 7)


def test_applies_for_the_crawl_and_restores_after() -> None:
    gc.set_threshold(700, 10, 10)
    ext = extension(PTM_GC_THRESHOLDS="40000,5,7")
    ext.engine_started()
    assert gc.get_threshold() == (40000, 5, 7)
    assert gc.get_freeze_count() > 0
    gc.collect(0)
    ext.spider_closed()
    assert ext.stats.get_value("ptm/gc/collections") >= 1
    assert ext.stats.get_value("ptm/gc/seconds") >= 0
    ext.engine_stopped()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
    assert ext._measure not in gc.callbacks


def test_start_up_garbage_is_collected_before_the_crawl_and_never_frozen() -> None:
    class Node:
        ref: object = None

    node = Node()
    node.ref = node  # a cycle: only a collection frees it
    gone = weakref.ref(node)
    del node
    gc.disable()  # no automatic collection in between
    try:
        ext = extension()
        assert gone() is None  # collected when the extension was built, off the crawl's clock
        ext.engine_started()
        assert gc.get_freeze_count() > 0
        ext.engine_stopped()
    finally:
        gc.enable()


def test_no_freeze_when_switched_off() -> None:
    ext = extension(PTM_GC_FREEZE=False)
    ext.engine_started()
    assert gc.get_freeze_count() == 0
    ext.engine_stopped()


def test_crawls_side_by_side_restore_after_the_last() -> None:
    gc.set_threshold(700, 10, 10)
    first, second = extension(), extension(PTM_GC_THRESHOLDS=[1000, 1, 1])
    first.engine_started()
    second.engine_started()  # the first crawl's tuning stays: one state per process
    assert gc.get_threshold() == (50_000, 20, 10)
    first.engine_stopped()
    assert gc.get_threshold() == (50_000, 20, 10)
    second.engine_stopped()
    assert gc.get_threshold() == (700, 10, 10)
