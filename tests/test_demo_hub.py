"""The demo's hub: ``MockHub(clean=True)`` serves every hub without the fixtures that are
faulty on purpose, so a whole crawl of each spider logs no warning or error (and the demo reads
as the success it is); the default hub, which the other tests use, keeps every fault."""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings

from tests.conftest import ROOT, crawl_stats, hub_env, run_crawl
from tests.mockhub import MockHub
from tests.mockhub.github import FAULTY_ENTRIES, FAULTY_FILES

SPIDERS = sorted(SpiderLoader.from_settings(get_project_settings()).list())
PROBLEM = re.compile(r"^(?:\S+ \S+ \[[^\]]+\] (?:WARNING|ERROR|CRITICAL): |Traceback ).*$", re.M)
# The mock takes any Kaggle key, as demo.sh says; the hub's URLs come from hub_env.
DEMO_ENV = {"KAGGLE_USERNAME": "ptm-demo", "KAGGLE_KEY": "any-key-the-mock-hub-accepts"}


@pytest.fixture(scope="module")
def clean_hub() -> Iterator[MockHub]:
    with MockHub(clean=True) as hub:
        yield hub


def demo_args(spider: str, hub: MockHub) -> list[str]:
    """The options demo.sh gives the spider."""
    if spider == "hf_models":
        keyring = hub.hf_git._keyring()  # type: ignore[attr-defined]
        return ["-s", "PTM_HF_CARDS=1", "-s", "PTM_HF_FILES=1", "-s", "PTM_HF_COMMITS=1",
                "-s", f"PTM_HF_GNUPGHOME={keyring}"]
    if spider == "packages":
        step = re.search(r"^crawl packages (.*)$", (ROOT / "scripts" / "demo.sh").read_text(),
                         re.M)
        assert step is not None
        return step.group(1).split()
    return []


@pytest.mark.crawl
@pytest.mark.parametrize("spider", SPIDERS)
def test_a_whole_crawl_of_the_clean_hub_logs_no_warning(spider: str, clean_hub: MockHub,
                                                         tmp_path: Path) -> None:
    if spider == "hf_models" and not (shutil.which("git") and shutil.which("gpg")):
        pytest.skip("the demo's hf_models crawl reads signed commits: needs git and gpg")
    if spider == "packages":  # packages of the models a listing crawl stored, as in the demo
        run_crawl("hf_models", clean_hub, tmp_path, env=hub_env(clean_hub, **DEMO_ENV))
    result = run_crawl(spider, clean_hub, tmp_path, *demo_args(spider, clean_hub),
                       "-s", f"PTM_PACKAGES_DIR={tmp_path / 'packages'}",
                       env=hub_env(clean_hub, GITHUB_MEDIA_URL=f"{clean_hub.url}/media",
                                   **DEMO_ENV), timeout=120)
    stats = crawl_stats(result)
    assert stats.get("finish_reason") == "finished"
    assert stats.get("item_scraped_count", 0) > 0
    assert PROBLEM.findall(result.stderr) == []


@pytest.mark.crawl
def test_modelzoo_without_a_browser_as_the_demo_runs_it(clean_hub: MockHub,
                                                        tmp_path: Path) -> None:
    """Where Chromium is missing, demo.sh crawls modelzoo with ``render=never``."""
    result = run_crawl("modelzoo", clean_hub, tmp_path, "-a", "render=never",
                       "-s", f"PTM_CHROMIUM_PATH={tmp_path / 'no-chromium'}",
                       env=hub_env(clean_hub, **DEMO_ENV))
    assert crawl_stats(result).get("item_scraped_count", 0) > 0
    assert PROBLEM.findall(result.stderr) == []


def test_demo_sh_crawls_every_spider() -> None:
    steps = re.findall(r"^crawl (\w+)", (ROOT / "scripts" / "demo.sh").read_text(), re.M)
    assert sorted(steps) == SPIDERS


def get(hub: MockHub, path: str) -> bytes | None:
    try:
        with urllib.request.urlopen(hub.url + path) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        assert error.code == 404
        return None


@pytest.mark.parametrize("clean", [False, True])
def test_only_the_clean_hub_leaves_out_the_faulty_fixtures(clean: bool) -> None:
    """Each declared faulty file and entry is in the fixtures (no stale declaration), served
    by the default hub and absent from the clean one; everything else is served by both."""
    with MockHub(clean=clean) as hub:
        for target in FAULTY_FILES:
            assert (get(hub, f"/raw/{target}") is None) is clean, target
        assert get(hub, "/raw/pytorch/hub/master/pytorch_vision_alexnet.md") is not None
        for target, (key, names) in FAULTY_ENTRIES.items():
            body = get(hub, f"/raw/{target}")
            assert body is not None
            entries = json.loads(body)
            served = {e.get(key) if isinstance(e, dict) else e for e in entries}
            assert set(names) <= served if not clean else not set(names) & served, target
            assert any(isinstance(e, dict) and e.get(key) not in names for e in entries)
