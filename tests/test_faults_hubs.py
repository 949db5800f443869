"""The fault matrix for the other hubs: Kaggle's paged list, the GitHub catalogues (git tree and
raw JSON files), modelzoo's API and the Hugging Face enrichment APIs.

A malformed answer on a first attempt (HTML, invalid or truncated JSON) is retried and every
model stored; one on every attempt is logged with its URL and counted, and the crawl goes on.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.stores import open_store
from tests.conftest import FIXTURES, crawl_stats, run_crawl
from tests.mockhub import MockHub
from tests.mockhub.kaggle import encode_token

pytestmark = pytest.mark.crawl

FAST = ["-s", "PTM_RETRY_TIMES=3", "-s", "PTM_RETRY_BACKOFF_BASE=0.05",
        "-s", "PTM_RETRY_BACKOFF_MAX=0.2", "-s", "DOWNLOAD_TIMEOUT=2",
        "-s", "PTM_RATELIMIT_MIN_WAIT=0.2"]
TRANSIENT = ["html", "invalid_json", "truncated"]


def stored(tmp_path: Path, hub: str, collection: str = "models") -> dict[str, dict[str, Any]]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return {d["_id"]: d for d in store.find(collection, {"hub": hub})}


def failures(stats: dict[str, Any]) -> list[str]:
    return [k for k in stats if k.startswith(("ptm/failed/", "ptm/bad_response/",
                                              "ptm/incomplete"))]


def assert_retried(stats: dict[str, Any], hits: int) -> None:
    assert hits > 0
    assert stats["ptm/retry/count"] >= hits
    assert stats["finish_reason"] == "finished"


# Kaggle: the paged list ---------------------------------------------------------------------
def kaggle_models(n: int) -> list[dict[str, Any]]:
    template = json.loads((FIXTURES / "kaggle" / "models.json").read_text())[0]
    models = []
    for i in range(n):
        m = copy.deepcopy(template)
        m.update(id=100_000 + i, ref=f"gen-lab/model-{i:04d}", slug=f"model-{i:04d}",
                 title=f"Model {i}", author="gen-lab")
        models.append(m)
    return models


def kaggle_ids(models: list[dict[str, Any]]) -> set[str]:
    return {f"kaggle:{m['ref']}" for m in models}


@pytest.mark.parametrize("kind", TRANSIENT)
def test_kaggle_list_pages_malformed_once_lose_nothing(mockhub: MockHub, tmp_path: Path,
                                                       kind: str) -> None:
    mockhub.kaggle.models = models = kaggle_models(50)  # type: ignore[attr-defined]
    fault = mockhub.faults.add(kind, prefix="/api/v1/models/list")  # type: ignore[attr-defined]
    result = run_crawl("kaggle_models", mockhub, tmp_path, *FAST,
                       "-s", "PTM_KAGGLE_PAGE_SIZE=10")
    stats = crawl_stats(result)
    assert fault.hits == 5  # every page's first attempt
    assert_retried(stats, fault.hits)
    assert set(stored(tmp_path, "kaggle")) == kaggle_ids(models)
    assert stats["ptm/list_pages"] == 5
    assert not failures(stats), stats


def test_kaggle_list_page_malformed_for_good_is_named_and_ends_the_listing(
        mockhub: MockHub, tmp_path: Path) -> None:
    mockhub.kaggle.models = models = kaggle_models(50)  # type: ignore[attr-defined]
    third = urlencode({"pageToken": encode_token(20)})
    fault = mockhub.faults.add("html", attempts=None,  # type: ignore[attr-defined]
                               prefix="/api/v1/models/list", contains=third)
    result = run_crawl("kaggle_models", mockhub, tmp_path, *FAST,
                       "-s", "PTM_KAGGLE_PAGE_SIZE=10", expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    assert stats["finish_reason"] == "finished"
    assert fault.hits == 4  # the first attempt and three retries
    assert set(stored(tmp_path, "kaggle")) == kaggle_ids(models[:20])
    assert stats["ptm/bad_response/html_instead_of_json"] == 1
    assert stats["ptm/incomplete/list_page_html_instead_of_json"] == 1
    assert f"Unusable model list page from {mockhub.url}/api/v1/models/list?" in result.stderr
    assert third in result.stderr


# GitHub catalogues: the git tree, a raw JSON index and raw JSON configs ---------------------
MODELHUB_CONFIG_ERRORS = {"modelhub:broken-config": "invalid_json",
                          "modelhub:DentalArtifact": "not_found"}


def config_errors(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {_id: d["extra"]["config_error"] for _id, d in docs.items()
            if d["extra"].get("config_error")}


@pytest.mark.parametrize("kind", TRANSIENT)
def test_catalogue_tree_and_raw_json_malformed_once_lose_nothing(mockhub: MockHub,
                                                                 tmp_path: Path,
                                                                 kind: str) -> None:
    tree = mockhub.faults.add(kind, prefix="/repos/")  # type: ignore[attr-defined]
    raw = mockhub.faults.add(kind, prefix="/raw/")  # type: ignore[attr-defined]
    result = run_crawl("modelhub", mockhub, tmp_path, *FAST)
    stats = crawl_stats(result)
    # models.json and five configs (a body fault spares the one answered 404)
    assert tree.hits == 1 and raw.hits == (5 if kind == "invalid_json" else 6)
    assert_retried(stats, tree.hits + raw.hits)
    docs = stored(tmp_path, "modelhub")
    assert len(docs) == 5
    # Only what is broken in the repositories themselves (as without faults).
    assert config_errors(docs) == MODELHUB_CONFIG_ERRORS
    assert not failures(stats), stats


def test_catalogue_raw_json_malformed_for_good_is_named_and_counted(mockhub: MockHub,
                                                                    tmp_path: Path) -> None:
    url = "/raw/modelhub-ai/cxr-risk/main/contrib_src/model/config.json"
    fault = mockhub.faults.add("html", attempts=None, prefix=url)  # type: ignore[attr-defined]
    result = run_crawl("modelhub", mockhub, tmp_path, *FAST)
    stats = crawl_stats(result)
    assert fault.hits == 4
    docs = stored(tmp_path, "modelhub")
    assert len(docs) == 5  # stored from the index alone; the others complete
    assert config_errors(docs) == {**MODELHUB_CONFIG_ERRORS,
                                   "modelhub:cxr-risk": "html_instead_of_json"}
    assert stats["ptm/config_errors/html_instead_of_json"] == 1
    assert f"Gave up retrying <GET {mockhub.url}{url}> (failed 4 times)" in result.stderr
    assert f"config {mockhub.url}{url} unusable (html_instead_of_json)" in result.stderr
    assert stats["finish_reason"] == "finished"


def test_catalogue_manifest_malformed_for_good_is_skipped_and_counted(mockhub: MockHub,
                                                                      tmp_path: Path) -> None:
    fault = mockhub.faults.add("invalid_json", attempts=None,  # type: ignore[attr-defined]
                               prefix="/raw/onnx/models/main/ONNX_HUB_MANIFEST.json")
    result = run_crawl("onnx_zoo", mockhub, tmp_path, *FAST)
    stats = crawl_stats(result)
    assert fault.hits == 4  # not as committed (another blob sha): retried
    assert stats["ptm/skipped/invalid_json"] == 1
    assert "Skipped catalogue file ONNX_HUB_MANIFEST.json: invalid_json" in result.stderr
    assert f"Gave up retrying <GET {mockhub.url}/raw/onnx/models/main/ONNX_HUB_MANIFEST.json>" \
        in result.stderr
    assert stored(tmp_path, "onnx_zoo") == {}
    assert stats["finish_reason"] == "finished"


# modelzoo: the API, with its fallback -------------------------------------------------------
MODELZOO_SLUGS = {m["slug"] for m in json.loads(
    (FIXTURES / "modelzoo" / "models.json").read_text())}


@pytest.mark.parametrize("kind", TRANSIENT)
def test_modelzoo_api_malformed_once_loses_nothing(mockhub: MockHub, tmp_path: Path,
                                                   kind: str) -> None:
    fault = mockhub.faults.add(kind, prefix="/api/models/")  # type: ignore[attr-defined]
    result = run_crawl("modelzoo", mockhub, tmp_path, *FAST, "-a", "render=never")
    stats = crawl_stats(result)
    assert fault.hits == 1 + len(MODELZOO_SLUGS)  # the list and every detail
    assert_retried(stats, fault.hits)
    docs = stored(tmp_path, "modelzoo")
    assert {d["hub_id"] for d in docs.values()} == MODELZOO_SLUGS
    assert {d["extra"]["detail_source"] for d in docs.values()} == {"api"}
    assert not failures(stats), stats


def test_modelzoo_detail_malformed_for_good_falls_back_after_bounded_retries(
        mockhub: MockHub, tmp_path: Path) -> None:
    path = "/api/models/bert-tensorflow/"
    fault = mockhub.faults.add("html", attempts=None, prefix=path)  # type: ignore[attr-defined]
    result = run_crawl("modelzoo", mockhub, tmp_path, *FAST, "-a", "render=never")
    stats = crawl_stats(result)
    assert fault.hits == 3  # PTM_MODELZOO_API_RETRIES=2, below PTM_RETRY_TIMES
    assert stats["ptm/bad_response/html_instead_of_json"] == 1
    assert f"Unusable model detail from {mockhub.url}{path}" in result.stderr
    docs = {d["hub_id"]: d for d in stored(tmp_path, "modelzoo").values()}
    assert set(docs) == MODELZOO_SLUGS
    bert = docs["bert-tensorflow"]["extra"]  # the fallback ran: its list facts are kept
    assert bert["detail_source"] == "list"
    assert bert["detail_error"] == "api_html_instead_of_json"
    assert {d["extra"]["detail_source"] for s, d in docs.items() if s != "bert-tensorflow"} \
        == {"api"}
    assert stats["finish_reason"] == "finished"


# Hugging Face enrichment: the tree and commits APIs -----------------------------------------
needs_git = pytest.mark.skipif(not (shutil.which("git") and shutil.which("gpg")),
                               reason="needs git and gpg")
ENRICH = ["-s", "PTM_HF_FILES=1", "-s", "PTM_HF_COMMITS=1", "-s", "PTM_HF_SIGNATURE_METHOD=api",
          "-a", "author=acme-ai", "-a", "owners=0"]


@needs_git
@pytest.mark.parametrize("kind", ["html", "invalid_json"])
def test_enrichment_apis_malformed_once_lose_nothing(mockhub: MockHub, tmp_path: Path,
                                                     kind: str) -> None:
    fault = mockhub.faults.add(kind, prefix="/api/models/acme-ai/")  # type: ignore[attr-defined]
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST, *ENRICH)
    stats = crawl_stats(result)
    docs = stored(tmp_path, "huggingface")
    assert docs and fault.hits == 2 * len(docs)  # a tree and a commits call per model
    assert_retried(stats, fault.hits)
    for doc in docs.values():
        assert doc["enrichment"]["gaps"] == {}, doc["_id"]
        assert doc["enrichment"]["steps"] == ["files", "commits"]
        assert doc["files"]
    assert not [k for k in stats if "/failed/" in k], stats


@needs_git
def test_enrichment_api_malformed_for_good_leaves_a_named_gap(mockhub: MockHub,
                                                              tmp_path: Path) -> None:
    prefix = "/api/models/acme-ai/bert-base-cased/tree/"
    fault = mockhub.faults.add("html", attempts=None, prefix=prefix)  # type: ignore[attr-defined]
    result = run_crawl("hf_models", mockhub, tmp_path, *FAST, *ENRICH)
    stats = crawl_stats(result)
    assert fault.hits == 4
    docs = stored(tmp_path, "huggingface")
    bert = docs.pop("huggingface:acme-ai/bert-base-cased")
    assert bert["enrichment"]["gaps"] == {"files": "html_instead_of_json"}
    assert bert["enrichment"]["steps"] == ["commits"]  # files are tried again next crawl
    assert docs and all(d["enrichment"]["gaps"] == {} for d in docs.values())
    assert stats["ptm/enrich/files/failed/html_instead_of_json"] == 1
    assert f"Gave up retrying <GET {mockhub.url}{prefix}" in result.stderr
    assert "No files for acme-ai/bert-base-cased: html_instead_of_json" in result.stderr
    assert stats["finish_reason"] == "finished"
