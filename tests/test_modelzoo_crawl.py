"""modelzoo: whole crawls against the mock hub, with and without the Chromium fallback."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ptmspiders.config import default
from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.stores import open_store
from tests.conftest import crawl_stats, run_crawl

PTM_CHROMIUM_PATH = default("PTM_CHROMIUM_PATH")

FIXTURES = Path(__file__).parent / "fixtures" / "modelzoo"
MODELS = json.loads((FIXTURES / "models.json").read_text())
SLUGS = {m["slug"] for m in MODELS}
FAST_RETRY = ("-s", "PTM_RETRY_TIMES=1", "-s", "PTM_RETRY_BACKOFF_BASE=0.01")

needs_chromium = pytest.mark.skipif(
    shutil.which(PTM_CHROMIUM_PATH) is None,
    reason=f"Chromium is absent at {PTM_CHROMIUM_PATH} (apt-get install -y chromium)")


def stored(tmp_path: Path) -> dict[str, dict]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return {d["hub_id"]: d for d in store.find("models", {"hub": "modelzoo"})}


def test_mock_api_wants_the_site_headers(mockhub):
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{mockhub.url}/api/models/0/")
    exc.value.close()
    assert exc.value.code == 403
    request = urllib.request.Request(f"{mockhub.url}/api/categories/", headers={
        "Accept": "application/json", "Referer": f"{mockhub.url}/"})
    with urllib.request.urlopen(request) as response:
        categories = json.loads(response.read())["categories"]
    assert categories[0]["slug"] == "computer-vision"


@pytest.mark.crawl
def test_whole_crawl_by_api_and_rerun(mockhub, tmp_path):
    result = run_crawl("modelzoo", mockhub, tmp_path)
    stats = crawl_stats(result)
    docs = stored(tmp_path)
    assert set(docs) == SLUGS
    for slug, doc in docs.items():
        assert doc["_id"] == f"modelzoo:{slug}"
        assert schema_error("model", doc) is None
        assert doc["extra"]["detail_source"] == "api"
    api_calls = mockhub.requests("/api/")
    assert len(api_calls) == 1 + len(SLUGS)
    assert all(r.headers["referer"] == f"{mockhub.url}/" and
               "application/json" in r.headers["accept"] for r in api_calls)
    assert mockhub.requests("/model/") == []  # no browser needed
    assert stats["ptm/valid/models"] == len(SLUGS)
    assert "playwright/browser_count" not in stats
    assert docs["bert-tensorflow"]["papers"] == ["arxiv:1810.04805", "doi:10.18653/v1/n19-1423"]
    assert docs["mask-r-cnn-keras"]["likes"] == 24610

    run_crawl("modelzoo", mockhub, tmp_path)
    assert set(stored(tmp_path)) == SLUGS


@pytest.mark.crawl
@pytest.mark.browser
@needs_chromium
def test_refused_details_come_from_the_rendered_page(mockhub, tmp_path):
    mockhub.modelzoo.refuse = {"bert-tensorflow"}
    mockhub.modelzoo.html_detail = {"u-net-caffe"}
    mockhub.modelzoo.fail_detail = {"wavenet-mxnet"}
    result = run_crawl("modelzoo", mockhub, tmp_path, *FAST_RETRY)
    stats = crawl_stats(result)
    docs = stored(tmp_path)
    assert set(docs) == SLUGS
    by_source = {s: doc["extra"]["detail_source"] for s, doc in docs.items()}
    browser = {"bert-tensorflow", "u-net-caffe", "wavenet-mxnet"}
    assert {s for s, src in by_source.items() if src == "browser"} == browser
    assert {s for s, src in by_source.items() if src == "api"} == SLUGS - browser
    assert stats["playwright/browser_count"] == 1
    assert stats["ptm/browser/rendered"] == 3
    assert stats["ptm/api_refused/403"] == 1 and stats["ptm/api_refused/503"] == 1
    assert stats["ptm/bad_response/html_instead_of_json"] == 1
    bert = docs["bert-tensorflow"]
    assert bert["extra"]["browser_reason"] == "api_403"
    assert bert["papers"] == ["arxiv:1810.04805", "doi:10.18653/v1/n19-1423"]
    assert bert["description"].startswith("<h2>BERT</h2>")
    assert bert["likes"] == 36220 and bert["github_repos"] == ["google-research/bert"]
    assert "étude" in docs["u-net-caffe"]["description"]
    assert {r.path for r in mockhub.requests("/model/")} == {f"/model/{s}" for s in browser}


@pytest.mark.crawl
@pytest.mark.browser
@needs_chromium
def test_render_always_skips_the_api(mockhub, tmp_path):
    run_crawl("modelzoo", mockhub, tmp_path, "-a", "slugs=graph-attention-networks-jax",
              "-a", "render=always")
    assert mockhub.requests("/api/") == []
    doc = stored(tmp_path)["graph-attention-networks-jax"]
    assert doc["extra"]["detail_source"] == "browser"
    assert doc["github_repos"] == ["example-lab/gat-jax"]
    assert doc["tasks"] == ["graph", "self-supervised-learning"]


@pytest.mark.crawl
def test_without_chromium_refused_models_keep_their_list_facts(mockhub, tmp_path):
    mockhub.modelzoo.refuse = {"bert-tensorflow", "mask-r-cnn-keras"}
    result = run_crawl("modelzoo", mockhub, tmp_path, "-s",
                       "PTM_CHROMIUM_PATH=/nonexistent/chromium")
    stats = crawl_stats(result)
    assert "Chromium not found at /nonexistent/chromium" in result.stderr
    docs = stored(tmp_path)
    assert set(docs) == SLUGS
    mask = docs["mask-r-cnn-keras"]
    assert mask["extra"]["detail_source"] == "list"
    assert mask["extra"]["detail_error"] == "api_403"
    assert mask["likes"] == 24610 and mask["github_repos"] == ["matterport/mask_rcnn"]
    assert stats["ptm/browser/unavailable"] == 2
    assert "playwright/browser_count" not in stats
    assert mockhub.requests("/model/") == []


@pytest.mark.crawl
def test_malformed_and_duplicate_entries_are_counted(mockhub, tmp_path):
    mockhub.modelzoo.models += ["junk", {"title": "no slug"}, dict(MODELS[0])]
    result = run_crawl("modelzoo", mockhub, tmp_path, "-a", "render=never")
    stats = crawl_stats(result)
    assert set(stored(tmp_path)) == SLUGS
    assert stats["ptm/rejected/entry_not_object"] == 1
    assert stats["ptm/rejected/entry_without_slug"] == 1
    assert stats["ptm/duplicates"] == 1
    assert "Skipped a list entry of http://" in result.stderr


@pytest.mark.crawl
def test_broken_list_is_logged_and_marks_the_crawl_incomplete(mockhub, tmp_path):
    mockhub.modelzoo.broken_list = True
    result = run_crawl("modelzoo", mockhub, tmp_path, "-a", "render=never",
                       "-s", "PTM_RETRY_BACKOFF_BASE=0.01", expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    # Retried PTM_MODELZOO_API_RETRIES times, then the spider's own handling.
    assert len(mockhub.requests("/api/models/0/")) == 3
    assert stats["ptm/bad_response/truncated_json"] == 1
    assert stats["ptm/incomplete"] is True
    assert f"Unusable model list from {mockhub.url}/api/models/0/" in result.stderr
    assert stored(tmp_path) == {}


@pytest.mark.crawl
@pytest.mark.browser
@needs_chromium
def test_refused_list_comes_from_the_rendered_home_page(mockhub, tmp_path):
    mockhub.modelzoo.refuse_list = True
    mockhub.modelzoo.refuse = {"u-net-caffe"}
    result = run_crawl("modelzoo", mockhub, tmp_path)
    stats = crawl_stats(result)
    assert stats["ptm/list_refused/403"] == 1
    assert stats["ptm/browser/rendered_list"] == 1
    assert "ptm/incomplete" not in stats
    assert "model list taken from the rendered home page" in result.stderr
    docs = stored(tmp_path)
    assert set(docs) == SLUGS
    assert docs["u-net-caffe"]["extra"]["detail_source"] == "browser"
    assert docs["mask-r-cnn-keras"]["extra"]["detail_source"] == "api"
    assert docs["mask-r-cnn-keras"]["likes"] == 24610
    assert docs["mask-r-cnn-keras"]["extra"]["list_fingerprint"]


@pytest.mark.crawl
def test_unknown_slug_argument_stores_nothing(mockhub, tmp_path):
    result = run_crawl("modelzoo", mockhub, tmp_path, "-a", "slugs=no-such-model,bert-tensorflow")
    assert "modelzoo has no model 'no-such-model'" in result.stderr
    assert set(stored(tmp_path)) == {"bert-tensorflow"}


@pytest.mark.crawl
def test_a_slug_argument_without_a_usable_detail_stores_nothing(mockhub, tmp_path):
    # Before, a document of the slug alone was stored: a typo while the API refused became
    # a model.
    mockhub.modelzoo.refuse = {"bert-tensorflow"}
    result = run_crawl("modelzoo", mockhub, tmp_path, "-a", "slugs=bert-tensorflow",
                       "-s", "PTM_CHROMIUM_PATH=/nonexistent/chromium")
    assert "modelzoo: nothing stored for -a slugs=bert-tensorflow: its detail is unusable " \
           "(api_403)" in result.stderr
    assert crawl_stats(result)["ptm/skipped/slug_without_detail"] == 1
    assert stored(tmp_path) == {}


@pytest.mark.crawl
def test_a_browser_that_cannot_start_is_an_error_not_a_crash(mockhub, tmp_path):
    mockhub.modelzoo.refuse = {"bert-tensorflow", "mask-r-cnn-keras"}
    result = run_crawl("modelzoo", mockhub, tmp_path, "-s", "PTM_CHROMIUM_PATH=/bin/false")
    stats = crawl_stats(result)
    assert "in Chromium failed: BrowserType.launch" in result.stderr
    assert stats["ptm/browser/failed"] >= 1
    assert stats["ptm/browser/failed"] + stats.get("ptm/browser/unavailable", 0) == 2
    docs = stored(tmp_path)
    assert set(docs) == SLUGS
    assert docs["bert-tensorflow"]["extra"]["detail_source"] == "list"


def _crawler_settings(spidercls, **settings):
    """What a crawl of ``spidercls`` runs with: project settings, then the spider's own."""
    from scrapy.utils.project import get_project_settings

    s = get_project_settings()
    s.setdict(settings, priority="cmdline")
    spidercls.update_settings(s)
    return s


@needs_chromium
def test_playwright_is_this_spiders_handler_only():
    from ptmspiders.spiders.kaggle_models import KaggleModelsSpider
    from ptmspiders.spiders.modelzoo import CHROMIUM_ARGS, PLAYWRIGHT_HANDLER, ModelzooSpider

    s = _crawler_settings(ModelzooSpider, MODELZOO_URL="https://modelzoo.co",
                          PTM_CHROMIUM_PATH=PTM_CHROMIUM_PATH)
    handlers = s.getdict("DOWNLOAD_HANDLERS")
    assert handlers.get("https") == PLAYWRIGHT_HANDLER and handlers.get("http") != \
        PLAYWRIGHT_HANDLER
    launch = s.getdict("PLAYWRIGHT_LAUNCH_OPTIONS")
    assert launch["executable_path"] == PTM_CHROMIUM_PATH and launch["args"] == CHROMIUM_ARGS
    assert {"--headless", "--no-sandbox", "--disable-gpu"} <= set(launch["args"])
    other = _crawler_settings(KaggleModelsSpider)
    assert PLAYWRIGHT_HANDLER not in other.getdict("DOWNLOAD_HANDLERS").values()
    missing = _crawler_settings(ModelzooSpider, PTM_CHROMIUM_PATH="/nonexistent/chromium")
    assert PLAYWRIGHT_HANDLER not in missing.getdict("DOWNLOAD_HANDLERS").values()
    off = _crawler_settings(ModelzooSpider, PTM_MODELZOO_BROWSER=False)
    assert PLAYWRIGHT_HANDLER not in off.getdict("DOWNLOAD_HANDLERS").values()


@pytest.mark.crawl
@pytest.mark.browser
@needs_chromium
def test_a_page_that_never_renders_times_out_into_a_list_document(mockhub, tmp_path):
    mockhub.modelzoo.refuse = {"bert-tensorflow"}
    mockhub.modelzoo.broken_pages = {"bert-tensorflow"}
    result = run_crawl("modelzoo", mockhub, tmp_path, "-s", "PTM_MODELZOO_RENDER_TIMEOUT=1.5")
    stats = crawl_stats(result)
    assert stats["ptm/browser/failed"] == 1
    assert "Rendering http://" in result.stderr and "/model/bert-tensorflow in Chromium" \
        in result.stderr
    docs = stored(tmp_path)
    assert set(docs) == SLUGS
    assert docs["bert-tensorflow"]["extra"]["detail_source"] == "list"
    assert docs["bert-tensorflow"]["extra"]["detail_error"] == "browser_failed"
