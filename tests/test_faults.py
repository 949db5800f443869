"""The fault matrix: whole crawls against a mock hub that misbehaves.

Transient faults (each kind at a few rates, on first attempts) must end with every model
stored; permanent ones (every attempt) with every model the hub could serve stored, the rest
named in the log and stats, and exit status 3 (incomplete).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.stores import open_store
from tests.conftest import crawl_stats, run_crawl
from tests.mockhub import MockHub
from tests.mockhub.faults import fill_models
from tests.mockhub.huggingface import encode_cursor

pytestmark = pytest.mark.crawl

N_MODELS = 240
PAGE = 20
FAST = ["-s", f"PTM_HF_PAGE_SIZE={PAGE}", "-s", "PTM_RETRY_TIMES=3",
        "-s", "PTM_RETRY_BACKOFF_BASE=0.05", "-s", "PTM_RETRY_BACKOFF_MAX=0.2",
        "-s", "DOWNLOAD_TIMEOUT=2", "-s", "PTM_RATELIMIT_MIN_WAIT=0.2"]


def stored(tmp_path: Path, collection: str = "models") -> list[str]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return sorted(d["_id"] for d in store.find(collection))


def ids(models: list[dict[str, Any]]) -> list[str]:
    return sorted(f"huggingface:{m['id']}" for m in models)


TRANSIENT = [
    ("429", 0.3, {}), ("429", 0.5, {"retry_after": "1"}),
    ("503", 0.3, {}), ("503", 1.0, {}),
    ("slow", 0.3, {"delay": 3.0}),  # beyond DOWNLOAD_TIMEOUT: a timeout
    ("slow", 1.0, {"delay": 0.3}),  # merely slow
    ("truncated", 0.3, {}), ("truncated", 1.0, {}),
    ("html", 0.3, {}), ("html", 1.0, {}),
    ("invalid_json", 0.5, {}),
    ("wrong_shape", 1.0, {"prefix": "/api/models"}),
]


# Each kind on first attempts; at rate 1.0 also on the first two attempts of every URL, and
# 429s (each a wait of a second or more) on two attempts of 30% of the URLs.
CASES = [(k, r, o, 1) for k, r, o in TRANSIENT] + [
    (k, r, o, 2) for k, r, o in TRANSIENT if r == 1.0 or (k == "429" and r == 0.3)]


@pytest.mark.parametrize(("kind", "rate", "options", "attempts"), CASES,
                         ids=[f"{k}-{r}-x{a}-{'-'.join(o)}" for k, r, o, a in CASES])
def test_transient_faults_lose_nothing(mockhub: MockHub, tmp_path: Path, kind: str,
                                       rate: float, options: dict[str, Any],
                                       attempts: int) -> None:
    models = fill_models(mockhub, N_MODELS, owners=6)
    options = {"prefix": "/api/", **options}
    fault = mockhub.faults.add(kind, rate=rate, attempts=attempts,  # type: ignore[attr-defined]
                               **options)
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST)
    stats = crawl_stats(result)
    assert fault.hits > 0
    assert stored(tmp_path) == ids(models)
    assert len(stored(tmp_path, "owners")) == 6
    assert "ptm/incomplete" not in stats
    assert not any(k.startswith(("ptm/failed/", "ptm/bad_response/")) for k in stats), stats
    if kind == "429":
        assert stats["ptm/ratelimit/limited/429"] >= 1
        assert "Rate limited (429)" in result.stderr
    elif not (kind == "slow" and options["delay"] < 2):
        assert stats["ptm/retry/count"] >= fault.hits
    assert stats["finish_reason"] == "finished"


PERMANENT = [("503", {}), ("html", {}), ("truncated", {}), ("wrong_shape", {}),
             ("429", {"retry_after": "0.2"}), ("slow", {"delay": 3.0})]


@pytest.mark.parametrize(("kind", "options"), PERMANENT, ids=[k for k, _ in PERMANENT])
def test_a_list_page_that_never_works_ends_the_listing_clearly(
        mockhub: MockHub, tmp_path: Path, kind: str, options: dict[str, Any]) -> None:
    models = fill_models(mockhub, N_MODELS, owners=6)
    cursor = encode_cursor(5 * PAGE)  # the sixth page
    fault = mockhub.faults.add(kind, attempts=None, prefix="/api/models",  # type: ignore
                               contains=f"cursor={cursor}", **options)
    # An incomplete crawl exits non-zero, so that cron notices.
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST,
                       "-s", "PTM_RATELIMIT_MAX_WAITS=3", expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    assert fault.hits == 4  # the first attempt and three retries (or waits)
    # Every model the hub could serve is stored; the listing ended at the broken page.
    assert stored(tmp_path) == ids(models[: 5 * PAGE])
    assert stats["ptm/incomplete"] is True
    assert f"cursor={cursor}" in result.stderr
    assert "is incomplete" in result.stderr
    failed = [k for k in stats if k.startswith(("ptm/failed/", "ptm/bad_response/"))]
    assert failed, stats
    assert stats["finish_reason"] == "finished"


def test_owners_that_never_answer_are_named_and_counted(mockhub: MockHub,
                                                         tmp_path: Path) -> None:
    models = fill_models(mockhub, N_MODELS, owners=6)
    mockhub.faults.add("503", attempts=None, prefix="/api/users/")  # type: ignore[attr-defined]
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST, "-a", "owners=full")
    stats = crawl_stats(result)
    assert stored(tmp_path) == ids(models)  # the models are all there
    assert len(stored(tmp_path, "owners")) == 3  # the organizations; the users failed
    assert stats["ptm/failed/owner"] == 3
    assert stats["ptm/failed/http_503"] == 3
    for n in (1, 3, 5):
        assert f"/api/users/gen-user-{n:03d}/overview" in result.stderr
    assert "ptm/incomplete" not in stats


def test_a_cursor_loop_ends_the_listing(mockhub: MockHub, tmp_path: Path) -> None:
    models = fill_models(mockhub, N_MODELS, owners=6)
    third, second = encode_cursor(2 * PAGE), encode_cursor(PAGE)

    def loop_back(hub: MockHub, req: Any, resp: Any) -> Any:
        if f"cursor={third}" in req.raw_target:
            resp.headers = [(k, v.replace(third, second).replace(encode_cursor(3 * PAGE),
                                                                  second))
                            for k, v in resp.headers]
        return resp

    mockhub.after.append(loop_back)
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST, expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    assert stored(tmp_path) == ids(models[: 3 * PAGE])
    assert stats["ptm/incomplete/list_cursor_loop"] == 1
    assert "points back to" in result.stderr
    assert stats["ptm/list_pages"] == 3
