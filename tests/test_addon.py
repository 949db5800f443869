"""The project's add-on (``ptmspiders.addon``): its middlewares and extensions are in every
crawl, also when a component dict is given on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scrapy import Spider
from scrapy.downloadermiddlewares.retry import RetryMiddleware as ScrapyRetryMiddleware
from scrapy.extensions.closespider import CloseSpider
from scrapy.spidermiddlewares.urllength import UrlLengthMiddleware as ScrapyUrlLengthMiddleware
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object
from scrapy.utils.test import get_crawler

from ptmspiders import settings as project_settings
from ptmspiders.addon import DOWNLOADER_MIDDLEWARES, EXTENSIONS, REQUIRED
from ptmspiders.history import CrawlHistory
from ptmspiders.middlewares.origin import SameOriginRedirectMiddleware
from ptmspiders.middlewares.ratelimit import RateLimitMiddleware
from ptmspiders.middlewares.urllength import UrlLengthMiddleware
from ptmspiders.stores import open_store
from tests.conftest import ROOT, crawl_stats, one_error_line, run_crawl
from tests.mockhub import MockHub

PROJECT = {k: getattr(project_settings, k) for k in dir(project_settings)
           if k.isupper() and k != "TWISTED_REACTOR"}
OURS = [load_object(p) for p in EXTENSIONS]


def components(name: str, **settings: Any) -> list[Any]:
    c = get_crawler(Spider, {**PROJECT, **settings})
    return [load_object(p) if isinstance(p, str) else p
            for p in build_component_list(c.settings.getwithbase(name))]


def extensions(**settings: Any) -> list[Any]:
    return components("EXTENSIONS", **settings)


def test_the_project_has_its_extensions_in_their_order() -> None:
    exts = extensions()
    assert [e for e in exts if e in OURS] == OURS


def test_a_command_line_dict_adds_to_them_instead_of_replacing_them() -> None:
    exts = extensions(EXTENSIONS={"scrapy.extensions.closespider.CloseSpider": 0})
    assert CloseSpider in exts
    assert all(e in exts for e in OURS)


def test_none_switches_one_off_but_never_the_stores_context() -> None:
    exts = extensions(EXTENSIONS={"ptmspiders.history.CrawlHistory": None, REQUIRED: None})
    assert CrawlHistory not in exts
    assert load_object(REQUIRED) in exts


def test_a_command_line_middleware_dict_keeps_the_throttle_and_the_guards() -> None:
    mws = components("DOWNLOADER_MIDDLEWARES", DOWNLOADER_MIDDLEWARES={
        "scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware": 760})
    assert all(load_object(p) in mws for p, order in DOWNLOADER_MIDDLEWARES.items()
               if order is not None)
    assert RateLimitMiddleware in mws and SameOriginRedirectMiddleware in mws
    assert ScrapyRetryMiddleware not in mws  # ours subclasses it, and replaces it
    spider_mws = components("SPIDER_MIDDLEWARES", SPIDER_MIDDLEWARES={})
    assert UrlLengthMiddleware in spider_mws and ScrapyUrlLengthMiddleware not in spider_mws


def test_a_user_can_still_switch_a_middleware_off_or_move_it() -> None:
    mws = components("DOWNLOADER_MIDDLEWARES", DOWNLOADER_MIDDLEWARES={
        "ptmspiders.middlewares.ratelimit.RateLimitMiddleware": None,
        "scrapy.downloadermiddlewares.retry.RetryMiddleware": 500})
    assert RateLimitMiddleware not in mws
    assert ScrapyRetryMiddleware in mws  # named by the user: theirs, not ours


@pytest.mark.crawl
def test_a_crawl_with_extensions_on_the_command_line_stores_its_items(mockhub: MockHub,
                                                                    tmp_path: Path) -> None:
    extensions = json.dumps({"scrapy.extensions.closespider.CloseSpider": 0})
    middlewares = json.dumps({"scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware": 760})
    stats = crawl_stats(run_crawl("onnx_zoo", mockhub, tmp_path, "-s", f"EXTENSIONS={extensions}",
                                  "-s", f"DOWNLOADER_MIDDLEWARES={middlewares}"))
    assert stats["ptm/stored/models"] == 5
    assert stats["ptm/ratelimit/probes"] >= 1  # the throttle still paced the hub's API
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        assert store.count("models", {"hub": "onnx_zoo"}) == 5
        assert store.count("crawls", {"spider": "onnx_zoo"}) == 1  # history still ran


@pytest.mark.parametrize("value", ['{"nope.Nope": 0}', '{"ptmspiders.history.Nope": null}',
                                   '{"nope": 0}'])
def test_a_component_that_names_nothing_is_one_error_line(tmp_path: Path, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "onnx_zoo", "-s", f"EXTENSIONS={value}",
         "-s", f"PTM_STORE_URI=sqlite:///{tmp_path}/ptm.sqlite"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    error = one_error_line(result, 2)
    assert "EXTENSIONS: cannot load" in error, result.stderr[-2000:]
    assert not (tmp_path / "ptm.sqlite").exists()  # nothing was opened
