"""Kaggle Models: the auth middleware on its own, then whole crawls against the mock hub."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from scrapy import Request
from scrapy.utils.test import get_crawler

from ptmspiders.middlewares.auth import HubAuthMiddleware
from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.spiders.kaggle_models import KaggleModelsSpider
from ptmspiders.stores import open_store
from tests.conftest import crawl_stats, hub_env, run_crawl
from tests.mockhub import MockHub

FIXTURES = Path(__file__).parent / "fixtures" / "kaggle"
FIXTURE_IDS = {f"kaggle:{m['ref']}" for m in json.loads((FIXTURES / "models.json").read_text())}
BASIC = "Basic " + base64.b64encode(b"ptm-user:s3cret-key").decode()


def stored(tmp_path: Path) -> list[dict]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return list(store.find("models", {"hub": "kaggle"}))


def test_credentials_go_to_the_kaggle_api_origin_only(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "ptm-user")
    monkeypatch.setenv("KAGGLE_KEY", "s3cret-key")
    crawler = get_crawler(KaggleModelsSpider, {
        "KAGGLE_API_URL": "http://127.0.0.1:8001/api/v1",
        "MODELZOO_URL": "http://127.0.0.1:8002", "HF_ENDPOINT": "http://127.0.0.1:8003",
        "GITHUB_API_URL": "http://127.0.0.1:8004",
    })
    mw = HubAuthMiddleware.from_crawler(crawler)
    api = Request("http://127.0.0.1:8001/api/v1/models/list?pageSize=1")
    mw.process_request(api)
    assert api.headers.get("Authorization") == BASIC.encode()
    for url in ("http://127.0.0.1:8002/api/models/0/", "http://127.0.0.1:8003/api/models",
                "http://localhost:8001/api/v1/models/list", "https://127.0.0.1:8001/x"):
        other = Request(url)
        mw.process_request(other)
        assert b"Authorization" not in other.headers, url
    # A redirect that leaves the origin carries a copy of the headers: they are stripped.
    moved = api.replace(url="http://127.0.0.1:8002/elsewhere")
    mw.process_request(moved)
    assert b"Authorization" not in moved.headers


@pytest.mark.crawl
def test_whole_crawl_pages_by_token_and_reruns_idempotently(mockhub, tmp_path):
    result = run_crawl("kaggle_models", mockhub, tmp_path, "-s", "PTM_KAGGLE_PAGE_SIZE=3")
    stats = crawl_stats(result)
    docs = stored(tmp_path)
    assert {d["_id"] for d in docs} == FIXTURE_IDS
    assert len(docs) == len(FIXTURE_IDS)
    for doc in docs:
        assert schema_error("model", doc) is None
        assert doc["extra"]["instances"] and doc["extra"]["list_fingerprint"]
    assert stats["ptm/list_pages"] == 3
    assert stats["ptm/valid/models"] == len(FIXTURE_IDS)
    assert "ptm/incomplete" not in stats
    tokens = [r.arg("pageToken") for r in mockhub.requests("/api/v1/models/list")]
    assert tokens[0] is None and len(set(tokens[1:])) == 2
    gemma = next(d for d in docs if d["_id"] == "kaggle:google/gemma")
    assert gemma["libraries"] == ["keras", "pytorch", "gemma.cpp"]
    assert gemma["papers"] == ["arxiv:2403.08295"]

    run_crawl("kaggle_models", mockhub, tmp_path, "-s", "PTM_KAGGLE_PAGE_SIZE=3")
    again = stored(tmp_path)
    assert len(again) == len(FIXTURE_IDS)
    assert {d["_id"]: d["extra"]["list_fingerprint"] for d in again} == \
        {d["_id"]: d["extra"]["list_fingerprint"] for d in docs}


@pytest.mark.crawl
def test_basic_auth_reaches_the_mock_and_nothing_else(mockhub, tmp_path):
    with MockHub() as kaggle_hub:  # another origin than every other hub
        kaggle_hub.kaggle.credentials = ("ptm-user", "s3cret-key")
        env = hub_env(mockhub, KAGGLE_API_URL=f"{kaggle_hub.url}/api/v1",
                      KAGGLE_USERNAME="ptm-user", KAGGLE_KEY="s3cret-key")
        result = run_crawl("kaggle_models", mockhub, tmp_path, "-a", "limit=2", env=env)
        assert "s3cret-key" not in result.stderr
        calls = kaggle_hub.requests("/api/v1/")
        assert calls and all(r.headers.get("authorization") == BASIC for r in calls)
    assert len(stored(tmp_path)) == 2
    # The same credentials in the environment never reach another hub's origin.
    run_crawl("hf_models", mockhub, tmp_path, "-a", "limit=1", env=env)
    assert mockhub.requests("/")
    assert all("authorization" not in r.headers for r in mockhub.requests("/"))


@pytest.mark.crawl
def test_refused_credentials_end_cleanly(mockhub, tmp_path):
    mockhub.kaggle.credentials = ("ptm-user", "s3cret-key")
    result = run_crawl("kaggle_models", mockhub, tmp_path, expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    assert stats["ptm/auth_refused/401"] == 1
    assert stats["ptm/incomplete"] is True
    assert "set KAGGLE_USERNAME and KAGGLE_KEY" in result.stderr
    assert stored(tmp_path) == []


@pytest.mark.crawl
def test_malformed_entries_and_a_broken_page_are_counted(mockhub, tmp_path):
    mockhub.kaggle.models[1:1] = json.loads((FIXTURES / "malformed.json").read_text())
    mockhub.kaggle.broken_pages = {2}
    result = run_crawl("kaggle_models", mockhub, tmp_path, "-s", "PTM_KAGGLE_PAGE_SIZE=3",
                       "-s", "PTM_RETRY_TIMES=1", "-s", "PTM_RETRY_BACKOFF_BASE=0.01",
                       expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    # Retried once as a malformed answer, then logged and counted by the spider.
    assert stats["ptm/retry/reason_count/bad_response/truncated_json"] == 1
    # pages 0 and 1 hold 4 good models and the 3 malformed entries; page 2 is cut short
    assert len(stored(tmp_path)) == 3
    assert stats["ptm/rejected/entry_not_object"] == 1
    assert stats["ptm/rejected/entry_without_ref"] == 2
    assert stats["ptm/bad_response/truncated_json"] == 1
    assert stats["ptm/incomplete/list_page_truncated_json"] == 1
    broken = mockhub.requests("/api/v1/models/list")[-1]
    assert "Unusable model list page from http://" in result.stderr
    assert f"{mockhub.url}{broken.raw_target} (200): truncated_json" in result.stderr


@pytest.mark.crawl
def test_arguments_filter_and_limit(mockhub, tmp_path):
    run_crawl("kaggle_models", mockhub, tmp_path, "-a", "owner=google", "-a",
              "sort_by=createTime", "-a", "limit=1")
    (call,) = mockhub.requests("/api/v1/models/list")
    assert parse_qs(urlsplit(call.raw_target).query) == {
        "sortBy": ["create_time"], "owner": ["google"], "pageSize": ["1"]}
    assert [d["_id"] for d in stored(tmp_path)] == ["kaggle:google/gemma"]


@pytest.mark.crawl
def test_wrong_argument_is_a_clear_error(mockhub, tmp_path):
    result = run_crawl("kaggle_models", mockhub, tmp_path, "-a", "sort_by=stars", check=False)
    assert "-a sort_by='stars': expected one of" in result.stderr
    assert mockhub.requests("/api/v1/") == []
