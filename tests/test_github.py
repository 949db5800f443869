"""GitHub catalogue helpers, the mock's git-trees/raw routes, and where GITHUB_TOKEN goes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from scrapy import Request
from scrapy.utils.test import get_crawler

from ptmspiders.github import RepoRef, git_blob_sha, parse_tree, raw_url, trees_url
from ptmspiders.hub_answers import BadResponse
from ptmspiders.middlewares.auth import HubAuthMiddleware
from tests.conftest import FIXTURES, crawl_stats, hub_env, run_crawl

PYTORCH_HUB = FIXTURES / "github" / "pytorch" / "hub" / "master"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_repo_ref_parse_and_urls():
    repo = RepoRef.parse("tensorflow/tfhub.dev", "master")
    assert repo.full_name == "tensorflow/tfhub.dev"
    assert trees_url("https://api.github.com/", repo) == (
        "https://api.github.com/repos/tensorflow/tfhub.dev/git/trees/master?recursive=1")
    assert trees_url("https://api.github.com", repo, recursive=False).endswith("/trees/master")
    assert raw_url("https://raw.githubusercontent.com", repo, "assets/docs/a b.md") == (
        "https://raw.githubusercontent.com/tensorflow/tfhub.dev/master/assets/docs/a%20b.md")
    assert repo.html_url("x/y", "tree") == "https://github.com/tensorflow/tfhub.dev/tree/master/x/y"


@pytest.mark.parametrize(("repo", "ref"), [
    ("pytorch", "master"), ("pytorch/hub/extra", "master"), ("pytorch/hub", ""),
    ("pytorch/hub", "a b"), ("https://github.com/pytorch/hub", "master"),
])
def test_repo_ref_rejects_bad_settings(repo, ref):
    with pytest.raises(ValueError):
        RepoRef.parse(repo, ref)


def test_git_blob_sha_matches_git(tmp_path):
    sample = PYTORCH_HUB / "nvidia_deeplearningexamples_ssd.md"  # CRLF: bytes must be kept
    out = subprocess.run(["git", "hash-object", str(sample)], capture_output=True, text=True,
                         check=True)
    assert git_blob_sha(sample.read_bytes()) == out.stdout.strip()
    assert git_blob_sha(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_parse_tree_reads_entries_and_truncation():
    body = json.dumps({"sha": "abc", "url": "u", "truncated": True, "tree": [
        {"path": "a.md", "mode": "100644", "type": "blob", "sha": "1" * 40, "size": 3},
        {"path": "d", "mode": "040000", "type": "tree", "sha": "2" * 40},
        {"path": "broken"},
        "junk",
    ]}).encode()
    tree = parse_tree(body)
    assert tree.truncated is True
    assert [e.path for e in tree.entries] == ["a.md", "d"]
    assert [e.path for e in tree.blobs()] == ["a.md"]
    assert tree.entries[0].size == 3 and tree.entries[1].size is None


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "empty_body"),
    (b"<html>rate limited</html>", "html_instead_of_json"),
    (b'{"message": "Not Found"}', "wrong_shape"),
    (b"[]", "wrong_shape"),
    (b'{"sha": "x", "tree": [', "truncated_json"),
])
def test_parse_tree_rejects_bad_bodies(body, reason):
    with pytest.raises(BadResponse) as exc:
        parse_tree(body)
    assert exc.value.reason == reason


def test_mock_tree_lists_git_blob_shas_and_dirs(mockhub):
    status, headers, body = get(f"{mockhub.url}/repos/pytorch/hub/git/trees/master?recursive=1")
    assert status == 200
    tree = parse_tree(body)
    blobs = {e.path: e for e in tree.blobs()}
    sample = PYTORCH_HUB / "ultralytics_yolov5.md"
    assert blobs["ultralytics_yolov5.md"].sha == git_blob_sha(sample.read_bytes())
    assert blobs["ultralytics_yolov5.md"].size == sample.stat().st_size
    assert "docs/template.md" in blobs
    assert {"docs", "images"} <= {e.path for e in tree.entries if e.type == "tree"}
    assert headers["X-RateLimit-Limit"] == "60"
    assert int(headers["X-RateLimit-Remaining"]) == 59
    assert int(headers["X-RateLimit-Reset"]) > 0
    # Without recursive=1 only the top level is listed, as GitHub does.
    _, _, body = get(f"{mockhub.url}/repos/pytorch/hub/git/trees/master")
    assert "docs/template.md" not in {e.path for e in parse_tree(body).entries}


def test_mock_tree_404_raw_404_and_quota(mockhub):
    status, _, body = get(f"{mockhub.url}/repos/pytorch/hub/git/trees/no-such-ref")
    assert status == 404 and json.loads(body)["message"] == "Not Found"
    status, _, body = get(f"{mockhub.url}/raw/pytorch/hub/master/missing.md")
    assert (status, body) == (404, b"404: Not Found")
    ssd = "nvidia_deeplearningexamples_ssd.md"
    status, _, body = get(f"{mockhub.url}/raw/pytorch/hub/master/{ssd}")
    assert status == 200 and b"\r\n" in body
    mockhub.github.used["anonymous"] = 60
    status, headers, body = get(f"{mockhub.url}/repos/pytorch/hub/git/trees/master")
    assert status == 403 and headers["X-RateLimit-Remaining"] == "0"
    assert "rate limit exceeded" in json.loads(body)["message"]
    status, headers, _ = get(f"{mockhub.url}/repos/pytorch/hub/git/trees/master",
                             {"Authorization": "Bearer t"})
    assert status == 200 and headers["X-RateLimit-Limit"] == "5000"


def test_mock_serves_changed_and_deleted_files(mockhub):
    mockhub.github.put("pytorch", "hub", "master", "new_model.md", "---\ntitle: New\n---\n")
    mockhub.github.delete("pytorch", "hub", "master", "README.md")
    _, _, body = get(f"{mockhub.url}/repos/pytorch/hub/git/trees/master?recursive=1")
    paths = {e.path: e.sha for e in parse_tree(body).entries}
    assert paths["new_model.md"] == git_blob_sha(b"---\ntitle: New\n---\n")
    assert "README.md" not in paths
    assert get(f"{mockhub.url}/raw/pytorch/hub/master/README.md")[0] == 404


def test_token_goes_to_the_api_origin_only(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    crawler = get_crawler(settings_dict={
        "HF_ENDPOINT": "https://huggingface.co", "KAGGLE_API_URL": "https://www.kaggle.com/api/v1",
        "GITHUB_API_URL": "https://api.github.com",
        "GITHUB_RAW_URL": "https://raw.githubusercontent.com"})
    mw = HubAuthMiddleware.from_crawler(crawler)
    api = Request("https://api.github.com/repos/pytorch/hub/git/trees/master?recursive=1")
    raw = Request("https://raw.githubusercontent.com/pytorch/hub/master/README.md",
                  headers={"Authorization": "Bearer ghp_secret"})
    mw.process_request(api)
    mw.process_request(raw)
    assert api.headers["Authorization"] == b"Bearer ghp_secret"
    assert b"Authorization" not in raw.headers


@pytest.mark.crawl
def test_crawl_sends_token_to_api_but_not_to_raw_host(mockhub, tmp_path):
    # The raw host is another origin (localhost vs 127.0.0.1), as on github.com.
    raw = mockhub.url.replace("127.0.0.1", "localhost") + "/raw"
    env = hub_env(mockhub, GITHUB_TOKEN="ghp_secret_for_test", GITHUB_RAW_URL=raw)
    result = run_crawl("pytorch_hub", mockhub, tmp_path, env=env)
    trees = mockhub.requests("/repos/")
    raws = mockhub.requests("/raw/")
    assert len(trees) == 1 and raws
    assert trees[0].headers.get("authorization") == "Bearer ghp_secret_for_test"
    assert all("authorization" not in r.headers for r in raws)
    assert "ghp_secret_for_test" not in result.stderr
    assert crawl_stats(result)["ptm/valid/models"] == 5


def test_scrapy_list_shows_the_catalogue_spiders():
    out = subprocess.run([sys.executable, "-m", "scrapy", "list"], cwd=Path(__file__).parent.parent,
                         capture_output=True, text=True, check=True).stdout.split()
    assert {"pytorch_hub", "onnx_zoo", "tfhub", "modelhub"} <= set(out)
    assert "github_catalogue" not in out
