"""The speed work's add-on (``ptmspiders.perf``): each piece on by default, each switch
leaves its piece out and Scrapy's default in its place."""

from __future__ import annotations

from typing import Any

import pytest
from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.extensions.corestats import CoreStats as ScrapyCoreStats
from scrapy.logformatter import LogFormatter
from scrapy.pipelines import ItemPipelineManager
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object
from scrapy.utils.test import get_crawler

from ptmspiders import settings as project_settings
from ptmspiders.perf.addon import SWITCHES, enabled
from ptmspiders.perf.itemcount import CoreStats, CountingItemProcessor, counted_by_processor
from ptmspiders.perf.logformatter import PtmLogFormatter
from ptmspiders.perf.tuning import InterpreterTuning

# The project's settings but the reactor (a test process has its own, installed by whichever
# test came first).
PROJECT = {k: getattr(project_settings, k) for k in dir(project_settings)
           if k.isupper() and k != "TWISTED_REACTOR"}


def crawler(**settings: Any) -> Crawler:
    """A crawler with the project's settings (the add-on applied), and ``settings`` on top."""
    return get_crawler(Spider, {**PROJECT, **settings})


def extensions(c: Crawler) -> list[Any]:
    return [load_object(p) for p in build_component_list(c.settings.getwithbase("EXTENSIONS"))]


def test_every_piece_is_on_in_the_project() -> None:
    c = crawler()
    assert load_object(c.settings["LOG_FORMATTER"]) is PtmLogFormatter
    assert load_object(c.settings["ITEM_PROCESSOR"]) is CountingItemProcessor
    assert counted_by_processor(c.settings)
    exts = extensions(c)
    assert CoreStats in exts and ScrapyCoreStats not in exts
    assert InterpreterTuning in exts


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_a_switch_leaves_its_piece_out_and_only_it(switch: str) -> None:
    on, off = crawler(), crawler(**{switch: False})
    assert not enabled(off.settings, switch)
    changed = {name for name in ("LOG_FORMATTER", "ITEM_PROCESSOR")
               if off.settings[name] != on.settings[name]}
    expected = {"PTM_PERF_LOG_FORMATTER": {"LOG_FORMATTER"},
                "PTM_PERF_ITEM_COUNT": {"ITEM_PROCESSOR"}}
    assert changed == expected.get(switch, set())
    if switch == "PTM_PERF_LOG_FORMATTER":
        assert load_object(off.settings["LOG_FORMATTER"]) is LogFormatter
    if switch == "PTM_PERF_ITEM_COUNT":
        assert load_object(off.settings["ITEM_PROCESSOR"]) is ItemPipelineManager
        assert ScrapyCoreStats in extensions(off) and CoreStats not in extensions(off)


def test_the_tuning_extension_goes_with_its_switch() -> None:
    assert InterpreterTuning not in extensions(crawler(PTM_PERF_GC=False))


def test_a_project_setting_wins_over_the_add_on() -> None:
    c = crawler(LOG_FORMATTER="scrapy.logformatter.LogFormatter")
    assert load_object(c.settings["LOG_FORMATTER"]) is LogFormatter


def test_an_unknown_switch_is_an_error() -> None:
    with pytest.raises(KeyError, match="PTM_PERF_TYPO"):
        enabled(crawler().settings, "PTM_PERF_TYPO")
