"""modelhub.ai: index and config parsing on the project's fixtures, then whole crawls."""

from __future__ import annotations

import json

import pytest

from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import to_doc
from ptmspiders.parsers import modelhub as p
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.stores import open_store
from tests.conftest import FIXTURES, crawl_stats, run_crawl

GH = FIXTURES / "github"
INDEX = GH / "modelhub-ai" / "modelhub" / "master" / "models.json"
SEEN = "2025-01-02T03:04:05.000Z"


def entries():
    found, _ = p.parse_index(INDEX.read_bytes())
    return {e.name: e for e in found}


def build(name: str, config: dict | None, error: str | None = None):
    item = p.parse_model(entries()[name], config, config_error=error, index_path="models.json",
                         blob_sha="c" * 40, source_url="http://raw/models.json",
                         config_url="http://raw/config.json", seen_at=SEEN)
    normalize_model(item)
    assert schema_error("model", to_doc(item)) is None
    return item


def config_of(owner: str, repo: str, ref: str = "master") -> dict:
    return p.parse_config((GH / owner / repo / ref / p.CONFIG_PATH).read_bytes())


def test_index_entries_and_rejects():
    found, rejects = p.parse_index(INDEX.read_bytes())
    assert [e.name for e in found] == ["squeezenet", "colab_lungseg", "cxr-risk",
                                       "DentalArtifact", "broken-config"]
    assert rejects == [("entry 5 (no-github)", "entry_without_github")]
    dental = next(e for e in found if e.name == "DentalArtifact")
    # raw URLs are case-sensitive: the index's spelling is kept, ".git" dropped
    assert (dental.repo.owner, dental.repo.repo, dental.repo.ref) == (
        "bhklab", "DentalArtifactModel", "master")
    assert next(e for e in found if e.name == "cxr-risk").repo.ref == "main"


def test_model_from_index_and_config():
    item = build("squeezenet", config_of("modelhub-ai", "squeezenet"))
    assert item._id == "modelhub:squeezenet"
    assert item.hub_uid == "4b8c7a3e-1f0e-4b7a-9a51-7d2f0f1c2e01"
    assert (item.title, item.owner) == ("SqueezeNet", "modelhub-ai")
    assert item.url == "https://github.com/modelhub-ai/squeezenet"
    assert item.tasks == ["classification"]
    assert item.libraries == ["mxnet", "onnx"]
    assert item.architectures == ["Convolutional Neural Network (CNN)"]
    assert item.papers == ["arxiv:1602.07360"]
    assert item.github_repos == ["modelhub-ai/squeezenet"]
    assert item.extra["format"] == ".onnx"
    assert item.extra["publication"]["year"] == 2016
    assert item.extra["io"]["input"]["single"]["format"] == ["image/png", "image/jpeg"]
    assert item.extra["config_error"] is None and item.card["present"] is True
    assert item.raw["config"]["id"] == item.hub_uid
    assert item.extra["path"] == "models.json" and item.extra["blob_sha"] == "c" * 40


def test_papers_from_doi_urls_and_bibtex():
    lung = build("colab_lungseg", config_of("modelhub-ai", "colab_lungseg"))
    assert lung.papers == ["doi:10.1186/s41747-020-00173-2"]
    assert lung.libraries == ["pytorch"]  # "colab" is a backend, not a library
    assert lung.extra["gpu"] is True
    cxr = build("cxr-risk", config_of("modelhub-ai", "cxr-risk", "main"))
    assert cxr.papers == ["doi:10.1001/jamanetworkopen.2019.7416"]
    assert cxr.tasks == ["risk-prediction"]


def test_model_without_config_comes_from_the_index():
    item = build("DentalArtifact", None, "not_found")
    assert item.extra["config_error"] == "not_found" and item.card["present"] is False
    assert item.description == "Dental artifact detection"
    assert item.github_repos == ["bhklab/dentalartifactmodel"]
    assert item.libraries == ["tensorflow"]


def test_broken_config_is_invalid_json():
    with pytest.raises(BadResponse) as exc:
        config_of("modelhub-ai", "broken-config")
    assert exc.value.reason == "invalid_json"


@pytest.mark.parametrize(("entry", "reason"), [
    ("x", "entry_not_object"),
    ({"github": "https://github.com/a/b"}, "entry_without_name"),
    ({"name": "x", "github": "https://gitlab.com/a/b"}, "entry_without_github"),
    ({"name": "x", "github": "https://github.com/a/b", "github_branch": "a b"},
     "bad_github_branch"),
])
def test_bad_index_entries(entry, reason):
    found, rejects = p.parse_index(json.dumps([entry]).encode())
    assert found == [] and rejects[0][1] == reason


@pytest.mark.crawl
def test_crawl_one_document_per_index_entry(mockhub, tmp_path):
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    stats = crawl_stats(run_crawl("modelhub", mockhub, tmp_path, "-s", "PTM_RETRY_TIMES=1",
                                  "-s", "PTM_RETRY_BACKOFF_BASE=0.01"))
    assert stats["ptm/valid/models"] == 5
    assert stats["ptm/config_errors/not_found"] == 1
    assert stats["ptm/config_errors/invalid_json"] == 1
    # A config from a model's own repository has no known blob sha: retried, then recorded.
    assert stats["ptm/retry/reason_count/bad_response/invalid_json"] == 1
    assert stats["ptm/rejected/entry_without_github"] == 1
    raw = sorted(r.path for r in mockhub.requests("/raw/"))
    assert "/raw/modelhub-ai/cxr-risk/main/contrib_src/model/config.json" in raw
    assert "/raw/bhklab/DentalArtifactModel/master/contrib_src/model/config.json" in raw
    with open_store(uri) as store:
        docs = {d["_id"]: d for d in store.find("models", {"hub": "modelhub"})}
    assert set(docs) == {"modelhub:squeezenet", "modelhub:colab_lungseg", "modelhub:cxr-risk",
                         "modelhub:DentalArtifact", "modelhub:broken-config"}
    assert docs["modelhub:broken-config"]["extra"]["config_error"] == "invalid_json"
    assert docs["modelhub:cxr-risk"]["title"] == "CXR-risk"

    mockhub.clear_log()
    stats = crawl_stats(run_crawl("modelhub", mockhub, tmp_path))
    assert mockhub.requests("/raw/") == []
    assert stats["ptm/unchanged_documents"] == 5
    with open_store(uri) as store:
        assert store.count("models", {"hub": "modelhub"}) == 5
