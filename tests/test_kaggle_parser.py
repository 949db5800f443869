"""Kaggle Models list parser on the project's fixtures, without a reactor."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import to_doc
from ptmspiders.parsers import kaggle
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error

FIXTURES = Path(__file__).parent / "fixtures" / "kaggle"
API = "https://www.kaggle.com/api/v1"
SEEN = "2025-01-01T00:00:00.000Z"


def page(models: list, **extra) -> bytes:
    return json.dumps({"models": models, **extra}).encode()


@pytest.fixture(scope="module")
def models() -> list[dict]:
    return json.loads((FIXTURES / "models.json").read_text())


def parse(models: list, **extra):
    return kaggle.parse_list_page(page(models, **extra), api_url=API, source_url="u",
                                  seen_at=SEEN)


def by_id(models: list) -> dict:
    items, rejects, _, _ = parse(models)
    assert rejects == []
    return {i._id: normalize_model(i) for i in items}


def test_every_fixture_model_is_a_valid_document(models):
    items = by_id(models)
    assert len(items) == len(models)
    for item in items.values():
        assert schema_error("model", to_doc(item)) is None, item._id
        assert item.hub == "kaggle" and item._id == f"kaggle:{item.hub_id}"


def test_gemma_fields(models):
    item = by_id(models)["kaggle:google/gemma"]
    assert item.owner == "google"
    assert item.name == "gemma"
    assert item.title == "Gemma"
    assert item.hub_uid == "3301"
    assert item.url == "https://www.kaggle.com/models/google/gemma"
    assert item.owner_url == "https://www.kaggle.com/google"
    assert item.created_at == "2024-02-21T13:00:00.000Z"
    assert item.private is False
    assert item.libraries == ["keras", "pytorch", "gemma.cpp"]
    assert item.license == "gemma"
    assert item.tags == ["Text Generation", "NLP"]
    assert item.tasks == ["text-generation"]
    assert item.papers == ["arxiv:2403.08295"]
    assert item.github_repos == ["google/gemma_pytorch"]
    assert item.extra["subtitle"].startswith("Lightweight open models")
    inst = {i["slug"]: i for i in item.extra["instances"]}
    assert set(inst) == {"2b", "7b", "2b-it"}
    assert inst["2b"]["framework"] == "keras" and inst["2b"]["version_number"] == 2
    assert inst["2b"]["fine_tunable"] is True
    assert inst["2b-it"]["fine_tunable"] is None  # default value left out by the API
    assert inst["7b"]["library"] == "pytorch" and inst["7b"]["license"] == "Gemma"


def test_frameworks_licenses_and_datasets(models):
    items = by_id(models)
    effnet = items["kaggle:tensorflow/efficientnet"]
    assert effnet.libraries == ["tensorflow", "tflite"]
    assert effnet.license == "apache-2.0"
    assert effnet.datasets == ["imagenet-ilsvrc-2012-cls"]
    assert effnet.private is None  # absent: not claimed either way
    assert effnet.created_at == "2023-11-14T18:20:01.120Z"
    qualcomm = items["kaggle:qualcomm/mobilenet-v2-quantized"]
    assert qualcomm.license == "bsd-3-clause OR mit"
    assert qualcomm.libraries == ["tflite", "onnx"]
    assert qualcomm.extra["instances"][0]["external_base_model_url"] == \
        "https://huggingface.co/qualcomm/MobileNet-v2-Quantized"
    titanic = items["kaggle:someuser/titanic-xgb"]
    assert titanic.libraries == ["sklearn"]
    assert titanic.license == "cc-by-nc-sa-4.0"
    assert titanic.description is None and titanic.tags == []


def test_papers_repos_and_base_models_from_text(models):
    items = by_id(models)
    bert = items["kaggle:keras/bert"]
    assert bert.papers == ["doi:10.18653/v1/n19-1423"]  # "arXiv:1810.04805" is prose, not a URL
    assert bert.base_models == ["keras/bert"]
    assert bert.created_at == "2023-07-12T09:30:00Z"
    assert items["kaggle:metaresearch/llama-3"].github_repos == []  # no scheme: not a link
    yamnet = items["kaggle:google/yamnet"]
    assert yamnet.github_repos == ["tensorflow/models"]
    assert yamnet.libraries == ["tfjs", "tflite", "tensorflow"]


def test_fingerprint_is_stable_and_tracks_changes(models):
    entry = models[0]
    reordered = json.loads(json.dumps(entry, sort_keys=True))
    assert kaggle.fingerprint(entry) == kaggle.fingerprint(reordered)
    changed = json.loads(json.dumps(entry))
    changed["instances"][0]["versionNumber"] = 3
    assert kaggle.fingerprint(changed) != kaggle.fingerprint(entry)
    item = by_id([entry])["kaggle:google/gemma"]
    assert re.fullmatch(r"[0-9a-f]{40}", item.extra["list_fingerprint"])
    assert item.extra["list_fingerprint"] == kaggle.fingerprint(entry)


def test_page_token_and_total():
    _, _, token, total = parse([], nextPageToken="abc", totalResults=42)
    assert (token, total) == ("abc", 42)
    assert parse([], nextPageToken="")[2] is None
    assert parse([])[2] is None


def test_malformed_entries_are_rejected_with_reasons(models):
    bad = json.loads((FIXTURES / "malformed.json").read_text())
    items, rejects, _, _ = parse([models[0], *bad])
    assert [i._id for i in items] == ["kaggle:google/gemma"]
    assert [r for _, r in rejects] == ["entry_not_object", "entry_without_ref",
                                       "entry_without_ref"]


def test_ref_is_rebuilt_from_author_and_slug():
    items, rejects, _, _ = parse([{"author": "someone", "slug": "thing", "title": "T"}])
    assert rejects == [] and items[0]._id == "kaggle:someone/thing"


@pytest.mark.parametrize(("body", "reason"), [
    (b"<html>Sign in</html>", "html_instead_of_json"),
    (b'{"models": [', "truncated_json"),
    (b"[]", "wrong_shape"),
    (b'{"models": {}}', "wrong_shape"),
    (b'{"code": 401, "message": "Unauthenticated"}', "api_error"),
])
def test_unusable_pages(body, reason):
    with pytest.raises(BadResponse) as exc:
        kaggle.parse_list_page(body, api_url=API, source_url=None, seen_at=SEEN)
    assert exc.value.reason == reason


def test_list_url_sends_what_the_official_client_sends():
    url = kaggle.list_url(API, page_size=500, page_token="T0k", search="bert",
                          sort_by="downloadCount", owner="keras")
    parts = urlsplit(url)
    assert parts.path == "/api/v1/models/list"
    assert parse_qs(parts.query) == {"search": ["bert"], "sortBy": ["download_count"],
                                     "owner": ["keras"], "pageSize": ["100"],
                                     "pageToken": ["T0k"]}


@pytest.mark.parametrize(("value", "expected"), [
    ("tensorFlow2", "tensorflow"), ("MODEL_FRAMEWORK_TENSOR_FLOW_1", "tensorflow"),
    ("pyTorch", "pytorch"), ("tfJs", "tfjs"), ("scikitLearn", "sklearn"),
    ("tensorRtLlm", "tensorrt-llm"), ("api", None), ("other", None), ("newThing", "newthing"),
    (None, None),
])
def test_framework_library(value, expected):
    assert kaggle.framework_library(value) == expected


def test_site_url():
    assert kaggle.site_url("https://www.kaggle.com/api/v1/") == "https://www.kaggle.com"
    assert kaggle.site_url("http://127.0.0.1:8000/api/v1") == "http://127.0.0.1:8000"


@pytest.mark.conformance
def test_sort_choices_match_the_cli_doc(hubdata):
    """Every ``--sort-by`` value the official CLI documents is accepted by ``-a sort_by``."""
    doc = (hubdata / "tensorflow_hub" / "kaggle_models" / "kaggle-api__docs__models.md")
    text = doc.read_text()
    line = next(x for x in text.splitlines() if "--sort-by" in x and "Valid options" in x)
    documented = set(re.findall(r"`(\w+)`", line.split("Valid options:")[1]))
    assert documented == {"hotness", "downloadCount", "voteCount", "notebookCount",
                          "createTime"}
    assert documented <= set(kaggle.SORT_BY)
    default_size = re.search(r"--page-size <SIZE>`: .*\(default: (\d+)\)", text)
    assert default_size is not None and int(default_size.group(1)) <= kaggle.MAX_PAGE_SIZE
