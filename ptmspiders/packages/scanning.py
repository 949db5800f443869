"""The pickle scanner, when installed (``ptmspiders/packages/scan.py``, another module's
job): files are scanned from their blobs without being loaded. Absent, packages are recorded
without ``scan`` results and the crawl counts ``ptm/packages/scan_unavailable``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

ScanFile = Callable[[Path, str], dict[str, Any]]
IsScannable = Callable[[str], bool]


def load_scanner() -> tuple[IsScannable, ScanFile] | None:
    try:
        from ptmspiders.packages import scan  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        return None
    return scan.is_scannable, scan.scan_file


def summary(records: list[dict[str, Any]]) -> dict[str, int]:
    scans = [r["scan"] for r in records if isinstance(r.get("scan"), dict)]
    return {
        "scanned": len(scans),
        "unsafe": sum(1 for s in scans if s.get("status") == "unsafe"),
        "suspicious": sum(1 for s in scans if s.get("status") == "suspicious"),
        "errors": sum(1 for s in scans if s.get("status") == "error"),
    }
