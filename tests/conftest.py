"""Shared test fixtures: the mock hub, stores of both kinds, whole crawls in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.utils.test import get_crawler

from ptmspiders.stores import Store, open_store
from tests import statsfile
from tests.gnupg_daemons import stop_gnupg_daemons
from tests.mockhub import MockHub

ROOT = Path(__file__).resolve().parent.parent
HUBDATA = ROOT.parent / "shared" / "hubdata"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def no_gnupg_daemons_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every temp dir of the session (this process's and its crawls', through ``TMPDIR``)
    lies under the session's base temp dir; at the end, every GnuPG daemon whose keyring is
    there is stopped, and the session errors if one survives."""
    base = tmp_path_factory.getbasetemp()
    root = base / "tmp"
    root.mkdir(exist_ok=True)
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(root))
    patch.setattr(tempfile, "tempdir", None)
    yield
    patch.undo()
    survivors = stop_gnupg_daemons(base)
    assert not survivors, f"GnuPG daemons the tests started are still running: {survivors}"


@pytest.fixture
def hubdata() -> Path:
    """The real recorded hub responses; the test is skipped where they are absent."""
    if not HUBDATA.is_dir():
        pytest.skip(f"{HUBDATA} is absent (real hub recordings are not shipped)")
    return HUBDATA


@pytest.fixture
def mockhub() -> Iterator[MockHub]:
    with MockHub() as hub:
        yield hub


def store_uris() -> list[Any]:
    uris: list[Any] = ["sqlite", "mongomock"]
    if os.environ.get("PTM_TEST_MONGO_URI"):
        uris.append("mongodb")
    return uris


@pytest.fixture(params=store_uris())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every store test runs on SQLite, on mongomock, and on a real MongoDB when
    ``PTM_TEST_MONGO_URI`` names one (a fresh database per test)."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    elif request.param == "mongomock":
        uri = "mongomock://localhost/ptm_test"
    else:
        base = os.environ["PTM_TEST_MONGO_URI"].rstrip("/")
        uri = f"{base}/ptm_test_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    s = open_store(uri)
    yield s
    if request.param == "mongodb":
        s.client.drop_database(s.db.name)  # type: ignore[attr-defined]
    s.close()


def ptm_crawler(spidercls: type[Spider] = Spider, settings: dict[str, Any] | None = None
                ) -> Crawler:
    """``get_crawler`` with the crawl's context extension (ptmspiders/context.py), which
    every crawl of the project has, for components tested on their own."""
    settings = dict(settings or {})
    settings["EXTENSIONS"] = {"ptmspiders.context.CrawlContext": 0,
                              **settings.get("EXTENSIONS", {})}
    return get_crawler(spidercls, settings)


def hub_env(hub: MockHub, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_TOKEN", "GITHUB_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")}
    env.update(HF_ENDPOINT=hub.url, GITHUB_API_URL=hub.url, GITHUB_RAW_URL=f"{hub.url}/raw",
               MODELZOO_URL=hub.url, KAGGLE_API_URL=f"{hub.url}/api/v1")
    env.update(extra)
    return env


def run_crawl(spider: str, hub: MockHub, tmp_path: Path, *args: str,
              store_uri: str | None = None, env: dict[str, str] | None = None,
              timeout: float = 180, check: bool = True,
              expect_exit: int = 0) -> subprocess.CompletedProcess[str]:
    """``scrapy crawl`` in a subprocess (a fresh reactor each time), against the mock hub.

    With ``check``, its exit status must be ``expect_exit`` (ptmspiders/outcome.py: 3 for a
    crawl that ended incomplete)."""
    cmd = crawl_command(spider, tmp_path, *args, store_uri=store_uri)
    result = subprocess.run(cmd, cwd=ROOT, env=env or hub_env(hub), capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != expect_exit:
        raise AssertionError(f"crawl exited {result.returncode}, not {expect_exit}:\n"
                             f"{result.stderr[-4000:]}")
    return result


def crawl_command(spider: str, tmp_path: Path, *args: str, store_uri: str | None = None
                  ) -> list[str]:
    """The ``scrapy crawl`` command line ``run_crawl`` runs (for crawls run side by side); the
    crawl writes its final stats to a file of its own in ``tmp_path`` (:func:`crawl_stats`)."""
    stats_file = tmp_path / f"stats-{uuid.uuid4().hex[:12]}.json"
    return [sys.executable, "-m", "scrapy", "crawl", spider,
            "-s", f"PTM_STORE_URI={store_uri or f'sqlite:///{tmp_path}/ptm.sqlite'}",
            "-s", "LOG_LEVEL=INFO", "-s", "LOGSTATS_INTERVAL=0",
            "-s", "STATS_CLASS=tests.statsfile.JsonFileStatsCollector",
            "-s", f"{statsfile.SETTING}={stats_file}", *args]


def one_error_line(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The one ERROR line of a command that refused its input: exit status ``exit_code``,
    exactly one error line, no traceback."""
    assert result.returncode == exit_code, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


def crawl_stats(crawl: subprocess.CompletedProcess[str] | subprocess.Popen[str]
                ) -> dict[str, Any]:
    """The final stats of a crawl started with :func:`crawl_command` (or :func:`run_crawl`),
    as the crawl wrote them (tests/statsfile.py); empty if it wrote none."""
    args = crawl.args
    assert isinstance(args, list), "a crawl_command() command line"
    prefix = f"{statsfile.SETTING}="
    paths = [a[len(prefix):] for a in args if isinstance(a, str) and a.startswith(prefix)]
    assert paths, "not a crawl_command() crawl: it writes no stats file"
    return statsfile.read_stats(Path(paths[-1]))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def process(pipeline: Any, item: Any) -> Any:
    """Run a pipeline stage on one item outside a crawl. The project's stages are coroutines
    that never await: each item goes through a stage in one step (StorePipeline takes the
    document ValidatePipeline checked last, which relies on it)."""
    coro = pipeline.process_item(item)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError(f"{type(pipeline).__name__}.process_item awaited something")
