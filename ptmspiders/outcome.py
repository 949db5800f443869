"""A crawl's outcome as an exit status, so that cron and schedulers notice a crawl that did not
do its whole job (``scrapy crawl`` itself exits 0 whenever the spider could start).

- 0: the crawl finished and stored everything it listed (a listing resumed from a JOBDIR
  checkpoint, an argument that restricts it, or a ``CLOSESPIDER_*`` bound the user set
  count as done);
- 3 (:data:`EXIT_INCOMPLETE`): the crawl ended incomplete: a listing failed, a write to the
  store failed, a link was refused, the crawl lost its lock or was interrupted;
- 4 (:data:`EXIT_LOCKED`): another crawl of the hub holds its lock on the store, so this one
  did not crawl (ptmspiders/crawllock.py).

Scrapy's own: 1 when the crawl could not start, 2 (:data:`EXIT_USAGE`) for a wrong command
line, which includes a wrong or unknown ``-a`` argument and a setting that breaks its rule
(refused before the crawl starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_LOCKED = 4
# Incomplete for history (no removals inferred), yet the crawl did what it was asked to.
NOT_FAILURES = frozenset({"resumed"})


def crawl_problems(stats: Mapping[str, Any]) -> list[str]:
    """Why the crawl whose final stats these are did not do its whole job (empty: it did)."""
    problems: list[str] = []
    reason = stats.get("finish_reason")
    if reason is not None and reason != "finished" and not str(reason).startswith(
            "closespider_"):
        problems.append(f"finish_reason={reason}")
    for key in sorted(stats):
        if key.startswith("ptm/incomplete/") and stats[key]:
            name = key.removeprefix("ptm/incomplete/")
            if name not in NOT_FAILURES:
                problems.append(name)
    if any(v for k, v in stats.items() if k.startswith("ptm/store/failed/")) \
            and "store_write_failed" not in problems:
        problems.append("store_write_failed")
    return problems


def exit_status(stats: Mapping[str, Any]) -> int:
    if stats.get("ptm/lock/refused"):
        return EXIT_LOCKED
    return EXIT_INCOMPLETE if crawl_problems(stats) else EXIT_OK
