"""Progress of a packages crawl: packages done of selected, bytes of planned, rate, ETA."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass
class Progress:
    selected: int = 0
    done: int = 0
    planned_bytes: int = 0
    received: int = 0  # bytes over the network (also of partial files)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_bytes(self, n: int) -> None:
        """Called from the download threads."""
        with self.lock:
            self.received += n

    def figures(self) -> dict[str, float | int | None]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.received / elapsed
        left = max(self.planned_bytes - self.received, 0)
        eta = left / rate if rate > 0 else None
        return {"packages_done": self.done, "packages_selected": self.selected,
                "bytes_received": self.received, "bytes_planned": self.planned_bytes,
                "bytes_per_s": round(rate), "eta_seconds": round(eta) if eta is not None
                else None}

    def line(self) -> str:
        f = self.figures()
        eta = f["eta_seconds"]
        return (f"Packages: {self.done} of {self.selected} done, {human(self.received)} of "
                f"{human(self.planned_bytes)} planned, {human(float(f['bytes_per_s'] or 0))}/s, "
                f"ETA {duration(float(eta) if eta is not None else None)}")
