#!/usr/bin/env python
"""Benchmark 1 -> N workers of one ``scrapy crawl packages`` on a shared frontier.

The mock hub (this process) serves ``--packages`` repositories with one ``--mb`` MB weight
each; a ``redis-server`` on a free port is the frontier (``PTM_FRONTIER``), one SQLite file the
store, one folder the blob store. Each worker's streamed transfers are capped at ``--cap-mb``
MB/s (``PTM_PACKAGES_BANDWIDTH``) and each holds ``--at-once`` work items at a time
(``PTM_PACKAGES_CONCURRENT_PACKAGES``), as if each ran on a machine with a link of its own, so the
figure shows what the frontier does, not what loopback does. For 1 and for ``--workers``
workers, ``--runs`` runs each (fresh store, folder and frontier): the wall time from starting
the workers until the last one exits (``PTM_FRONTIER_IDLE_S=0``: a worker leaves once no work
is left anywhere), its median, and ``speedup`` (median of 1 / median of N). ``--json PATH``
writes them; ``--json -`` prints them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ptmspiders.stores import open_store  # noqa: E402
from tests.conftest import crawl_command, hub_env  # noqa: E402
from tests.mockhub import MockHub  # noqa: E402
from tests.mockhub.packages import Generated, PkgFile  # noqa: E402
from tests.redis_server import free_port, wait_ready  # noqa: E402

MB = 1024 * 1024


def crawl(hub: MockHub, url: str, folder: Path, workers: int, cap: int, at_once: int
          ) -> float:
    """Seconds from starting ``workers`` workers until the last one exits."""
    with open_store(f"sqlite:///{folder}/ptm.sqlite") as store:
        store.upsert("models", hub.packages.model_docs())  # type: ignore[attr-defined]
    cmd = crawl_command("packages", folder, "-a", f"dest={folder / 'pk'}",
                        "-s", f"PTM_PACKAGES_BANDWIDTH={cap}", "-s", "LOG_LEVEL=WARNING",
                        "-s", f"PTM_PACKAGES_CONCURRENT_PACKAGES={at_once}")
    env = hub_env(hub, PTM_FRONTIER=url, PTM_FRONTIER_IDLE_S="0")
    started = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=1800)
            if proc.returncode != 0:
                raise SystemExit(f"a worker exited {proc.returncode}:\n{err[-3000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    took = time.monotonic() - started
    with open_store(f"sqlite:///{folder}/ptm.sqlite") as store:
        docs = list(store.find("packages"))
    expected = len(hub.packages.repos)  # type: ignore[attr-defined]
    if len(docs) != expected or not all(d["complete"] for d in docs):
        raise SystemExit(f"{len(docs)} packages stored of {expected}, or some incomplete")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packages", type=int, default=48)
    ap.add_argument("--mb", type=int, default=2, help="MB per package")
    ap.add_argument("--at-once", type=int, default=2,
                    help="PTM_PACKAGES_CONCURRENT_PACKAGES: the items a worker holds at a time")
    ap.add_argument("--cap-mb", type=float, default=2.0, help="MB/s per worker")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="write the results here (- for stdout)")
    args = ap.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (Debian package redis-server)")
    cap = int(args.cap_mb * MB)
    results: dict[str, Any] = {"packages": args.packages, "mb_per_package": args.mb,
                               "cap_mb_per_s_per_worker": args.cap_mb,
                               "packages_at_once": args.at_once, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, MockHub() as hub:
        for i in range(args.packages):
            hub.packages.add(f"bench/m{i:03d}", f"{i + 1:040x}", [  # type: ignore[attr-defined]
                PkgFile("config.json", b'{"i": %d}' % i),
                PkgFile("model.safetensors", Generated(seed=i, size=args.mb * MB), lfs=True)])
        port = free_port()
        redis_proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, redis_proc)
            url = f"redis://127.0.0.1:{port}/0"
            for n in (1, args.workers):
                times = []
                for run in range(args.runs):
                    folder = Path(tmp) / f"w{n}-r{run}"
                    folder.mkdir()
                    with redis.Redis.from_url(url) as r:
                        r.flushdb()  # a fresh frontier (and fresh rate-limit windows)
                    times.append(crawl(hub, url, folder, n, cap, args.at_once))
                    shutil.rmtree(folder)
                    print(f"{n} worker(s), run {run + 1}: {times[-1]:.1f} s", file=sys.stderr)
                results[f"seconds_{n}_workers"] = [round(t, 2) for t in times]
                results[f"median_{n}_workers"] = round(statistics.median(times), 2)
        finally:
            redis_proc.terminate()
            redis_proc.wait()
    total = args.packages * args.mb * MB
    for n in (1, args.workers):
        results[f"mb_per_s_{n}_workers"] = round(total / MB / results[f"median_{n}_workers"], 2)
    results["speedup"] = round(results["median_1_workers"]
                               / results[f"median_{args.workers}_workers"], 2)
    text = json.dumps(results, indent=2)
    if args.json == "-" or not args.json:
        print(text)
    else:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
