"""Resumable crawls: listing checkpoints, and a crawl killed with SIGKILL and started again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scrapy import signals
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from ptmspiders.checkpoint import FILENAME, Checkpoints, crawler_checkpoints
from ptmspiders.parsers.huggingface import parse_model
from ptmspiders.pipelines import StorePipeline
from ptmspiders.spiders.hf_models import HfModelsSpider
from tests.conftest import ROOT, crawl_stats, hub_env, run_crawl
from tests.mockhub import MockHub
from tests.mockhub.faults import fill_models, generate_models


def test_checkpoint_moves_only_past_pages_whose_ids_are_durable(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    cp = Checkpoints(path)
    cp.page("L", ["a", "b"], "page2")
    cp.page("L", ["c"], "page3")
    assert not path.exists()
    cp.settled(["c"])  # the later page is durable, the first is not: nothing moves
    assert not path.exists()
    cp.settled(["a", "b"])
    assert Checkpoints(path).resume("L") == (False, "page3")
    cp.page("L", [], None)  # an empty last page: the listing is complete
    assert Checkpoints(path).resume("L") == (True, None)
    assert json.loads(path.read_text())["listings"]["L"]["pages"] == 3
    assert Checkpoints(path).resume("other") == (False, None)


def test_without_jobdir_nothing_is_tracked(tmp_path: Path) -> None:
    cp = Checkpoints(None)
    cp.page("L", ["a"], "page2")
    cp.settled(["a"])
    assert cp.resume("L") == (False, None)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        Checkpoints(path)


def count_models(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute('SELECT COUNT(*) FROM "models"').fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the table does not exist yet


def kill_mid_crawl(spider: str, hub: MockHub, db: Path, args: list[str], at_least: int) -> int:
    """Run ``scrapy crawl`` until ``at_least`` models are stored, SIGKILL it, return the count."""
    cmd = [sys.executable, "-m", "scrapy", "crawl", spider,
           "-s", f"PTM_STORE_URI=sqlite:///{db}", "-s", "LOG_LEVEL=INFO", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=hub_env(hub), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while count_models(db) < at_least and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    return count_models(db)


@pytest.mark.crawl
def test_sigkill_and_resume_stores_every_model_once(mockhub: MockHub, tmp_path: Path) -> None:
    models = fill_models(mockhub, 600, owners=6)
    # A slow hub, so the kill lands mid-crawl.
    mockhub.faults.add("slow", attempts=None, prefix="/api/models",  # type: ignore[attr-defined]
                       delay=0.25)
    db = tmp_path / "ptm.sqlite"
    args = ["-s", "PTM_HF_PAGE_SIZE=20", "-s", f"JOBDIR={tmp_path / 'job'}",
            # Flush by time only: at the kill, the pipeline still buffers a page or more.
            "-s", "PTM_STORE_BATCH_SIZE=100000", "-s", "PTM_STORE_FLUSH_SECONDS=0.5"]
    killed_at = kill_mid_crawl("hf_models", mockhub, db, args, at_least=150)
    assert 150 <= killed_at < len(models), killed_at
    list_requests_before = len(mockhub.requests("/api/models"))

    result = run_crawl("hf_models", mockhub, tmp_path, *args, store_uri=f"sqlite:///{db}")
    stats = crawl_stats(result.stderr)
    with sqlite3.connect(db) as conn:
        rows = [r[0] for r in conn.execute('SELECT _id FROM "models"')]
    assert len(rows) == len(set(rows)) == len(models)
    assert set(rows) == {f"huggingface:{m['id']}" for m in models}
    # It resumed where the durable models ended, not from the first page.
    assert stats["ptm/resumed_listings"] == 1
    resumed = mockhub.requests("/api/models")[list_requests_before]
    assert "cursor=" in resumed.raw_target
    assert stats["ptm/list_pages"] < 30
    # A resumed run saw only part of the listing: no later step may infer removals from it.
    assert stats["ptm/incomplete/resumed"] == 1
    assert not [k for k in stats if k.startswith("ptm/incomplete/") and "resumed" not in k]
    assert os.path.exists(tmp_path / "job" / FILENAME)


def test_dropped_items_settle_and_store_flushes_report_durable_ids(tmp_path: Path) -> None:
    crawler = get_crawler(HfModelsSpider, {
        "JOBDIR": str(tmp_path / "job"), "PTM_STORE_URI": f"sqlite:///{tmp_path}/ptm.sqlite",
        "PTM_STORE_BATCH_SIZE": 100})
    crawler.stats.open_spider()
    a, b = (parse_model(m, endpoint="http://hub.test", source_url=None, seen_at="2025-01-01T"
                        "00:00:00.000Z") for m in generate_models(2))
    tracker = crawler_checkpoints(crawler)
    assert crawler_checkpoints(crawler) is tracker
    tracker.page("L", [a._id, b._id], "http://hub.test/api/models?cursor=2")
    pipe = build_from_crawler(StorePipeline, crawler)
    pipe.open_spider()
    pipe.process_item(a)
    crawler.signals.send_catch_log(signals.item_dropped, item=b, response=None,
                                   exception=Exception("invalid"), spider=None)
    assert tracker.resume("L") == (False, None)  # a is only buffered so far
    pipe.close_spider()  # the final flush makes it durable
    assert Checkpoints(tmp_path / "job" / FILENAME).resume("L") == (
        False, "http://hub.test/api/models?cursor=2")


@pytest.mark.crawl
def test_graceful_stop_and_resume_follows_the_listing_once(mockhub: MockHub,
                                                           tmp_path: Path) -> None:
    models = fill_models(mockhub, 400, owners=4)
    mockhub.faults.add("slow", attempts=None, prefix="/api/models",  # type: ignore[attr-defined]
                       delay=0.25)
    db = tmp_path / "ptm.sqlite"
    args = ["-s", "PTM_HF_PAGE_SIZE=20", "-s", f"JOBDIR={tmp_path / 'job'}"]
    cmd = [sys.executable, "-m", "scrapy", "crawl", "hf_models",
           "-s", f"PTM_STORE_URI=sqlite:///{db}", "-s", "LOG_LEVEL=INFO",
           "-s", "PTM_STORE_FLUSH_SECONDS=0.5", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=hub_env(mockhub), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while count_models(db) < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # Ctrl-C once: Scrapy stops gracefully
    finally:
        assert proc.wait(timeout=60) == 0
    assert count_models(db) < len(models)
    before = len(mockhub.requests("/api/models"))
    result = run_crawl("hf_models", mockhub, tmp_path, *args, store_uri=f"sqlite:///{db}")
    stats = crawl_stats(result.stderr)
    assert count_models(db) == len(models)
    second_run = [r.raw_target for r in mockhub.requests("/api/models")[before:]]
    # No page is followed twice: at most one extra request, for the page both the checkpoint
    # and Scrapy's saved queue pointed at.
    assert len(second_run) - len(set(second_run)) <= 1
    assert stats["ptm/list_pages"] == len(set(second_run))
