"""Measure pickle scanners on the hand-built corpus of tests/pickle_corpus.py.

    python scripts/bench_scanners.py [--scanners picklescan,modelscan,fickling,ptmspiders]
                                     [--details] [--keep DIR]

Each (scanner, file) pair runs in its own subprocess, limited to 2 GiB of address space and
120 s, so a scanner that blows up on a zip or opcode bomb is measured as an error instead of
taking the machine down. Nothing is ever unpickled: every scanner here only reads opcodes.

A scanner's verdict on a file is ``flagged`` (it calls the file dangerous), ``warn`` (it calls
it suspicious), ``clean`` or ``error`` (it failed, or said it could not scan). The table counts,
for the ``malicious`` files, the flagged ones (true positives) and the missed ones; for the
``benign`` files, the flagged ones (false positives); for the ``broken`` files, how many were
reported as errors rather than passed as clean.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SCANNERS = ("picklescan", "modelscan", "fickling", "ptmspiders")
MEMORY_LIMIT = 2 << 30
TIMEOUT = 120.0


# -- workers: one scanner on one file, in a child process --------------------------------------
def run_picklescan(path: str) -> tuple[str, str]:
    from picklescan.scanner import scan_file_path
    r = scan_file_path(path)
    names = sorted(f"{g.module}.{g.name}" for g in r.globals)
    if r.issues_count:
        return "flagged", " ".join(sorted(f"{g.module}.{g.name}" for g in r.globals
                                          if g.safety.value == "dangerous"))
    if r.scan_err:
        return "error", "scan_err"
    if r.suspicious_count:
        return "warn", " ".join(names)
    return "clean", " ".join(names)


def run_modelscan(path: str) -> tuple[str, str]:
    from modelscan.modelscan import ModelScan
    report = ModelScan().scan(path)
    if report["issues"]:
        return "flagged", " ".join(sorted({f"{i.get('module')}.{i.get('operator')}"
                                           for i in report["issues"]}))
    if report["errors"]:
        return "error", "; ".join(str(e.get("description", e))[:80] for e in report["errors"])
    if not report["summary"]["scanned"]["total_scanned"]:
        return "error", "not scanned: " + "; ".join(
            s["description"][:60] for s in report["summary"]["skipped"]["skipped_files"])
    return "clean", ""


def run_fickling(path: str) -> tuple[str, str]:
    from fickling.analysis import Severity
    from fickling.loader import scan_file, scan_zip_archive
    if zipfile.is_zipfile(path):
        results = list(scan_zip_archive(path, graceful=True).values())
    else:
        results = [scan_file(path, graceful=True)]
    if not results:
        return "error", "no member scanned"
    worst = max((r.severity for r in results), key=lambda s: s.value[0])
    errors = [e for r in results for e in r.errors]
    if worst.value[0] >= Severity.LIKELY_UNSAFE.value[0] and not errors:
        return "flagged", worst.name
    if errors:
        return ("flagged" if worst.value[0] >= Severity.LIKELY_UNSAFE.value[0] else "error",
                errors[0][:80])
    if worst.value[0] >= Severity.POSSIBLY_UNSAFE.value[0]:
        return "warn", worst.name
    return "clean", worst.name


def run_ptmspiders(path: str) -> tuple[str, str]:
    from ptmspiders.packages.scan import scan_file
    r = scan_file(Path(path), Path(path).name)
    verdict = {"unsafe": "flagged", "suspicious": "warn", "safe": "clean"}.get(r["status"],
                                                                              "error")
    return verdict, " ".join(r["dangerous"]) or r.get("reason", "")


MODULES = {"picklescan": "picklescan.scanner", "modelscan": "modelscan.modelscan",
           "fickling": "fickling.loader", "ptmspiders": "ptmspiders.packages.scan"}


def worker(scanner: str, path: str) -> None:
    import importlib
    import logging
    logging.disable(logging.CRITICAL)
    fn = globals()[f"run_{scanner}"]
    importlib.import_module(MODULES[scanner])  # imports are not part of the time per file
    start = time.perf_counter()
    try:
        verdict, detail = fn(path)
    except Exception as exc:
        verdict, detail = "error", f"{type(exc).__name__}: {exc}"[:100]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"verdict": verdict, "detail": detail, "seconds": seconds,
                      "peak_mb": peak}))


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def measure(scanner: str, path: Path) -> dict[str, Any]:
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", scanner, str(path)],
                              capture_output=True, text=True, timeout=TIMEOUT,
                              preexec_fn=_limit, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return {"verdict": "error", "detail": f"timeout {TIMEOUT:.0f}s", "seconds": TIMEOUT,
                "peak_mb": 0.0}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"verdict": "error", "detail": f"crashed ({proc.returncode}): {tail[:80]}",
                "seconds": 0.0, "peak_mb": 0.0}
    return dict(json.loads(lines[-1]))


def label(scanner: str) -> str:
    if scanner == "ptmspiders":
        from ptmspiders.packages.scan import SCANNER
        return f"ptmspiders.packages.scan ({SCANNER})"
    from importlib.metadata import version
    return f"{scanner} {version(scanner)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("SCANNER", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--scanners", default=",".join(SCANNERS))
    ap.add_argument("--details", action="store_true", help="also list every wrong verdict")
    ap.add_argument("--keep", type=Path, help="build the corpus here and keep it")
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0

    import pickle_corpus
    scanners = [s for s in args.scanners.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        built = pickle_corpus.build(args.keep or Path(tmp))
        kinds = Counter(c.truth for c, _ in built)
        print(f"corpus: {len(built)} files ({kinds['malicious']} malicious, "
              f"{kinds['benign']} benign, {kinds['broken']} broken)\n")
        rows, wrong = [], []
        for scanner in scanners:
            got = {case.name: measure(scanner, path) for case, path in built}
            count: Counter[tuple[str, str]] = Counter(
                (case.truth, got[case.name]["verdict"]) for case, _ in built)
            times = [r["seconds"] * 1000 for r in got.values()]
            peak = max(r["peak_mb"] for r in got.values())
            rows.append([label(scanner),
                         count["malicious", "flagged"], count["malicious", "warn"],
                         count["malicious", "clean"], count["malicious", "error"],
                         count["benign", "flagged"], count["benign", "warn"],
                         count["benign", "clean"], count["benign", "error"],
                         count["broken", "error"],
                         kinds["broken"] - count["broken", "error"],
                         f"{statistics.median(times):.1f}", f"{max(times):.0f}", f"{peak:.0f}"])
            for case, _ in built:
                r = got[case.name]
                ok = {"malicious": "flagged", "benign": "clean", "broken": "error"}[case.truth]
                if r["verdict"] != ok:
                    wrong.append([scanner, case.name, case.truth, r["verdict"],
                                  r["detail"][:70]])
        header = ["scanner", "TP", "mal. warn", "FN clean", "mal. error", "FP", "benign warn",
                  "TN", "benign error", "broken → error", "broken → other",
                  "median ms", "max ms", "peak MB"]
        print(markdown(header, rows))
        if args.details:
            print()
            print(markdown(["scanner", "file", "truth", "verdict", "detail"], wrong))
    return 0


def markdown(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
