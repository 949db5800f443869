#!/usr/bin/env python
"""Benchmark ``scrapy crawl packages`` against plain streaming HTTP on the same bytes.

The mock hub (this process, two servers: the hub on 127.0.0.1 and its CDN on 127.0.0.2)
serves ``--big`` repositories with one ``--big-mb`` MB weight each (generated as it is sent,
never stored) and ``--small`` repositories of ``--small-files`` small files each, one blob
shared by three of them. Then, each in a subprocess:

- ``packages``: ``scrapy crawl packages`` into a fresh store and folder (resolve calls through
  Scrapy, bytes streamed from the CDN, hashed, verified, linked);
- ``plain``: ``curl --location --parallel`` (the same concurrency) on the ``/resolve/`` URL of
  every distinct file, to files, no hashing, no verification: the same job done by plain
  streaming HTTP (LFS files redirect to the CDN, as for any client of the hub);
- ``cdn_direct``: the same ``curl`` on the CDN URLs of the LFS objects only, skipping the hub
  (no client can, since the CDN URL comes from the resolve call; kept for comparison);
- ``hf_hub``: unless ``--no-hf-hub``, ``huggingface_hub.hf_hub_download`` (the reference
  client of the protocol) on every distinct file once, ``--concurrency`` threads, each file to
  a ``local_dir`` per repository (its ``HEAD /resolve/``, then the bytes from the redirect's
  CDN URL or from ``/resolve/``); the bytes' SHA-256 are checked afterwards, outside its time;
- ``small``: unless ``--no-rss-baseline``, the same crawl with every big file 1/10 the size,
  so ``peak_rss_mb`` can be compared at two file sizes (goal: flat).

Reports ``bytes_per_s``, ``ratio_to_plain`` (goal >= 0.8), ``ratio_to_cdn_direct`` and
``ratio_to_hf_hub`` (with ``hf_hub_requests``: the hub + CDN requests huggingface_hub made),
``peak_rss_mb`` (max RSS of the crawl process), ``disk_bytes / unique_bytes`` (goal 1.00: each
blob once, packages as hard links), ``requests_per_file`` (hub + CDN requests per file
fetched). ``--json PATH`` writes them; ``--json -`` prints them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ptmspiders.stores import open_store  # noqa: E402
from tests import statsfile  # noqa: E402
from tests.conftest import crawl_stats  # noqa: E402
from tests.mockhub import MockHub  # noqa: E402
from tests.mockhub.packages import Generated, PkgFile, attach_cdn  # noqa: E402

MB = 1024 * 1024
# More -s settings for the crawl, e.g. BENCH_SETTINGS="-s PTM_PACKAGES_CONCURRENT_PACKAGES=32".
EXTRA: list[str] = [a for a in os.environ.get("BENCH_SETTINGS", "").split() if a]


def build(hub: MockHub, big: int, big_mb: int, small: int, small_files: int,
          seed: int = 0) -> list[PkgFile]:
    """The benchmark's repositories; returns every distinct LFS file (the CDN's objects)."""
    shared = PkgFile("shared.safetensors", Generated(seed=seed + 999, size=3 * MB), lfs=True)
    lfs: dict[str, PkgFile] = {}
    for i in range(big):
        f = PkgFile("model.safetensors", Generated(seed=seed + i, size=big_mb * MB), lfs=True)
        lfs[f.sha256] = f
        hub.packages.add(f"bench/big-{i}", f"{i + 1:040x}",
                         [f, PkgFile("config.json", b'{"i": %d}' % i)])
    for j in range(small):
        files = [PkgFile(f"part-{k}.safetensors",
                         Generated(seed=seed + 10_000 + j * 1000 + k,
                                   size=4096 * (1 + (j * 7 + k) % 16)), lfs=True)
                 for k in range(small_files)]
        files += [PkgFile("README.md", b"# small %d\n" % j), PkgFile("config.json", b"{}")]
        if j < 3:
            files.append(PkgFile("shared.safetensors", shared.content, lfs=True))
        for f in files:
            if f.lfs:
                lfs[f.sha256] = f
        hub.packages.add(f"bench/small-{j}", f"{0xabc000 + j:040x}", files)
    return list(lfs.values())


def run_crawl(hub: MockHub, work: Path, concurrency: int) -> dict[str, Any]:
    work.mkdir(parents=True)
    uri = f"sqlite:///{work}/ptm.sqlite"
    with open_store(uri) as store:
        store.upsert("models", hub.packages.model_docs())
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "scrapy", "crawl", "packages", "-a", f"dest={work / 'pk'}",
           "-s", f"PTM_STORE_URI={uri}", "-s", "LOG_LEVEL=INFO",
           "-s", "PTM_RATELIMIT_ENABLED=0", "-s", f"PTM_PACKAGES_CONCURRENCY={concurrency}",
           # the crawl writes its final stats to a file (tests/statsfile.py)
           "-s", "STATS_CLASS=tests.statsfile.JsonFileStatsCollector",
           "-s", f"{statsfile.SETTING}={work / 'stats.json'}", *EXTRA]
    log = work / "crawl.log"
    os.sync()  # what an earlier run left dirty in the page cache is not this crawl's to write
    started = time.monotonic()
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        # wait4: this child's own peak RSS (getrusage over children is a running maximum).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    stderr = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"crawl failed:\n{stderr[-3000:]}")
    rss = usage.ru_maxrss / 1024
    stats = crawl_stats(proc)
    with open_store(uri) as store:
        docs = list(store.find("packages"))
    files = [f for d in docs for f in d["files"]]
    fetched = [f for f in files if f["status"] == "downloaded"]
    return {"seconds": seconds, "bytes": sum(d["new_bytes"] for d in docs),
            # The crawl's own clock (spider open to close): without interpreter start-up.
            "crawl_seconds": float(stats.get("elapsed_time_seconds") or seconds),
            "files": len(files), "fetched": len(fetched),
            "complete": sum(1 for d in docs if d["complete"]), "packages": len(docs),
            "peak_rss_mb": round(rss, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "dest": work / "pk"}


def distinct_files(hub: MockHub) -> list[tuple[str, str, PkgFile]]:
    """Every distinct file once (by SHA-256), in the packages' order: ``(repo_id, revision,
    file)``. What a client other than the crawl fetches for the same bytes."""
    out: list[tuple[str, str, PkgFile]] = []
    seen: set[str] = set()
    for repo_id, (revision, files) in sorted(hub.packages.repos.items()):
        for f in files:
            if f.sha256 not in seen:
                seen.add(f.sha256)
                out.append((repo_id, revision, f))
    return out


def plain_jobs(hub: MockHub, cdn: MockHub) -> tuple[list[str], list[str]]:
    """What a plain client fetches for the same bytes: every distinct file once, in the
    packages' order. ``resolve``: the hub's ``/resolve/`` URL of each (what any client must
    ask; LFS files redirect to the CDN); ``cdn``: the CDN URLs of the LFS objects only, as if
    the client already knew where each lives."""
    jobs = distinct_files(hub)
    resolve = [f"{hub.url}/{repo_id}/resolve/{revision}/{f.path}" for repo_id, revision, f in jobs]
    direct = [f"{cdn.url}/cdn/{f.sha256}" for _, _, f in jobs if f.lfs]
    return resolve, direct


def run_plain(urls: list[str], work: Path, concurrency: int) -> float:
    """``curl --parallel``: ``concurrency`` transfers at once, each URL to a file (following
    redirects), no hashing, no verification: what the network and disk allow."""
    work.mkdir(parents=True)
    config = work / "curl.cfg"
    config.write_text("".join(f'url = "{u}"\noutput = "{work / str(n)}"\n'
                              for n, u in enumerate(urls)))
    os.sync()
    started = time.monotonic()
    # --parallel-immediate: open the connections at once (curl otherwise waits for the first
    # transfer, hoping to multiplex on it, which HTTP/1.1 cannot).
    subprocess.run(["curl", "-sS", "--no-progress-meter", "--fail", "--location",
                    "--parallel", "--parallel-immediate", "--parallel-max", str(concurrency),
                    "-K", str(config)], check=True)
    return time.monotonic() - started


# huggingface_hub's own switches: plain HTTP (no Xet, which the mock does not serve), no
# progress bars, no telemetry (it would also fetch an agent registry from the endpoint).
HF_HUB_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
              "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"}


def run_hf_hub(hub: MockHub, jobs: list[tuple[str, str, PkgFile]], work: Path,
               concurrency: int, chunk: int | None = None) -> tuple[float, int]:
    """``hf_hub_download`` of every job into ``work/hf/<repo>``, in a subprocess (its own
    interpreter, like the crawl and curl); returns the seconds its downloads took (its
    imports not included) and the chunk size it used. Checks every file's SHA-256 afterwards.
    ``chunk``: its read and write size instead of its own (``DOWNLOAD_CHUNK_SIZE``, 10 MiB)."""
    work.mkdir(parents=True)
    spec = work / "jobs.json"
    spec.write_text(json.dumps({"endpoint": hub.url, "concurrency": concurrency, "chunk": chunk,
                                "dest": str(work / "hf"),
                                "jobs": [[r, rev, f.path] for r, rev, f in jobs]}))
    # No token, no offline mode or cache from the caller's environment: a cache in the work
    # folder, the mock as the endpoint.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HUB_ENV, HF_HOME=str(work / "home"), HF_ENDPOINT=hub.url,
               PYTHONPATH=str(ROOT))
    os.sync()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--hf-hub-worker",
                           str(spec)], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hf_hub_download failed:\n{proc.stderr[-3000:]}")
    seconds, used = proc.stdout.split()[-2:]
    for repo_id, _, f in jobs:
        path = work / "hf" / repo_id / f.path
        with path.open("rb") as fh:
            got = hashlib.file_digest(fh, "sha256").hexdigest()
        if got != f.sha256:
            raise SystemExit(f"hf_hub_download: {repo_id}/{f.path}: SHA-256 {got}, "
                             f"expected {f.sha256}")
    return float(seconds), int(used)


def hf_hub_worker(spec_path: str) -> int:
    """The ``hf_hub`` run's subprocess: prints the seconds its downloads took and its chunk
    size."""
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import constants, hf_hub_download

    spec = json.loads(Path(spec_path).read_text())
    if spec.get("chunk"):  # http_get reads it at each call
        constants.DOWNLOAD_CHUNK_SIZE = spec["chunk"]
    dest = Path(spec["dest"])

    def one(job: list[str]) -> str:
        repo_id, revision, path = job
        return hf_hub_download(repo_id, path, revision=revision, local_dir=dest / repo_id,
                               endpoint=spec["endpoint"])

    started = time.monotonic()
    with ThreadPoolExecutor(spec["concurrency"]) as pool:
        for _ in pool.map(one, spec["jobs"]):
            pass
    print(f"{time.monotonic() - started:.6f} {constants.DOWNLOAD_CHUNK_SIZE}")
    return 0


def request_kinds(hub: MockHub, cdn: MockHub) -> dict[str, int]:
    """The logged requests by kind: ``HEAD /resolve/``, ``GET /resolve/``, ``GET /cdn/``
    (the CDN), ``GET /api/`` (tree listings and the like)."""
    kinds: dict[str, int] = {}
    for req in [*hub.requests(), *cdn.requests()]:
        part = next((p for p in ("/resolve/", "/cdn/", "/api/") if p in req.path), "other")
        key = f"{req.method} {part}"
        kinds[key] = kinds.get(key, 0) + 1
    return dict(sorted(kinds.items()))


def disk_bytes(dest: Path) -> int:
    """Bytes of distinct inodes under ``dest`` (a hard link is counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for p in dest.rglob("*"):
        if p.is_file() and not p.is_symlink() and "tmp" not in p.relative_to(dest).parts[:2]:
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--big", type=int, default=3, help="repositories with one big file")
    ap.add_argument("--big-mb", type=int, default=600, help="size of each big file (MB)")
    ap.add_argument("--small", type=int, default=40, help="repositories of small files")
    ap.add_argument("--small-files", type=int, default=10, help="LFS files per small repo")
    ap.add_argument("--concurrency", type=int, default=8,
                    help="parallel transfers of the crawl, curl and hf_hub alike")
    ap.add_argument("--no-rss-baseline", action="store_true")
    ap.add_argument("--no-hf-hub", action="store_true",
                    help="skip the huggingface_hub run (hf_hub_download of every file)")
    ap.add_argument("--hf-hub-chunk-mb", type=int, metavar="MB",
                    help="huggingface_hub's read/write size (default: its own, 10 MB)")
    ap.add_argument("--hf-hub-worker", metavar="JOBS_JSON", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", metavar="PATH", help="write the numbers ('-': print them)")
    args = ap.parse_args(argv)
    if args.hf_hub_worker:
        return hf_hub_worker(args.hf_hub_worker)
    if not args.no_hf_hub and importlib.util.find_spec("huggingface_hub") is None:
        ap.error("huggingface_hub is not installed (requirements-dev.txt); or pass --no-hf-hub")
    work = Path(tempfile.mkdtemp(prefix="bench_packages_"))
    result: dict[str, Any] = {"big": args.big, "big_mb": args.big_mb, "small": args.small,
                              "small_files": args.small_files,
                              "concurrency": args.concurrency}
    try:
        if not args.no_rss_baseline:
            with MockHub() as hub, MockHub(host="127.0.0.2") as cdn:
                attach_cdn(hub, cdn)
                build(hub, args.big, max(args.big_mb // 10, 1), args.small, args.small_files,
                      seed=50_000)
                small = run_crawl(hub, work / "small", args.concurrency)
                result["peak_rss_mb_at_tenth_size"] = small["peak_rss_mb"]
                shutil.rmtree(work / "small")
        with MockHub() as hub, MockHub(host="127.0.0.2") as cdn:
            attach_cdn(hub, cdn)
            objects = build(hub, args.big, args.big_mb, args.small, args.small_files)
            unique = sum(f.size for f in objects)  # the CDN's (LFS) objects
            non_lfs = {(bytes(f.content)) for _, files in hub.packages.repos.values()
                       for f in files if not f.lfs and isinstance(f.content, bytes)}
            unique_all = unique + sum(len(c) for c in non_lfs)
            resolve_urls, cdn_urls = plain_jobs(hub, cdn)
            plain_s = run_plain(resolve_urls, work / "plain", args.concurrency)
            shutil.rmtree(work / "plain")
            direct_s = run_plain(cdn_urls, work / "direct", args.concurrency)
            shutil.rmtree(work / "direct")
            hub.clear_log()
            cdn.clear_log()
            # Before hf_hub: its gigabyte of 10 MiB writes slowed the next run down.
            crawl = run_crawl(hub, work / "crawl", args.concurrency)
            requests = len(hub.log) + len(cdn.log)
            kinds = request_kinds(hub, cdn)
            on_disk = disk_bytes(crawl["dest"])
            if not args.no_hf_hub:
                jobs = distinct_files(hub)
                hub.clear_log()
                cdn.clear_log()
                hf_s, hf_chunk = run_hf_hub(hub, jobs, work / "hf_hub", args.concurrency,
                                  args.hf_hub_chunk_mb and args.hf_hub_chunk_mb * MB)
                hf_kinds = request_kinds(hub, cdn)
                lfs_jobs = sum(1 for _, _, f in jobs if f.lfs)
                # It must have gone the way any client goes: the resolve call for every file,
                # the CDN (the redirect's target) for the LFS ones.
                if (hf_kinds.get("HEAD /resolve/", 0) + hf_kinds.get("GET /resolve/", 0)
                        < len(jobs) or hf_kinds.get("GET /cdn/", 0) < lfs_jobs):
                    raise SystemExit(f"hf_hub_download: requests {hf_kinds} for {len(jobs)} "
                                     f"files ({lfs_jobs} LFS)")
                shutil.rmtree(work / "hf_hub")
        rate = crawl["bytes"] / crawl["crawl_seconds"]
        result.update({
            "bytes": crawl["bytes"],
            "seconds": round(crawl["crawl_seconds"], 2),
            "bytes_per_s": round(rate),
            # curl -L on every distinct file's /resolve/ URL: the same job as the crawl's.
            "plain_seconds": round(plain_s, 2),
            "plain_bytes_per_s": round(unique_all / plain_s),
            "ratio_to_plain": round(rate / (unique_all / plain_s), 3),
            # curl on the CDN URLs of the LFS objects only (no hub call at all): a bound no
            # client of the hub can reach, kept for comparison with earlier figures.
            "cdn_direct_seconds": round(direct_s, 2),
            "ratio_to_cdn_direct": round(rate / (unique / direct_s), 3),
            # Including the crawl process's start-up (Python, Scrapy: about a second).
            "wall_seconds": round(crawl["seconds"], 2),
            "wall_ratio_to_plain": round((crawl["bytes"] / crawl["seconds"])
                                         / (unique_all / plain_s), 3),
            **({} if args.no_hf_hub else {
                # hf_hub_download on every distinct file (the reference client), same threads.
                "hf_hub_chunk_mb": round(hf_chunk / MB, 3),
                "hf_hub_seconds": round(hf_s, 2),
                "hf_hub_bytes_per_s": round(unique_all / hf_s),
                "ratio_to_hf_hub": round(rate / (unique_all / hf_s), 3),
                "hf_hub_files": len(jobs),
                "hf_hub_requests": sum(hf_kinds.values()),
                "hf_hub_requests_per_file": round(sum(hf_kinds.values()) / len(jobs), 3),
                "hf_hub_request_kinds": hf_kinds,
            }),
            "peak_rss_mb": crawl["peak_rss_mb"],
            "crawl_cpu_seconds": crawl["cpu_seconds"],
            "disk_bytes": on_disk,
            "unique_bytes": unique_all,
            "disk_over_unique": round(on_disk / unique_all, 4),
            "files_fetched": crawl["fetched"],
            "requests": requests,
            "request_kinds": kinds,
            "requests_per_file": round(requests / max(crawl["fetched"], 1), 3),
            "packages": crawl["packages"],
            "complete": crawl["complete"],
        })
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if args.json == "-":
        print(text)
    elif args.json:
        Path(args.json).write_text(text + "\n")
    if args.json != "-":
        for k, v in result.items():
            print(f"{k:>28}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
