#!/usr/bin/env python
"""Benchmark the Hugging Face crawl at hub scale against a synthetic mock hub.

One run, one process tree: the mock hub (``python -m tests.mockhub --synthetic N``) in one
subprocess, then each crawl in its own ``scrapy crawl`` subprocess:

- ``sweep``: ``hf_models`` into a fresh SQLite store with the project's pipelines (normalise,
  validate, store), owner look-ups off;
- ``baseline``: the same spider, the same requests, ``ITEM_PIPELINES={}`` and no store: what
  Scrapy and the parser cost without the project's pipelines (``--repeat K`` runs the sweep
  and the baseline K times, alternately, and reports the median of each);
- ``raw`` (``--raw``): a minimal Scrapy spider that only decodes the same list pages and yields
  the entries as dicts, following the ``Link`` cursor (no owners, no parsing into items);
- ``owners-<mode>`` and ``recrawl-<mode>`` (unless ``--no-owners``): ``hf_models`` with owner
  look-ups into a fresh store, then again into the same store: owners stored by the first must
  cost no request. ``--owners-mode`` picks the spider's ``owners=`` mode: ``orgs`` (the
  default's: one call per owner), ``full`` (every user's overview too) or ``both`` (the
  default: orgs, then full, each into its own store). The first mode's numbers are the
  top-level keys; the other's are under ``owners_<mode>_mode``.

Prints a table and, with ``--json PATH``, writes the numbers. Rate limiting is switched off for
the crawls (every ``PTM_*_ENABLED`` switch of a throttle or rate-limit component).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import scrapy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import statsfile  # noqa: E402

HUB_MODELS = 2_000_000  # the Hub's size, roughly (HUBS.md)
PAGE = 1000  # models per list call
WINDOW = 300  # seconds of the Hub's fixed rate-limit window
# API-bucket quotas per 5 minutes (HUBS.md, hub-docs rate-limits.md).
TIER_QUOTAS = {"anonymous": 500, "free": 1000, "pro": 2500, "team": 3000, "enterprise": 6000}


class RawListSpider(scrapy.Spider):
    """Plain Scrapy: decode each list page, yield its entries, follow ``Link``. Nothing else."""

    name = "bench_raw"
    custom_settings = {"ITEM_PIPELINES": {}, "PTM_STORE_ENABLED": False}

    async def start(self) -> Any:
        from ptmspiders.parsers import huggingface as hf

        yield scrapy.Request(hf.list_url(self.settings["HF_ENDPOINT"]))

    def parse(self, response: Any) -> Iterator[Any]:
        import orjson

        from ptmspiders.hub_answers import parse_link_header

        yield from orjson.loads(response.body)
        next_url = parse_link_header(response.headers.get("Link")).get("next")
        if next_url:
            yield scrapy.Request(response.urljoin(next_url))


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 10 s: the mock hub never outlives a benchmark."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rate_limit_switches() -> list[str]:
    """``-s NAME=False`` for every rate-limit / throttle switch the project settings define."""
    sys.path.insert(0, str(ROOT))
    from ptmspiders.config import PtmSettings, setting_name

    names = [n for n in map(setting_name, PtmSettings.model_fields)
             if n.startswith("PTM_") and n.endswith("_ENABLED")
             and re.search(r"RATE|THROTTLE|QUOTA|LIMIT", n)]
    switches = []
    for name in names:
        switches += ["-s", f"{name}=False"]
    return [*switches, "-s", "AUTOTHROTTLE_ENABLED=False"]


def start_mock(n: int, seed: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = (workdir / "mockhub.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mockhub", "--port", "0", "--synthetic", str(n),
         "--seed", str(seed)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = (workdir / "mockhub.log").read_text(errors="replace")
        m = re.search(r"MOCKHUB_URL=(\S+)", text)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"mock hub did not start:\n{(workdir / 'mockhub.log').read_text()}")


def mock_counts(url: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_mock/counts", timeout=30) as resp:
        return {str(k): int(v) for k, v in json.loads(resp.read()).items()}


def baseline_profile(py_spy: str | None) -> str | None:
    """Where the baseline's profile goes: the sweep's cost is read against it."""
    if not py_spy:
        return None
    path = Path(py_spy)
    return str(path.with_name(f"{path.stem}.baseline{path.suffix or '.json'}"))


def calibrate(rounds: int = 3) -> float:
    """Milliseconds for a fixed piece of pure-Python work (small dicts and strings built and
    dropped, as a crawl does), best of ``rounds``: the machine's own speed right before a run.

    The same commands have run at half the speed from one hour to the next on these shared
    machines, so each run's speed is reported with this number: it shows when the machine
    was slow before a run, though it does not foresee the run's own speed."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        total = 0
        for i in range(200_000):
            d = {"id": i, "name": f"model-{i}", "tags": [str(i), "x"]}
            total += len(d["name"]) + len(d["tags"])
        best = min(best, time.perf_counter() - t0)
    return round(1000 * best, 1)


def run_crawl(label: str, cmd: list[str], env: dict[str, str], workdir: Path,
              url: str, mock_pid: int, py_spy: str | None = None) -> dict[str, Any]:
    """Run one crawl, measuring wall time, the peak RSS of the crawler and its writer process,
    the mock's counts and the mock's CPU time (on 2 cores, the mock competes with the
    crawler's threads)."""
    import psutil

    mock = psutil.Process(mock_pid)
    # The crawl's final stats, written by the crawl itself (tests/statsfile.py).
    stats_path = workdir / f"{label}.stats.json"
    stats_path.unlink(missing_ok=True)
    cmd = [*cmd, "-s", "STATS_CLASS=tests.statsfile.JsonFileStatsCollector",
           "-s", f"{statsfile.SETTING}={stats_path}"]
    if py_spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        cmd = [spy, "record", "--rate", "200", "--format", "speedscope", "-o", py_spy, "--",
               *cmd]
    # The kernel writes back the store an earlier crawl left dirty in the page cache (5 GB at
    # N=1,000,000) while the next one runs: flushed first, each crawl starts on a quiet disk.
    os.sync()
    calibration = calibrate()
    before = mock_counts(url)
    mock_cpu = sum(mock.cpu_times()[:2])
    log_path = workdir / f"{label}.log"
    with log_path.open("wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        status, usage, peak, threads = _wait(proc, sample=bool(py_spy))
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    after = mock_counts(url)
    mock_cpu = sum(mock.cpu_times()[:2]) - mock_cpu
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{label} crawl failed ({proc.returncode}); log {log_path}:\n"
                         f"{text[-3000:]}")
    stats = statsfile.read_stats(stats_path)
    rss_mb = peak / 2**20
    return {
        "wall_s": wall,
        "crawl_s": float(stats.get("elapsed_time_seconds") or wall),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        # The crawl's own thread against the store's: which one set the pace.
        "thread_cpu_s": threads,
        "mock_cpu_s": mock_cpu,
        "peak_rss_mb": rss_mb,
        "calibration_ms": calibration,
        "requests": {k: after.get(k, 0) - before.get(k, 0)
                     for k in sorted(set(after) | set(before))},
        "stats": stats,
        "log": str(log_path),
    }


def _wait(proc: subprocess.Popen[bytes], sample: bool
          ) -> tuple[int, Any, int, dict[str, float]]:
    """Reap the child with its own resource usage, the CPU seconds of each of its threads (the
    main thread as ``main``, the others by thread id) and of each process it started (the
    store's writer, as ``process <pid>``), as last sampled every 0.1 s, and the peak of the
    crawler's RSS summed with its processes' (under py-spy, ``sample``, the crawler is py-spy's
    child)."""
    import psutil

    peak = 0
    threads: dict[str, float] = {}
    parent = psutil.Process(proc.pid)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            # ru_maxrss (KiB) is the largest single process's peak: a floor for the sum.
            return status, usage, max(peak, usage.ru_maxrss * 1024), threads
        try:
            crawler = parent.children()[0] if sample else parent
            rss = crawler.memory_info().rss
            for t in crawler.threads():
                name = "main" if t.id == crawler.pid else str(t.id)
                threads[name] = round(t.user_time + t.system_time, 2)
            for child in crawler.children(recursive=True):
                cpu = child.cpu_times()
                threads[f"process {child.pid}"] = round(cpu.user + cpu.system, 2)
                rss += child.memory_info().rss
            peak = max(peak, rss)
        except (psutil.Error, IndexError):
            pass
        time.sleep(0.1)


def sweep_seconds(n_calls_per_model: float, quota: int) -> float:
    return HUB_MODELS * n_calls_per_model / (quota / WINDOW)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="models in the synthetic hub")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--workdir", help="keep stores and logs here (default: a temp dir, "
                                          "whose stores are deleted at the end)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="run the sweep again with the project's pipelines off")
    parser.add_argument("--raw", action=argparse.BooleanOptionalAction, default=True,
                        help="run the minimal plain-Scrapy spider")
    parser.add_argument("--owners", action=argparse.BooleanOptionalAction, default=True,
                        help="run the first crawl with owner look-ups, then a recrawl")
    parser.add_argument("--owners-mode", choices=("orgs", "full", "both"), default="both",
                        help="the hf_models owners= mode of those crawls (both: orgs, then "
                             "full, each into its own store)")
    parser.add_argument("--py-spy", metavar="PATH",
                        help="profile the sweep with py-spy (speedscope JSON); the baseline "
                             "goes next to it as PATH's stem + .baseline.json")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="run the sweep and the baseline K times, alternately, and report "
                             "the median of each (the baseline varies by about 5%% run to run)")
    parser.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                        help="extra Scrapy setting for every crawl")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ptm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    mock, url = start_mock(args.n, args.seed, workdir)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN",)}
    env.update(HF_ENDPOINT=url, PYTHONPATH=str(ROOT))
    # The list sweep only: enrichment (cards, files, commits) is per changed model, not per page.
    common = ["-s", "LOG_LEVEL=INFO", "-s", "LOGSTATS_INTERVAL=0", "-s", "PTM_HF_CARDS=False",
              "-s", "PTM_HF_FILES=False", "-s", "PTM_HF_COMMITS=False", *rate_limit_switches()]
    for extra in args.set:
        common += ["-s", extra]
    for p in workdir.glob("*.sqlite*"):
        p.unlink()
    sweep_store = workdir / "sweep.sqlite"
    owner_modes = {"both": ("orgs", "full")}.get(args.owners_mode, (args.owners_mode,))
    crawl = [sys.executable, "-m", "scrapy", "crawl", "hf_models"]
    runs: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()
    try:
        sweeps: list[dict[str, Any]] = []
        baselines: list[dict[str, Any]] = []
        for k in range(args.repeat):
            label = "" if k == 0 else f"-{k + 1}"
            for p in workdir.glob("sweep.sqlite*"):
                p.unlink()
            sweeps.append(run_crawl(
                f"sweep{label}", [*crawl, "-s", f"PTM_STORE_URI=sqlite:///{sweep_store}",
                                  "-s", "PTM_HF_OWNERS=False", *common], env, workdir, url,
                mock.pid, args.py_spy if k == 0 else None))
            check_stored(sweeps[-1], sweep_store, args.n)
            if args.baseline:
                baselines.append(run_crawl(
                    f"baseline{label}", [*crawl, "-s", "ITEM_PIPELINES={}", "-s",
                                         "PTM_STORE_ENABLED=False", "-s", "PTM_HF_OWNERS=False",
                                         *common], env, workdir, url, mock.pid,
                    baseline_profile(args.py_spy) if k == 0 else None))
        runs["sweep"] = median_run(sweeps)
        if baselines:
            runs["baseline"] = median_run(baselines)
        if args.raw:
            runs["raw"] = run_crawl(
                "raw", [sys.executable, "-m", "scrapy", "runspider",
                        str(Path(__file__).resolve()), *common], env, workdir, url, mock.pid)
        for mode in owner_modes if args.owners else ():
            store_arg = f"PTM_STORE_URI=sqlite:///{owners_store(workdir, mode)}"
            for phase in ("owners", "recrawl"):
                runs[f"{phase}-{mode}"] = run_crawl(
                    f"{phase}-{mode}", [*crawl, "-s", store_arg, "-a", f"owners={mode}",
                                        *common], env, workdir, url, mock.pid)
    except BaseException:
        if not args.workdir:  # a failed run in a temp dir leaves its logs, not its stores
            drop_stores(workdir)
        raise
    finally:
        stop_process(mock)

    result = summarise(args.n, runs, sweep_store, workdir, owner_modes)
    if args.repeat > 1:
        result["repeats"] = repeats(args.n, sweeps, baselines)
    result["machine"] = {"cpus": os.cpu_count(), "loadavg_before": load_before,
                         "loadavg_after": os.getloadavg(), "python": platform.python_version(),
                         "scrapy": scrapy.__version__}
    result["workdir"] = str(workdir)
    if not args.workdir:  # a temp dir: keep the logs, not gigabytes of stores
        drop_stores(workdir)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def drop_stores(workdir: Path) -> None:
    for p in workdir.glob("*.sqlite*"):
        p.unlink(missing_ok=True)


def _count(store: Path, collection: str) -> int:
    import sqlite3

    with sqlite3.connect(store) as conn:
        try:
            return int(conn.execute(f"SELECT count(*) FROM {collection}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def check_stored(run: dict[str, Any], store: Path, n: int) -> None:
    stored = _count(store, "models")
    if stored != n:
        raise SystemExit(f"the sweep stored {stored} models, not {n}: see {run['log']}")


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median crawl time (the slower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["crawl_s"])[len(runs) // 2]


def repeats(n: int, sweeps: list[dict[str, Any]],
            baselines: list[dict[str, Any]]) -> dict[str, Any]:
    """Every repetition's speeds and the sweeps' peak RSS (the goal is on the highest, not
    the median run's), and the ratio within each sweep-then-baseline pair."""
    out: dict[str, Any] = {
        "sweep_models_per_s": [round(n / r["crawl_s"], 1) for r in sweeps],
        "sweep_peak_rss_mb": [round(r["peak_rss_mb"], 1) for r in sweeps],
        "sweep_calibration_ms": [r["calibration_ms"] for r in sweeps]}
    if baselines:
        out["baseline_models_per_s"] = [round(n / r["crawl_s"], 1) for r in baselines]
        out["baseline_calibration_ms"] = [r["calibration_ms"] for r in baselines]
        out["ratio_per_pair"] = [round(b["crawl_s"] / s["crawl_s"], 3)
                                 for s, b in zip(sweeps, baselines, strict=True)]
    return out


def summarise(n: int, runs: dict[str, dict[str, Any]], sweep_store: Path, workdir: Path,
              owner_modes: tuple[str, ...]) -> dict[str, Any]:
    sweep = runs["sweep"]
    stored = _count(sweep_store, "models")  # the last sweep's; check_stored saw each
    req = sweep["requests"]
    rate = n / sweep["crawl_s"]
    out: dict[str, Any] = {
        "n": n,
        "models_per_s": round(rate, 1),
        "models_per_s_wall": round(n / sweep["wall_s"], 1),
        "crawl_seconds": round(sweep["crawl_s"], 2),
        "cpu_seconds": round(sweep["cpu_s"], 2),
        "cpu_ms_per_model": round(1000 * sweep["cpu_s"] / n, 3),
        "mock_cpu_seconds": round(sweep["mock_cpu_s"], 2),
        # The crawl's own thread (Scrapy, parsing, pipelines) against the store's threads
        # (writer, checkpoints): on 2 cores they share the second core with the mock hub.
        "crawl_thread_cpu_seconds": sweep["thread_cpu_s"].get("main", 0.0),
        "other_threads_cpu_seconds": round(sum(v for k, v in sweep["thread_cpu_s"].items()
                                               if k != "main"), 2),
        "peak_rss_mb": round(sweep["peak_rss_mb"], 1),
        "models_stored": stored,
        "dropped": sweep["stats"].get("ptm/dropped", 0),
        "list_requests": req.get("list", 0),
        "list_requests_per_1000_models": round(1000 * req.get("list", 0) / n, 3),
        # How long the crawl waited for the writer, and the checkpoint thread's work beside it.
        "store_wait_seconds": sweep["stats"].get("ptm/store/wait_seconds", 0.0),
        "store_writer_busy_seconds": sweep["stats"].get("ptm/store/writer_busy_seconds", 0.0),
        "store_checkpoint_seconds": sweep["stats"].get("ptm/store/checkpoint_seconds", 0.0),
    }
    if "baseline" in runs:
        base = n / runs["baseline"]["crawl_s"]
        out["baseline_models_per_s"] = round(base, 1)
        out["ratio_to_baseline"] = round(rate / base, 3)
        out["baseline_cpu_seconds"] = round(runs["baseline"]["cpu_s"], 2)
        out["baseline_crawl_thread_cpu_seconds"] = runs["baseline"]["thread_cpu_s"].get(
            "main", 0.0)
        out["baseline_peak_rss_mb"] = round(runs["baseline"]["peak_rss_mb"], 1)
    if "raw" in runs:
        out["raw_scrapy_models_per_s"] = round(n / runs["raw"]["crawl_s"], 1)
        out["raw_scrapy_cpu_seconds"] = round(runs["raw"]["cpu_s"], 2)
        out["raw_scrapy_peak_rss_mb"] = round(runs["raw"]["peak_rss_mb"], 1)
    calls_per_model = req.get("list", 0) / n
    out["sweep_seconds_at_quota"] = {
        tier: round(sweep_seconds(calls_per_model, q), 1) for tier, q in TIER_QUOTAS.items()}
    out["sweep_seconds_at_measured_speed"] = round(HUB_MODELS / rate, 1)
    ran = [m for m in owner_modes if f"owners-{m}" in runs]
    for i, mode in enumerate(ran):
        summary = owners_summary(n, runs[f"owners-{mode}"], runs[f"recrawl-{mode}"],
                                 owners_store(workdir, mode))
        if i == 0:  # the first mode's numbers at the top level
            out.update({"owners_mode": mode, **summary})
        else:
            out[f"owners_{mode}_mode"] = summary
    out["runs"] = {k: {kk: vv for kk, vv in v.items() if kk != "stats"} for k, v in runs.items()}
    return out


def owners_store(workdir: Path, mode: str) -> Path:
    return workdir / f"owners-{mode}.sqlite"


def owners_summary(n: int, first: dict[str, Any], recrawl: dict[str, Any],
                   store: Path) -> dict[str, Any]:
    """A first crawl with owner look-ups into a fresh store, then a recrawl into it."""
    oreq, rr = first["requests"], recrawl["requests"]
    owner_requests = oreq.get("org", 0) + oreq.get("user", 0)
    kinds = owner_types(store)
    owners_stored = sum(kinds.values())
    # Owners per model shrink as the hub grows (big publishers repeat), so this is an upper
    # bound for a 2M-model hub.
    first_sweep = (oreq.get("list", 0) + owner_requests) / n
    return {
        "first_crawl_models_per_s": round(n / first["crawl_s"], 1),
        "first_crawl_cpu_seconds": round(first["cpu_s"], 2),
        "first_crawl_peak_rss_mb": round(first["peak_rss_mb"], 1),
        "owners_stored": owners_stored,
        "owners_by_type": kinds,
        # Users stored without their overview (owners=orgs: the organisations' 404).
        "users_without_overview": int(
            first["stats"].get("ptm/owners/users_without_overview", 0)),
        "owner_requests": owner_requests,
        "owner_requests_to_users_endpoint": oreq.get("user", 0),
        "owner_requests_per_1000_models": round(1000 * owner_requests / n, 1),
        "owner_requests_per_owner": round(owner_requests / max(owners_stored, 1), 3),
        "owner_requests_per_s": round(owner_requests / first["crawl_s"], 1),
        # Look-ups sent to the organisations' endpoint instead of the users', because a user
        # overview answered while they waited named the owner as an organisation (full).
        "owner_requests_reaimed": int(first["stats"].get("ptm/owners/reaimed", 0)),
        "recrawl_models_per_s": round(n / recrawl["crawl_s"], 1),
        "recrawl_peak_rss_mb": round(recrawl["peak_rss_mb"], 1),
        "recrawl_owner_requests": rr.get("org", 0) + rr.get("user", 0),
        "recrawl_list_requests_per_1000_models": round(1000 * rr.get("list", 0) / n, 3),
        "first_sweep_seconds_at_quota_with_owners": {
            tier: round(sweep_seconds(first_sweep, q), 1) for tier, q in TIER_QUOTAS.items()},
    }


def owner_types(store: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(store) as conn:
        try:
            return dict(conn.execute("SELECT json_extract(doc, '$.type'), count(*) FROM owners "
                                     "GROUP BY 1").fetchall())
        except sqlite3.OperationalError:
            return {}


def table(r: dict[str, Any]) -> str:
    rows = [
        ("models (N)", f"{r['n']:,}"),
        ("sweep models/s into SQLite", f"{r['models_per_s']:,.0f}"),
        ("  incl. process start", f"{r['models_per_s_wall']:,.0f}"),
        ("  crawler CPU ms per model", f"{r['cpu_ms_per_model']:.3f}"),
        ("  CPU s: crawl's thread / store's", f"{r['crawl_thread_cpu_seconds']:.1f} / "
                                             f"{r['other_threads_cpu_seconds']:.1f}"),
        ("  mock hub CPU seconds", f"{r['mock_cpu_seconds']:.1f}"),
        ("  peak RSS, crawler and its writer (MB)", f"{r['peak_rss_mb']:.0f}"),
        ("  list requests / 1000 models", f"{r['list_requests_per_1000_models']:.3f}"),
        ("  seconds waiting for the store", f"{r['store_wait_seconds']:.1f}"),
        ("  seconds the store's writer was busy", f"{r['store_writer_busy_seconds']:.1f}"),
    ]
    if "baseline_models_per_s" in r:
        rows += [("baseline models/s (pipelines off)", f"{r['baseline_models_per_s']:,.0f}"),
                 ("ratio to baseline", f"{r['ratio_to_baseline']:.2f}")]
    if "repeats" in r:
        rep = r["repeats"]
        rows.append(("sweep runs, models/s", " ".join(f"{v:,.0f}" for v in
                                                     rep["sweep_models_per_s"])))
        rows.append(("sweep runs, peak RSS (MB)", " ".join(f"{v:.0f}" for v in
                                                          rep["sweep_peak_rss_mb"])))
        if "ratio_per_pair" in rep:
            rows += [("baseline runs, models/s", " ".join(
                         f"{v:,.0f}" for v in rep["baseline_models_per_s"])),
                     ("ratio per sweep/baseline pair", " ".join(
                         f"{v:.2f}" for v in rep["ratio_per_pair"]))]
    if "raw_scrapy_models_per_s" in r:
        rows.append(("raw Scrapy models/s (decode only)", f"{r['raw_scrapy_models_per_s']:,.0f}"))
    owner_runs = [(r["owners_mode"], r)] if "owners_mode" in r else []
    owner_runs += [(k[len("owners_"):-len("_mode")], v) for k, v in r.items()
                   if k.startswith("owners_") and k.endswith("_mode") and isinstance(v, dict)]
    for mode, o in owner_runs:
        rows += [
            (f"first crawl, owners={mode}, models/s", f"{o['first_crawl_models_per_s']:,.0f}"),
            ("  owners / owner requests", f"{o['owners_stored']:,} / {o['owner_requests']:,}"),
            ("  owners by type", ", ".join(f"{k} {v:,}" for k, v in
                                           sorted(o["owners_by_type"].items()))),
            ("  owner requests / 1000 models", f"{o['owner_requests_per_1000_models']:.1f}"),
            ("  owner requests / owner", f"{o['owner_requests_per_owner']:.2f}"),
            ("  users without overview", f"{o['users_without_overview']:,}"),
            ("  re-aimed at organisations", f"{o['owner_requests_reaimed']:,}"),
            ("  peak RSS (MB)", f"{o['first_crawl_peak_rss_mb']:.0f}"),
            (f"recrawl, owners={mode}, models/s", f"{o['recrawl_models_per_s']:,.0f}"),
            ("  owner requests", f"{o['recrawl_owner_requests']}"),
            ("  peak RSS (MB)", f"{o['recrawl_peak_rss_mb']:.0f}"),
        ]
    rows.append(("2M-model sweep at measured speed (s)",
                 f"{r['sweep_seconds_at_measured_speed']:,.0f}"))
    with_owners = [(mode, o["first_sweep_seconds_at_quota_with_owners"])
                   for mode, o in owner_runs]
    for tier, sec in r["sweep_seconds_at_quota"].items():
        extra = ""
        if with_owners:
            extra = "  (first sweep with owner look-ups: " + ", ".join(
                f"{mode} {q[tier]:,.0f}" for mode, q in with_owners) + ")"
        rows.append((f"2M sweep at {tier} quota (s)", f"{sec:,.0f}{extra}"))
    rows.append(("machine calibration, ms per run", " ".join(
        f"{k} {v['calibration_ms']:.0f}" for k, v in r["runs"].items()) + "  (lower is faster)"))
    if "repeats" in r:
        rep = r["repeats"]
        rows.append(("  before each sweep / baseline", " ".join(
            f"{v:.0f}" for v in rep["sweep_calibration_ms"]) + " / " + " ".join(
            f"{v:.0f}" for v in rep.get("baseline_calibration_ms", []))))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


if __name__ == "__main__":
    sys.exit(main())
