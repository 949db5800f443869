"""A per-worker cap on the bytes per second of streamed package transfers
(``PTM_PACKAGES_BANDWIDTH``): for a worker on a shared link, and for measuring how workers
scale when each has a link of its own (scripts/bench_workers.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Bandwidth:
    """Paces every transfer thread of a worker together: each chunk read waits until the
    bytes before it have taken their share of ``rate``. Called from the worker threads."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        if rate <= 0:
            raise ValueError("PTM_PACKAGES_BANDWIDTH must be > 0 (bytes per second), or empty")
        self.rate = rate
        self.stop = stop
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def spend(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.next_free = max(now, self.next_free) + n / self.rate
            wait = self.next_free - now
        if wait > 0:
            self.stop.wait(wait)  # a stopping crawl does not wait

    def paced(self, progress: Callable[[int], None]) -> Callable[[int], None]:
        """``progress`` (the streamer's per-chunk callback), then the wait."""
        def step(n: int) -> None:
            progress(n)
            self.spend(n)
        return step
