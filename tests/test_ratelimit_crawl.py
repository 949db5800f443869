"""Whole crawls against a mock hub that enforces a small fixed-window quota."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from ptmspiders.stores import open_store
from tests.conftest import crawl_stats, run_crawl
from tests.mockhub import MockHub
from tests.mockhub.faults import fill_models

pytestmark = pytest.mark.crawl


def stored_ids(tmp_path: Path, collection: str = "models") -> list[str]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return [d["_id"] for d in store.find(collection)]


def test_thousands_of_models_within_a_small_quota(mockhub: MockHub, tmp_path: Path) -> None:
    models = fill_models(mockhub, 2000, owners=30)
    quota = mockhub.quota(20, 2.0, prefix="/api/")  # type: ignore[attr-defined]
    result = run_crawl("hf_models", mockhub, tmp_path, "-s", "PTM_HF_PAGE_SIZE=50")
    stats = crawl_stats(result)
    ids = stored_ids(tmp_path)
    assert sorted(ids) == sorted(f"huggingface:{m['id']}" for m in models)
    assert len(stored_ids(tmp_path, "owners")) == 30
    # The hub's own count: nothing beyond the quota but at most one probe per window.
    assert quota.excess(probes=1) == {}, quota.counts
    assert sum(quota.rejected.values()) <= len(quota.counts)
    assert len(quota.counts) >= 4  # the crawl really spanned several windows
    assert stats["ptm/list_pages"] == 40
    assert stats.get("ptm/ratelimit/delayed/budget", 0) + stats.get(
        "ptm/ratelimit/delayed/pace", 0) > 0
    assert "ptm/incomplete" not in stats
    assert stats["finish_reason"] == "finished"


def test_github_quota_headers_pace_the_rest_api(mockhub: MockHub, tmp_path: Path) -> None:
    # The same crawl, the Hub's API now answering like GitHub (403 + X-RateLimit-*).
    fill_models(mockhub, 300, owners=4)
    quota = mockhub.quota(8, 2.0, prefix="/api/", name="core",  # type: ignore[attr-defined]
                          style="github")
    result = run_crawl("hf_models", mockhub, tmp_path, "-s", "PTM_HF_PAGE_SIZE=20",
                       "-s", "PTM_HF_WINDOW=2")
    assert len(stored_ids(tmp_path)) == 300
    assert quota.excess(probes=1) == {}, quota.counts
    assert "ptm/incomplete" not in crawl_stats(result)


def test_a_waiting_api_bucket_does_not_stop_the_resolvers(mockhub: MockHub,
                                                          tmp_path: Path) -> None:
    # The API allows 3 requests per 3 s; model cards come from the resolvers, unthrottled.
    fill_models(mockhub, 120, owners=2)
    quota = mockhub.quota(3, 3.0, prefix="/api/")  # type: ignore[attr-defined]
    seen: list[tuple[float, str]] = []

    def clock(hub: MockHub, req: Any, resp: Any) -> Any:
        seen.append((time.monotonic(), req.path))
        return resp

    mockhub.after.append(clock)
    run_crawl("hf_models", mockhub, tmp_path, "-s", "PTM_HF_PAGE_SIZE=20",
              "-s", "PTM_HF_CARDS=True", "-a", "owners=0")
    assert len(stored_ids(tmp_path)) == 120
    assert quota.excess(probes=1) == {}, quota.counts
    api = [t for t, p in seen if p.startswith("/api/")]
    cards = [t for t, p in seen if "/resolve/" in p]
    assert len(cards) == 120
    # Some cards were fetched while the API bucket sat out a window wait.
    gaps = [(a, b) for a, b in itertools.pairwise(api) if b - a > 1.0]
    assert gaps
    assert any(a < t < b for a, b in gaps for t in cards)
