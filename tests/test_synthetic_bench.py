"""scripts/bench.py end to end on a small synthetic hub: the numbers it reports are there and
consistent (never how fast: no timed assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ptmspiders.stores import open_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.crawl
def test_bench_reports_requests_memory_and_quota_times(tmp_path: Path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        # Commits every 500 models: the checkpoint thread has run before the crawl closes.
        [sys.executable, "scripts/bench.py", "--n", "2500", "--no-raw", "--workdir",
         str(tmp_path / "work"), "--json", str(out), "-s", "PTM_STORE_TRANSACTION_SIZE=500"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in ("n", "models_per_s", "baseline_models_per_s", "ratio_to_baseline",
                "peak_rss_mb", "list_requests_per_1000_models", "sweep_seconds_at_quota",
                "sweep_seconds_at_measured_speed"):
        assert key in r, key
    assert r["n"] == r["models_stored"] == 2500
    assert r["dropped"] == 0
    assert r["list_requests"] == 3  # 1,000 per page
    assert r["list_requests_per_1000_models"] == 1.2
    assert r["models_per_s"] > 0 and r["baseline_models_per_s"] > 0 and r["peak_rss_mb"] > 20
    # Per-thread CPU, sampled while the crawl ran: the crawl's own thread did the parsing, and
    # no thread used more than the whole process.
    assert 0 < r["crawl_thread_cpu_seconds"] <= r["cpu_seconds"]
    assert 0 <= r["other_threads_cpu_seconds"] <= r["cpu_seconds"]
    assert 0 < r["baseline_crawl_thread_cpu_seconds"] <= r["baseline_cpu_seconds"]
    assert r["ratio_to_baseline"] == pytest.approx(
        r["models_per_s"] / r["baseline_models_per_s"], rel=0.01)
    # 2M models, 1.2 calls per 1,000 at 500 / 1,000 / 2,500 / 3,000 / 6,000 calls per 300 s.
    assert r["sweep_seconds_at_quota"] == {
        "anonymous": 1440.0, "free": 720.0, "pro": 288.0, "team": 240.0, "enterprise": 120.0}
    # Owners, owners=orgs (the default, at the top level): exactly one call per owner, none
    # at the users' endpoint, none again once stored.
    assert r["owners_mode"] == "orgs"
    assert r["owners_stored"] > 300
    assert r["owner_requests"] == r["owners_stored"] and r["owner_requests_per_owner"] == 1.0
    assert r["owner_requests_to_users_endpoint"] == 0
    assert r["users_without_overview"] == r["owners_by_type"]["user"] > 0
    assert r["recrawl_owner_requests"] == 0
    # owners=full: the same owners and organisations, every user's overview, each owner asked
    # at most once per kind.
    f = r["owners_full_mode"]
    assert f["owners_by_type"] == r["owners_by_type"]
    assert f["owners_stored"] <= f["owner_requests"] <= 2 * f["owners_stored"]
    assert f["users_without_overview"] == 0
    assert f["recrawl_owner_requests"] == 0
    # The sweep's own stats reach the report, as its crawl record has them: the writer's
    # commits were checkpointed beside it.
    with open_store(f"sqlite:///{tmp_path / 'work' / 'sweep.sqlite'}") as store:
        (record,) = store.find("crawls")
    recorded = record["stats"]
    assert recorded["ptm/store/checkpoints"] >= 1
    assert r["store_checkpoint_seconds"] == recorded["ptm/store/checkpoint_seconds"]
    assert r["store_wait_seconds"] == recorded["ptm/store/wait_seconds"]
    assert r["runs"]["baseline"]["requests"] == {"list": 3}
    # The machine's speed before each run, so runs on different days compare.
    assert set(r["runs"]) == {"sweep", "baseline", "owners-orgs", "recrawl-orgs",
                              "owners-full", "recrawl-full"}
    assert all(run["calibration_ms"] > 0 for run in r["runs"].values())
    assert "machine calibration, ms per run" in result.stdout
    assert "sweep models/s into SQLite" in result.stdout
    assert (tmp_path / "work" / "sweep.sqlite").exists()  # kept: --workdir was given


@pytest.mark.crawl
def test_bench_repeat_reports_every_run_and_the_medians(tmp_path: Path):
    out = tmp_path / "bench.json"
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--n", "1500", "--no-raw", "--no-owners",
         "--repeat", "3", "--workdir", str(work), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    r = json.loads(out.read_text())
    rep = r["repeats"]
    assert len(rep["sweep_models_per_s"]) == len(rep["baseline_models_per_s"]) == 3
    assert len(rep["ratio_per_pair"]) == 3
    assert len(rep["sweep_peak_rss_mb"]) == 3 and r["peak_rss_mb"] in rep["sweep_peak_rss_mb"]
    assert "sweep runs, peak RSS (MB)" in result.stdout
    assert r["models_per_s"] == sorted(rep["sweep_models_per_s"])[1]
    assert r["baseline_models_per_s"] == sorted(rep["baseline_models_per_s"])[1]
    assert r["n"] == r["models_stored"] == 1500
    for label in ("sweep", "sweep-2", "sweep-3", "baseline", "baseline-3"):
        assert (work / f"{label}.log").exists(), label
    assert "ratio per sweep/baseline pair" in result.stdout
    assert len(rep["sweep_calibration_ms"]) == len(rep["baseline_calibration_ms"]) == 3
    assert min(rep["sweep_calibration_ms"] + rep["baseline_calibration_ms"]) > 0


def test_bench_stages_reports_each_stage_per_model(tmp_path: Path):
    out = tmp_path / "stages.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench_stages.py", "--pages", "1", "--repeat", "2",
         "--offset", "0", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["models"] == 1000 and r["repeat"] == 2
    assert list(r["us_per_model"]) == ["decode", "parse", "normalize", "validate", "encode"]
    assert all(v > 0 for v in r["us_per_model"].values())
    assert 1000 < r["page_bytes_per_model"] < 20_000  # a few KB per model, as on the Hub
    assert "total" in result.stdout


def test_bench_pipelines_reports_each_stage_per_model(tmp_path: Path):
    out = tmp_path / "pipelines.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench_pipelines.py", "--pages", "1", "--repeat", "1",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["models"] == 1000 and r["repeat"] == 1
    assert list(r["us_per_model"]) == ["normalize", "validate", "store"]
    assert all(v > 0 for v in r["us_per_model"].values())


def test_bench_stages_rejects_bad_arguments():
    result = subprocess.run([sys.executable, "scripts/bench_stages.py", "--pages", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--pages" in result.stderr


@pytest.mark.crawl
def test_bench_pieces_reports_each_piece_against_every_piece_on(tmp_path: Path):
    out = tmp_path / "pieces.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench_pieces.py", "--n", "1500", "--repeat", "1",
         "--only", "gc", "--workdir", str(tmp_path / "work"), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    r = json.loads(out.read_text())
    assert set(r["runs"]) == {"all_on", "gc"}
    gc = r["pieces"]["gc"]
    assert gc["switch"] == ["PTM_PERF_GC=False"]
    assert gc["off_models_per_s"] > 0 and gc["off_cpu_s"] > 0 and r["all_on_cpu_s"] > 0
    assert gc["cpu_gain_percent"] == round(100 * (gc["off_cpu_s"] / r["all_on_cpu_s"] - 1), 1)
    assert "decode_once" not in r["pieces"]  # --only
