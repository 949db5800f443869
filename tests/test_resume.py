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
from typing import Any

import pytest
from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.http import HtmlResponse
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from ptmspiders.checkpoint import (
    FILENAME,
    RUNNING,
    Checkpoints,
    KilledRunRecovery,
)
from ptmspiders.context import crawl_context
from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.parsers.huggingface import parse_model
from ptmspiders.pipelines import StorePipeline
from ptmspiders.spiders.hf_models import LIST_PRIORITY, HfModelsSpider
from tests.conftest import ROOT, crawl_stats, hub_env, process, ptm_crawler, run_crawl
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


def test_killed_run_recovery_resets_scrapys_state_only_after_an_unclean_stop(
        tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "requests.queue" / "p0").mkdir(parents=True)
    (job / "requests.seen").write_text("abc\n")
    (job / FILENAME).write_text('{"listings": {}}')

    def build() -> tuple[KilledRunRecovery, Any]:
        crawler = get_crawler(HfModelsSpider, {"JOBDIR": str(job)})
        crawler.stats.open_spider()
        return KilledRunRecovery.from_crawler(crawler), crawler

    ext, crawler = build()  # no marker: the last run closed cleanly (or predates the marker)
    assert (job / "requests.queue").exists() and (job / "requests.seen").exists()
    assert not (job / RUNNING).exists()  # not before the crawl runs
    ext.spider_opened()
    assert (job / RUNNING).exists()
    ext.spider_closed()
    assert not (job / RUNNING).exists()

    (job / RUNNING).write_text("1\n")  # a run that was killed
    ext, crawler = build()
    ext.spider_opened()
    assert not (job / "requests.queue").exists() and not (job / "requests.seen").exists()
    assert (job / FILENAME).exists()  # the checkpoints are what the crawl resumes from
    assert crawler.stats.get_value("ptm/jobdir/killed_run_state_discarded") == 2

    for settings in ({}, {"JOBDIR": str(job), "PTM_KILLED_RUN_RECOVERY_ENABLED": False}):
        with pytest.raises(NotConfigured):
            KilledRunRecovery.from_crawler(get_crawler(HfModelsSpider, settings))


def test_listing_pages_asked_for_and_never_answered_mark_the_crawl_incomplete() -> None:
    crawler = get_crawler(HfModelsSpider)
    crawler.stats.open_spider()
    spider = HfModelsSpider.from_crawler(crawler)
    first = spider.list_request("http://hub.test/api/models", expect="list")
    second = spider.list_request("http://hub.test/api/models?cursor=2", expect="list")
    # Answered after a redirect: the page is known by the URL it was asked for.
    answer = HtmlResponse("http://hub.test/elsewhere", request=first)
    assert spider.list_answered(answer)
    # The same page answered again (queued twice after a graceful stop) is skipped, counted.
    assert not spider.list_answered(answer)
    assert crawler.stats.get_value("ptm/list_pages_duplicate") == 1
    crawler.signals.send_catch_log(signals.spider_idle, spider=spider)
    assert crawler.stats.get_value("ptm/incomplete/list_request_lost") == 1
    assert "list_request_lost" in spider.incomplete_reasons
    assert second.meta["ptm_expect"] == "list"
    crawler.signals.send_catch_log(signals.spider_idle, spider=spider)  # reported once
    assert crawler.stats.get_value("ptm/incomplete/list_request_lost") == 1


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
    stats = crawl_stats(result)
    with sqlite3.connect(db) as conn:
        rows = [r[0] for r in conn.execute('SELECT _id FROM "models"')]
    assert len(rows) == len(set(rows)) == len(models), result.stderr[-6000:]
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


def stop_after_pages_and_fake_a_kill(hub: MockHub, tmp_path: Path, args: list[str]) -> Path:
    """A first run that stops after 3 pages leaves Scrapy's disk queue holding the next list
    page; this then makes the JOBDIR look as a SIGKILL leaves it: no ``active.json``, queue
    files whose size header was never written, and the running-crawl marker still there."""
    job = tmp_path / "job"
    run_crawl("hf_models", hub, tmp_path, *args, "-s", "CLOSESPIDER_PAGECOUNT=3")
    queues = job / "requests.queue"
    (queues / "active.json").unlink()
    slots = [d for d in queues.iterdir() if d.is_dir()]  # one per download slot (the mock)
    assert slots, list(queues.iterdir())
    for slot in slots:
        # Every queue file, and the one list pages go to (Scrapy names it by the negated
        # priority) whether or not the stop left a page in it.
        for path in {*slot.iterdir(), slot / str(-LIST_PRIORITY)}:
            path.write_bytes(b"\0\0")  # shorter than a queue's 4-byte size header
    (job / RUNNING).write_text("12345\n")
    return job


@pytest.mark.crawl
def test_resume_after_a_kill_discards_scrapys_unsaved_queue(mockhub: MockHub,
                                                            tmp_path: Path) -> None:
    models = fill_models(mockhub, 200, owners=4)
    args = ["-s", "PTM_HF_PAGE_SIZE=20", "-s", f"JOBDIR={tmp_path / 'job'}"]
    job = stop_after_pages_and_fake_a_kill(mockhub, tmp_path, args)

    result = run_crawl("hf_models", mockhub, tmp_path, *args)
    stats = crawl_stats(result)
    assert "did not stop cleanly" in result.stderr
    assert stats["ptm/jobdir/killed_run_state_discarded"] == 2  # the queue and requests.seen
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert count_models(tmp_path / "ptm.sqlite") == len(models)
    assert not [k for k in stats if k.startswith("ptm/incomplete/") and "resumed" not in k]
    assert not (job / RUNNING).exists()  # a clean close: the next run keeps Scrapy's queue


@pytest.mark.crawl
def test_a_listing_page_lost_inside_scrapy_marks_the_crawl_incomplete(mockhub: MockHub,
                                                                      tmp_path: Path) -> None:
    fill_models(mockhub, 200, owners=4)
    args = ["-s", "PTM_HF_PAGE_SIZE=20", "-s", f"JOBDIR={tmp_path / 'job'}"]
    stop_after_pages_and_fake_a_kill(mockhub, tmp_path, args)

    # Without the recovery, the scheduler fails to push the next list page onto the broken
    # queue (Scrapy logs the error and goes on): the listing ends early, which must not pass
    # for a complete crawl.
    result = run_crawl("hf_models", mockhub, tmp_path, *args,
                       "-s", "PTM_KILLED_RUN_RECOVERY_ENABLED=0", expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    assert "struct.error" in result.stderr
    assert count_models(tmp_path / "ptm.sqlite") < 200
    assert stats["ptm/incomplete/list_request_lost"] == 1
    assert "Listing pages were lost before being fetched" in result.stderr


def test_dropped_items_settle_and_store_flushes_report_durable_ids(tmp_path: Path) -> None:
    crawler = ptm_crawler(HfModelsSpider, {
        "JOBDIR": str(tmp_path / "job"), "PTM_STORE_URI": f"sqlite:///{tmp_path}/ptm.sqlite",
        "PTM_STORE_BATCH_SIZE": 100})
    crawler.stats.open_spider()
    a, b = (parse_model(m, endpoint="http://hub.test", source_url=None, seen_at="2025-01-01T"
                        "00:00:00.000Z") for m in generate_models(2))
    tracker = crawl_context(crawler).checkpoints
    assert crawl_context(crawler).checkpoints is tracker
    tracker.page("L", [a._id, b._id], "http://hub.test/api/models?cursor=2")
    pipe = build_from_crawler(StorePipeline, crawler)
    pipe.open_spider()
    process(pipe, a)
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
        # Stopped before its end: incomplete, which the exit status says (the JOBDIR resumes).
        assert proc.wait(timeout=60) == EXIT_INCOMPLETE
    assert count_models(db) < len(models)
    before = len(mockhub.requests("/api/models"))
    result = run_crawl("hf_models", mockhub, tmp_path, *args, store_uri=f"sqlite:///{db}")
    stats = crawl_stats(result)
    assert count_models(db) == len(models)
    second_run = [r.raw_target for r in mockhub.requests("/api/models")[before:]]
    # No page is followed twice: at most one extra request, for the page both the checkpoint
    # and Scrapy's saved queue pointed at.
    assert len(second_run) - len(set(second_run)) <= 1
    assert stats["ptm/list_pages"] == len(set(second_run))
