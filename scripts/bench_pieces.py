#!/usr/bin/env python
"""Measure each piece of the speed work (``ptmspiders/perf``) on its own, against the full set.

One mock hub, then ``--repeat`` rounds; in each round the sweep of ``scripts/bench.py`` (the
``hf_models`` list sweep into a fresh SQLite store) runs once with every piece on and once with
each piece off, in turn, so every on/off pair runs minutes apart. Reported per piece: the
median models/s with it off and with everything on, and the gain (on / off - 1); the same for
the crawler's CPU seconds (user + system), which other processes on a shared machine disturb
less than the wall clock::

    python scripts/bench_pieces.py --n 200000 --repeat 3 --json pieces.json

A piece's switch is the setting given in :data:`PIECES` (``--only`` picks some).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

# Piece -> the settings that switch it off (ptmspiders.perf.SWITCHES).
PIECES: dict[str, list[str]] = {
    "gc": ["PTM_PERF_GC=False"],
    "item_count": ["PTM_PERF_ITEM_COUNT=False"],
    "log_formatter": ["PTM_PERF_LOG_FORMATTER=False"],
    "decode_once": ["PTM_PERF_DECODE_ONCE=False"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="models in the synthetic hub")
    parser.add_argument("--repeat", type=int, default=3, metavar="K")
    parser.add_argument("--only", action="append", choices=sorted(PIECES), default=[],
                        help="measure this piece (repeatable; default: all)")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--workdir", help="logs go here (default: a temp dir)")
    parser.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                        help="extra Scrapy setting for every crawl")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be >= 1")
    pieces = {k: PIECES[k] for k in (args.only or PIECES)}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ptm-bench-pieces-"))
    workdir.mkdir(parents=True, exist_ok=True)
    mock, url = bench.start_mock(args.n, 0, workdir)
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=url, PYTHONPATH=str(bench.ROOT))
    common = ["-s", "LOG_LEVEL=INFO", "-s", "LOGSTATS_INTERVAL=0", "-s", "PTM_HF_CARDS=False",
              "-s", "PTM_HF_FILES=False", "-s", "PTM_HF_COMMITS=False", "-s",
              "PTM_HF_OWNERS=False", *bench.rate_limit_switches()]
    for extra in args.set:
        common += ["-s", extra]
    store = workdir / "sweep.sqlite"
    crawl = [sys.executable, "-m", "scrapy", "crawl", "hf_models", "-s",
             f"PTM_STORE_URI=sqlite:///{store}", *common]
    speeds: dict[str, list[float]] = {"all_on": [], **{k: [] for k in pieces}}
    rss: dict[str, list[float]] = {k: [] for k in speeds}
    cpu: dict[str, list[float]] = {k: [] for k in speeds}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        for k in range(args.repeat):
            for variant in speeds:
                off = [] if variant == "all_on" else pieces[variant]
                for p in workdir.glob("sweep.sqlite*"):
                    p.unlink()
                cmd = [*crawl, *[a for s in off for a in ("-s", s)]]
                run = bench.run_crawl(f"{variant}-{k + 1}", cmd, env, workdir, url, mock.pid)
                bench.check_stored(run, store, args.n)
                speeds[variant].append(round(args.n / run["crawl_s"], 1))
                rss[variant].append(round(run["peak_rss_mb"], 1))
                cpu[variant].append(round(run["cpu_s"], 2))
                print(f"round {k + 1} {variant}: {speeds[variant][-1]:,.0f} models/s, "
                      f"{cpu[variant][-1]:.1f} CPU s", flush=True)
    finally:
        bench.stop_process(mock)
        bench.drop_stores(workdir)
    on = statistics.median(speeds["all_on"])
    on_cpu = statistics.median(cpu["all_on"])
    result: dict[str, Any] = {"n": args.n, "repeat": args.repeat, "started": started,
                              "all_on_models_per_s": on, "all_on_cpu_s": on_cpu, "pieces": {},
                              "runs": speeds, "cpu_s": cpu, "peak_rss_mb": rss,
                              "workdir": str(workdir)}
    print(f"\n{'piece':<22}{'off models/s':>14}{'all on':>10}{'gain':>8}"
          f"{'off CPU s':>11}{'all on':>8}{'gain':>8}")
    for name in pieces:
        off_speed = statistics.median(speeds[name])
        off_cpu = statistics.median(cpu[name])
        gain = round(100 * (on / off_speed - 1), 1)
        cpu_gain = round(100 * (off_cpu / on_cpu - 1), 1)
        result["pieces"][name] = {"off_models_per_s": off_speed, "gain_percent": gain,
                                  "off_cpu_s": off_cpu, "cpu_gain_percent": cpu_gain,
                                  "switch": pieces[name]}
        print(f"{name:<22}{off_speed:>14,.0f}{on:>10,.0f}{gain:>7.1f}%"
              f"{off_cpu:>11.1f}{on_cpu:>8.1f}{cpu_gain:>7.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
