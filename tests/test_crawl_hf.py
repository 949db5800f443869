"""Whole ``scrapy crawl hf_models`` runs against the mock Hub (a subprocess per crawl)."""

import json

import pytest

from ptmspiders.stores import open_store
from tests.conftest import crawl_stats, read_jsonl, run_crawl

pytestmark = pytest.mark.crawl


def stored(tmp_path, collection="models"):
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as s:
        return {d["_id"]: d for d in s.find(collection)}


def test_full_crawl_stores_every_listed_model_across_pages(mockhub, tmp_path):
    result = run_crawl("hf_models", mockhub, tmp_path, "-s", "PTM_HF_PAGE_SIZE=7",
                       "-O", str(tmp_path / "hf.jsonl"))
    docs = stored(tmp_path)
    expected = {f"huggingface:{m['id']}" for m in mockhub.hf.models}
    assert set(docs) == expected
    list_calls = mockhub.requests("/api/models")
    assert [r.arg("limit") for r in list_calls] == ["7"] * 4  # 25 models, pages of 7
    assert all(r.args("expand") for r in list_calls)
    assert not [r for r in list_calls if r.path != "/api/models"]  # no per-model requests
    stats = crawl_stats(result)
    assert stats["ptm/stored/models"] == 25 and stats["finish_reason"] == "finished"

    # every field the schema takes from the API
    entry = next(m for m in mockhub.hf.models if m["id"] == "vision-works/resnet-50")
    doc = docs["huggingface:vision-works/resnet-50"]
    assert doc["raw"] == {k: v for k, v in entry.items() if k != "modelId"}  # expand projection
    assert doc["latest_commit_sha"] == entry["sha"]
    assert doc["downloads"] == entry["downloads"] and doc["likes"] == entry["likes"]
    assert doc["github_repos"] == ["vision-works/pytorch-image-models"]
    assert doc["papers"] == ["arxiv:1512.03385"]
    assert doc["libraries"] == ["timm", "pytorch"]

    # the feed export holds the same model documents
    feed = read_jsonl(tmp_path / "hf.jsonl")
    exported = {d["_id"]: d for d in feed if "hub_id" in d}
    assert exported.keys() == docs.keys()
    # counted by the item processor (ptmspiders/perf/itemcount.py), the feed by its own receiver
    assert stats["item_scraped_count"] == len(feed)
    assert exported["huggingface:vision-works/resnet-50"] == doc


def test_owners_full_collects_every_overview_and_resolves_kinds(mockhub, tmp_path):
    run_crawl("hf_models", mockhub, tmp_path, "-a", "owners=full")
    owners = stored(tmp_path, "owners")
    assert owners["huggingface:acme-ai"]["is_verified"] is True
    assert owners["huggingface:acme-ai"]["type"] == "org"
    assert owners["huggingface:jdoe"]["type"] == "user"
    assert owners["huggingface:ghost-user"]["type"] == "unknown"
    org_calls = [r.path for r in mockhub.requests("/api/organizations/")]
    assert len(org_calls) == len(set(org_calls)) == 11  # one per distinct owner
    assert {r.path for r in mockhub.requests("/api/users/")} == {
        "/api/users/jdoe/overview", "/api/users/msmith/overview",
        "/api/users/ghost-user/overview"}


def test_owners_orgs_makes_one_call_per_owner_and_full_completes_the_users_later(
        mockhub, tmp_path):
    run_crawl("hf_models", mockhub, tmp_path)  # owners=orgs, the default
    owners = stored(tmp_path, "owners")
    org_calls = [r.path for r in mockhub.requests("/api/organizations/")]
    assert len(org_calls) == len(set(org_calls)) == len(owners) == 11
    assert mockhub.requests("/api/users/") == []
    acme = owners["huggingface:acme-ai"]
    assert (acme["type"], acme["is_verified"], acme["num_models"]) == ("org", True, 3)
    jdoe = owners["huggingface:jdoe"]
    assert (jdoe["type"], jdoe["is_verified"], jdoe["is_pro"], jdoe["orgs"]) == (
        "user", False, None, [])
    assert jdoe["extra"]["overview"] == "skipped"
    # One call cannot tell a deleted account from a user: the price of this mode.
    assert owners["huggingface:ghost-user"]["type"] == "user"

    mockhub.clear_log()
    run_crawl("hf_models", mockhub, tmp_path, "-a", "owners=orgs")
    assert mockhub.requests("/api/organizations/") == mockhub.requests("/api/users/") == []

    # A full crawl asks the users' endpoint, once, for each user stored without an overview.
    run_crawl("hf_models", mockhub, tmp_path, "-a", "owners=full")
    assert sorted(r.path for r in mockhub.requests("/api/users/")) == [
        "/api/users/ghost-user/overview", "/api/users/jdoe/overview",
        "/api/users/msmith/overview"]
    # ghost-user is no user either: unknown, with the organisations' 404 of the orgs crawl.
    assert mockhub.requests("/api/organizations/") == []
    after = stored(tmp_path, "owners")
    assert after["huggingface:jdoe"]["orgs"] == ["acme-ai", "reading-club"]
    assert "overview" not in after["huggingface:jdoe"]["extra"]
    assert after["huggingface:jdoe"]["crawl"]["first_seen"] == jdoe["crawl"]["first_seen"]
    assert after["huggingface:ghost-user"]["type"] == "unknown"
    assert after["huggingface:acme-ai"] == acme


def test_second_crawl_keeps_the_count_and_first_seen(mockhub, tmp_path):
    run_crawl("hf_models", mockhub, tmp_path)
    before = stored(tmp_path)
    mockhub.clear_log()
    run_crawl("hf_models", mockhub, tmp_path)
    after = stored(tmp_path)
    assert len(after) == len(before) == 25
    for _id, doc in after.items():
        assert doc["crawl"]["first_seen"] == before[_id]["crawl"]["first_seen"]
        assert doc["crawl"]["last_seen"] >= before[_id]["crawl"]["last_seen"]
    assert mockhub.requests("/api/organizations/") == []  # owners already stored


def test_arguments_filter_the_listing(mockhub, tmp_path):
    run_crawl("hf_models", mockhub, tmp_path, "-a", "author=acme-ai", "-a", "owners=0")
    assert set(stored(tmp_path)) == {"huggingface:acme-ai/bert-base-cased",
                                     "huggingface:acme-ai/bert-large-cased",
                                     "huggingface:acme-ai/t5-small-summarize"}
    assert mockhub.requests("/api/organizations/") == []


def test_ids_follow_307_renames(mockhub, tmp_path):
    run_crawl("hf_models", mockhub, tmp_path, "-a",
              "ids=acme-ai/bert-base-cased-old,jdoe/keras-mnist,nobody/missing", "-a", "owners=0")
    docs = stored(tmp_path)
    assert set(docs) == {"huggingface:acme-ai/bert-base-cased", "huggingface:jdoe/keras-mnist"}
    assert docs["huggingface:acme-ai/bert-base-cased"]["extra"]["renamed_from"] == \
        "acme-ai/bert-base-cased-old"
    detail_paths = [r.path for r in mockhub.requests("/api/models/")]
    assert "/api/models/acme-ai/bert-base-cased-old" in detail_paths
    assert "/api/models/acme-ai/bert-base-cased" in detail_paths


def test_a_bad_argument_is_a_clear_error(mockhub, tmp_path):
    result = run_crawl("hf_models", mockhub, tmp_path, "-a", "limit=lots", check=False)
    assert result.returncode == 2
    assert "hf_models: -a limit='lots': Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr
    assert mockhub.requests("/api/") == []


def test_mongodb_store_when_configured(mockhub, tmp_path):
    import os

    uri = os.environ.get("PTM_TEST_MONGO_URI")
    if not uri:
        pytest.skip("PTM_TEST_MONGO_URI not set (mongomock cannot cross processes)")
    db_uri = f"{uri.rstrip('/')}/ptm_crawl_{os.getpid()}"
    try:
        run_crawl("hf_models", mockhub, tmp_path, store_uri=db_uri)
        run_crawl("hf_models", mockhub, tmp_path, store_uri=db_uri)
        with open_store(db_uri) as s:
            assert s.count("models") == 25
    finally:
        with open_store(db_uri) as s:
            s.client.drop_database(s.db.name)


def test_settings_file_reads_the_endpoint_from_the_environment(mockhub, tmp_path):
    # HF_ENDPOINT is the only way the crawl above found the mock: prove the stored URLs use it
    run_crawl("hf_models", mockhub, tmp_path, "-a", "limit=1", "-a", "owners=0")
    (doc,) = stored(tmp_path).values()
    assert doc["url"].startswith(mockhub.url)
    assert json.dumps(doc["crawl"]["source_url"]).find(mockhub.url) > 0
