"""Enrichment of changed Hugging Face models: the step chain on canned responses, and whole
crawls against the mock Hub whose repositories are real git repositories."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scrapy import Request
from scrapy.http import HtmlResponse, TextResponse
from twisted.python.failure import Failure

from ptmspiders.config import SettingsError
from ptmspiders.hf_enrichment import enricher
from ptmspiders.items import CommitItem, ModelItem, field_names, to_doc
from ptmspiders.parsers import huggingface as hf
from ptmspiders.pipelines.validate import load_schema, schema_error
from ptmspiders.spiders.hf_models import HfModelsSpider
from ptmspiders.stores import open_store
from tests.conftest import FIXTURES, crawl_stats, hub_env, ptm_crawler, run_crawl
from tests.gnupg_daemons import gnupg_daemons
from tests.mockhub import MockHub
from tests.mockhub.server import MockRequest, MockResponse
from tests.test_safe_yaml import laughs

ENDPOINT = "http://hub.test"
ALL_ON = {"PTM_HF_CARDS": True, "PTM_HF_FILES": True, "PTM_HF_COMMITS": True,
          "HF_ENDPOINT": ENDPOINT}


def spider(**settings: Any) -> HfModelsSpider:
    crawler = ptm_crawler(HfModelsSpider, {**ALL_ON, **settings})
    crawler.stats.open_spider()  # type: ignore[union-attr]
    return crawler._create_spider()


def model(**kw: Any) -> ModelItem:
    entry = {"id": "acme-ai/demo", "sha": "a" * 40, "siblings": [
        {"rfilename": "README.md"}, {"rfilename": "pytorch_model.bin"}], **kw}
    return hf.parse_model(entry, endpoint=ENDPOINT, source_url=None, seen_at="2026-01-01T00:00:00Z")


def respond(request: Request, body: bytes | str, status: int = 200,
            headers: dict[str, str] | None = None) -> list[Any]:
    cls = HtmlResponse if "/commits/" in request.url and "/api/" not in request.url \
        else TextResponse
    response = cls(request.url, status=status, body=body if isinstance(body, bytes)
                   else body.encode(), headers=headers, request=request, encoding="utf-8")
    assert request.callback is not None
    return list(request.callback(response, **request.cb_kwargs))


def fail(request: Request) -> list[Any]:
    failure = Failure(ConnectionRefusedError("refused"))
    failure.request = request  # type: ignore[attr-defined]
    assert request.errback is not None
    return list(request.errback(failure))


def test_commit_item_matches_its_schema() -> None:
    assert set(field_names(CommitItem)) == set(load_schema("commit")["properties"])
    item = CommitItem(_id="huggingface:a/b@" + "c" * 40, hub="huggingface", model="huggingface:a/b",
                      sha="c" * 40, signature="good", signed=True, signature_method="git",
                      crawl={"first_seen": "x", "last_seen": "x", "source_url": None})
    assert schema_error("commit", to_doc(item)) is None
    assert schema_error("commit", {**to_doc(item), "signature": "maybe"}) == "invalid_signature"


def test_chain_card_tree_commits_api_then_item() -> None:
    s = spider(PTM_HF_SIGNATURE_METHOD="api", PTM_HF_COMMITS_MAX=3)
    (req,) = enricher(s).start(model())
    assert req.url == f"{ENDPOINT}/acme-ai/demo/resolve/{'a' * 40}/README.md"
    (req,) = respond(req, "---\nlicense: mit\nmodel-index: [{name: x}]\n---\n# Demo\n")
    assert "/api/models/acme-ai/demo/tree/" in req.url and "expand=true" in req.url
    # two tree pages joined through the Link header
    (req,) = respond(req, '[{"type": "file", "path": "README.md", "size": 10, "oid": "1"}]',
                     headers={"Link": f'<{ENDPOINT}/api/models/acme-ai/demo/tree/x?p=1>; '
                                      'rel="next"'})
    (req,) = respond(req, '[{"type": "file", "path": "pytorch_model.bin", "size": 1, "oid": "2",'
                          ' "lfs": {"oid": "ff", "size": 99, "pointerSize": 1}}]')
    assert req.url == f"{ENDPOINT}/api/models/acme-ai/demo/commits/{'a' * 40}"
    page = ",".join(f'{{"id": "{c * 40}", "title": "t{c}", "date": "2024-01-0{i + 1}T00:00:00Z",'
                    f' "authors": [{{"user": "u"}}]}}' for i, c in enumerate("bc"))
    (req,) = respond(req, f"[{page}]", headers={"Link": f"<{ENDPOINT}/next?p=1>; rel=\"next\""})
    assert req.url == f"{ENDPOINT}/next?p=1"
    page = ",".join(f'{{"id": "{c * 40}", "title": "t{c}"}}' for c in "def")
    out = respond(req, f"[{page}]", headers={"Link": f"<{ENDPOINT}/next?p=2>; rel=\"next\""})
    *commits, item = out  # the max of 3 ends the paging
    assert [c.sha[0] for c in commits] == ["b", "c", "d"]
    assert {(c.signature, c.signed, c.signature_method) for c in commits} == {
        ("unknown", None, "api")}
    assert commits[0]._id == "huggingface:acme-ai/demo@" + "b" * 40
    assert item.card["present"] is True and item.card["has_model_index"] is True
    assert item.card["states_license"] is True
    assert item.files == [{"path": "README.md", "size": 10, "sha256": None, "lfs": False},
                          {"path": "pytorch_model.bin", "size": 99, "sha256": "ff", "lfs": True}]
    assert item.risk["pickle_only"] is True
    assert item.enrichment == {"sha": "a" * 40, "steps": ["card", "files", "commits"], "gaps": {}}
    assert schema_error("model", to_doc(item)) is None
    stats = s.crawler.stats.get_stats()  # type: ignore[union-attr]
    assert stats["ptm/enrich/card/ok"] == stats["ptm/enrich/files/ok"] == 1


def test_card_with_billion_laughs_front_matter_is_kept_without_it_and_counted() -> None:
    s = spider(PTM_HF_FILES=False, PTM_HF_COMMITS=False)
    (req,) = enricher(s).start(model())
    (item,) = respond(req, f"---\n{laughs()}---\n# Demo\n## License\nMIT\n")
    assert item.card["front_matter_error"].startswith("yaml_expands: ")
    assert item.card["sections"] == ["Demo", "License"] and item.card["states_license"] is True
    assert item.enrichment["steps"] == ["card"]
    assert schema_error("model", to_doc(item)) is None
    stats = s.crawler.stats.get_stats()  # type: ignore[union-attr]
    assert stats["ptm/enrich/card/front_matter/yaml_expands"] == 1
    assert stats["ptm/enrich/card/ok"] == 1


def test_json_steps_expect_lists_and_each_page_has_its_own_retry_budget() -> None:
    s = spider(PTM_HF_SIGNATURE_METHOD="api", PTM_HF_CARDS=False)
    (req,) = enricher(s).start(model())
    assert req.meta["ptm_expect"] == "list" and req.dont_filter  # the item rides along
    req.meta.update(retry_times=3, download_slot="x")  # as after three retries
    (nxt,) = respond(req, "[]", headers={"Link": f"<{ENDPOINT}/api/x?p=1>; rel=\"next\""})
    assert nxt.url == f"{ENDPOINT}/api/x?p=1" and nxt.dont_filter
    assert nxt.meta == {"handle_httpstatus_list": [401, 403, 404],
                        "ptm_enrich_step": "files", "ptm_expect": "list"}
    (commits,) = respond(nxt, "[]")
    assert "/commits/" in commits.url and commits.meta["ptm_expect"] == "list"


def test_failures_leave_gaps_and_still_yield_the_item() -> None:
    s = spider(PTM_HF_SIGNATURE_METHOD="html")
    (req,) = enricher(s).start(model(gated="manual"))
    (req,) = respond(req, "Access to model acme-ai/demo is restricted", status=401)
    (req,) = respond(req, "<html>busy</html>")  # the tree answered HTML: a gap
    assert req.url == f"{ENDPOINT}/acme-ai/demo/commits/{'a' * 40}"
    (item,) = fail(req)
    assert item.enrichment["gaps"] == {"card": "http_401", "files": "html_instead_of_json",
                                       "commits": "request_failed"}
    assert item.enrichment["steps"] == ["card"]  # a 401 lasts; the others are retried
    assert enricher(s).lacks(to_doc(item)) is True
    assert enricher(s).lacks({**to_doc(item), "enrichment": {"steps": ["card", "files",
                                                                        "commits"]}}) is False
    assert enricher(s).lacks({"latest_commit_sha": "x", "enrichment": None}) is True
    assert item.card["present"] is True  # what the list said stays
    assert item.risk["weight_formats"] == ["pickle"]  # from the list's file names
    stats = s.crawler.stats.get_stats()  # type: ignore[union-attr]
    assert stats["ptm/enrich/files/failed/html_instead_of_json"] == 1


def test_no_readme_costs_no_request_and_html_badges() -> None:
    s = spider(PTM_HF_FILES=False, PTM_HF_SIGNATURE_METHOD="html")
    item = model(siblings=[{"rfilename": "model.safetensors"}])
    (req,) = enricher(s).start(item)
    assert "/commits/" in req.url  # no README request: the file list has none
    html = ('<article><a href="/acme-ai/demo/commit/' + "1" * 40 + '">Good one</a>'
            '<span>Verified</span><time datetime="2024-05-01T10:00:00Z"></time></article>'
            '<article><a href="/acme-ai/demo/commit/' + "2" * 40 + '">Plain</a></article>')
    *commits, item = respond(req, html)
    assert [(c.title, c.signature, c.signed) for c in commits] == [
        ("Good one", "good", True), ("Plain", "unsigned", False)]
    assert commits[0].date == "2024-05-01T10:00:00Z"
    assert item.card["present"] is False and item.card["sections"] == []


def run_async(request: Request, response: TextResponse) -> list[Any]:
    """An async callback's output (the git step awaits its clone)."""
    import asyncio

    async def collect() -> list[Any]:
        assert request.callback is not None
        return [out async for out in request.callback(response, **request.cb_kwargs)]

    return asyncio.run(collect())


def redirect(request: Request, location: str) -> TextResponse:
    return TextResponse(request.url, status=302, headers={"Location": location},
                        request=request)


def test_git_probe_follows_the_hub_but_refuses_other_origins() -> None:
    s = spider(PTM_HF_CARDS=False, PTM_HF_FILES=False)
    (probe,) = enricher(s).start(model())
    assert probe.url == f"{ENDPOINT}/acme-ai/demo.git/info/refs?service=git-upload-pack"
    assert probe.meta["dont_redirect"] and 302 in probe.meta["handle_httpstatus_list"]
    # a repository renamed on the hub: the probe goes on there, still answering redirects
    (moved,) = run_async(probe, redirect(probe, "/acme-ai/demo-v2.git/info/refs"
                                                "?service=git-upload-pack"))
    assert moved.url == f"{ENDPOINT}/acme-ai/demo-v2.git/info/refs?service=git-upload-pack"
    assert moved.meta["dont_redirect"] and moved.meta["ptm_git_redirects"] == 1
    (item,) = run_async(moved, redirect(moved, "http://127.0.0.2:9/acme-ai/demo.git/info/refs"
                                               "?service=git-upload-pack"))
    assert item.enrichment["gaps"] == {"commits": "redirect_cross_origin"}
    assert item.enrichment["steps"] == []  # retried next crawl
    for bad in ("http://127.0.0.2:x/", "http://[::1"):  # no crash on a broken Location
        (probe,) = enricher(s).start(model())
        (item,) = run_async(probe, redirect(probe, bad))
        assert item.enrichment["gaps"] == {"commits": "redirect_cross_origin"}
    for elsewhere in ("/login", ""):  # not a repository, or nowhere
        (probe,) = enricher(s).start(model())
        (item,) = run_async(probe, redirect(probe, elsewhere))
        assert item.enrichment["gaps"] == {"commits": "redirect_refused"}
    stats = s.crawler.stats.get_stats()  # type: ignore[union-attr]
    assert stats["ptm/enrich/commits/failed/redirect_cross_origin"] == 3


def test_a_bad_method_setting_fails_at_start() -> None:
    with pytest.raises(SettingsError,
                       match=r"^PTM_HF_SIGNATURE_METHOD='ssh': expected one of git, html, api"):
        spider(PTM_HF_SIGNATURE_METHOD="ssh")


def test_all_switches_off_yields_the_item_alone() -> None:
    s = spider(PTM_HF_CARDS=False, PTM_HF_FILES=False, PTM_HF_COMMITS=False)
    item = model()
    assert list(enricher(s).start(item)) == [item]
    assert item.enrichment is None


# Whole crawls ------------------------------------------------------------------------------
needs_git = pytest.mark.skipif(not (shutil.which("git") and shutil.which("gpg")),
                               reason="needs git and gpg")


def verify_commit(git_dir: Path, home: str, sha: str) -> str:
    done = subprocess.run(["git", "verify-commit", sha], cwd=git_dir, capture_output=True,
                          env={**os.environ, "GNUPGHOME": home, "LC_ALL": "C"})
    err = done.stderr.decode()
    if done.returncode == 0:
        return "good"
    if not err.strip():
        return "unsigned"
    return "unknown" if "Can't check signature" in err else "bad"


def enrich_args(method: str, gnupghome: str | None = None) -> list[str]:
    args = ["-s", "PTM_HF_CARDS=1", "-s", "PTM_HF_FILES=1", "-s", "PTM_HF_COMMITS=1",
            "-s", f"PTM_HF_SIGNATURE_METHOD={method}"]
    if gnupghome:
        args += ["-s", f"PTM_HF_GNUPGHOME={gnupghome}"]
    return args


@pytest.mark.crawl
@needs_git
def test_crawl_with_git_signatures(mockhub: MockHub, tmp_path: Path) -> None:
    repos = mockhub.hf_git  # type: ignore[attr-defined]
    keyring = repos._keyring()  # the mock's signing keyring is the crawler's verifier here
    clones = tmp_path / "tmp"
    clones.mkdir()
    result = run_crawl("hf_models", mockhub, tmp_path, *enrich_args("git", keyring),
                       "-a", "owners=0", env=hub_env(mockhub, TMPDIR=str(clones)))
    stats = crawl_stats(result)
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        models = {d["_id"]: d for d in store.find("models")}
        commits = list(store.find("commits"))
    assert len(models) == 25
    assert stats["ptm/enrich/commits/ok"] == 25 and "ptm/dropped" not in stats
    # every stored signature is what git verify-commit says in the served repository
    for c in commits:
        git_dir = repos.repos[c["model"].split(":", 1)[1]]
        assert c["signature"] == verify_commit(git_dir, keyring, c["sha"]), c
    by_model: dict[str, list[str]] = {}
    for c in commits:
        by_model.setdefault(c["model"], []).append(c["signature"])
    assert sorted(by_model["huggingface:acme-ai/bert-base-cased"]) == ["good", "good", "unsigned"]
    assert sorted(by_model["huggingface:pixel-forge/sd-turbo-mini"]) == ["bad", "good"]
    assert sorted(by_model["huggingface:jdoe/sentiment-distilbert"]) == ["unknown", "unsigned"]
    assert len(commits) == 20 * 1 + 3 + 2 + 2 + 2 + 2  # 5 planned histories, 20 of one commit
    bert = models["huggingface:acme-ai/bert-base-cased"]
    assert bert["card"]["states_limitations"] is True
    assert bert["card"]["front_matter_keys"] == ["language", "license", "datasets", "tags"]
    assert {f["path"]: f["lfs"] for f in bert["files"]}["model.safetensors"] is True
    yolo = models["huggingface:vision-works/yolo-det-s"]
    assert yolo["risk"]["unsafe_files"] == ["yolo-det-s.pt"] and yolo["risk"]["pickle_only"]
    tiny = models["huggingface:jdoe/tiny-random-gpt"]
    assert tiny["card"]["present"] is False  # no README.md listed: no request either
    assert not mockhub.requests("/jdoe/tiny-random-gpt/resolve")
    assert list(clones.iterdir()) == []  # every clone's temp dir was removed

    # An unchanged second crawl costs list calls only and keeps the enrichment stored.
    mockhub.clear_log()
    run_crawl("hf_models", mockhub, tmp_path, *enrich_args("git", keyring), "-a", "owners=0")
    assert {r.path for r in mockhub.requests()} == {"/api/models"}
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        again = store.get("models", "huggingface:acme-ai/bert-base-cased")
        assert store.count("commits") == len(commits)
    assert again is not None and again["card"] == bert["card"] and again["risk"] == bert["risk"]


@pytest.mark.crawl
@needs_git
@pytest.mark.parametrize("method", ["api", "html"])
def test_crawl_with_api_and_html_methods(mockhub: MockHub, tmp_path: Path, method: str) -> None:
    mockhub.hf_git.commits_page_size = 2  # type: ignore[attr-defined]
    run_crawl("hf_models", mockhub, tmp_path, *enrich_args(method), "-a", "author=acme-ai",
              "-a", "owners=0")
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        commits = {c["title"]: c for c in store.find(
            "commits", {"model": "huggingface:acme-ai/bert-base-cased"})}
    assert set(commits) == {"initial commit", "Add safetensors weights", "Update README.md"}
    statuses = {t: c["signature"] for t, c in commits.items()}
    if method == "api":
        assert set(statuses.values()) == {"unknown"}
    else:  # the mock's page marks signatures its own keyring verifies
        assert statuses == {"initial commit": "good", "Add safetensors weights": "good",
                            "Update README.md": "unsigned"}
    assert all(c["signature_method"] == method for c in commits.values())


def test_fixture_plan_names_existing_models() -> None:
    import json

    plan = json.loads((FIXTURES / "huggingface" / "commits.json").read_text())
    ids = {m["id"] for m in json.loads((FIXTURES / "huggingface" / "models.json").read_text())}
    assert set(plan["repos"]) <= ids


@pytest.mark.crawl
def test_switching_enrichment_on_later_enriches_unchanged_models(mockhub: MockHub,
                                                                 tmp_path: Path) -> None:
    run_crawl("hf_models", mockhub, tmp_path, "-a", "author=acme-ai", "-a", "owners=0")
    assert {r.path for r in mockhub.requests()} == {"/api/models"}  # a plain sweep
    mockhub.clear_log()
    run_crawl("hf_models", mockhub, tmp_path, *enrich_args("api"), "-a", "author=acme-ai",
              "-a", "owners=0")
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        docs = list(store.find("models"))
        assert store.count("commits") > 3
    assert len(docs) == 3
    assert all(d["enrichment"]["steps"] == ["card", "files", "commits"] for d in docs)
    mockhub.clear_log()  # a third crawl: same shas, enrichment done: list calls only
    run_crawl("hf_models", mockhub, tmp_path, *enrich_args("api"), "-a", "author=acme-ai",
              "-a", "owners=0")
    assert {r.path for r in mockhub.requests()} == {"/api/models"}


TOKEN = "hf_gitsafe_token_0123456789"


@pytest.mark.crawl
@needs_git
@pytest.mark.parametrize("hop", ["probe", "git info/refs", "git-upload-pack"])
def test_git_redirect_to_a_foreign_host_is_a_gap_and_keeps_the_token(
        mockhub: MockHub, tmp_path: Path, hop: str) -> None:
    """The hub redirects one model's git endpoints (the probe and git's own GET, git's GET
    alone, or the POST) and its README to a foreign host serving another history: the token
    stays on the hub, that model's commits are a gap, the crawl goes on."""
    victim = "acme-ai/bert-base-cased"
    foreign_repo = tmp_path / "foreign"
    subprocess.run(["git", "init", "-q", "-b", "main", str(foreign_repo)], check=True)
    subprocess.run(["git", "-c", "user.name=x", "-c", "user.email=x@foreign.invalid", "commit",
                    "-q", "--allow-empty", "-m", "foreign history"], cwd=foreign_repo,
                   check=True)
    with MockHub(host="127.0.0.2") as foreign:
        foreign.hf_git.add_repo(victim, foreign_repo / ".git")  # type: ignore[attr-defined]

        def away(hub: MockHub, req: MockRequest) -> MockResponse | None:
            git_agent = req.headers.get("user-agent", "").startswith("git/")
            if not req.path.startswith(f"/{victim}"):
                return None
            if req.path.endswith("/README.md") or (
                    req.path.endswith(".git/info/refs") and (hop == "probe" or (
                        hop == "git info/refs" and git_agent))) or (
                    req.path.endswith(".git/git-upload-pack") and hop == "git-upload-pack"):
                return MockResponse(status=302, headers=[("Location",
                                                          foreign.url + req.raw_target)])
            return None

        mockhub.before.append(away)
        home, tmp = tmp_path / "home", tmp_path / "tmp"
        home.mkdir()
        tmp.mkdir()
        result = run_crawl("hf_models", mockhub, tmp_path, *enrich_args("git"),
                           "-a", "author=acme-ai", "-a", "owners=0",
                           env=hub_env(mockhub, HF_TOKEN=TOKEN, HOME=str(home), TMPDIR=str(tmp)))
        leaked = [(r.method, r.path) for r in foreign.log
                  if any(TOKEN in v for v in r.headers.values()) or TOKEN in r.raw_target
                  or TOKEN.encode() in r.body]
        assert foreign.requests(f"/{victim}/resolve")  # the README went there, without it
        assert not foreign.requests(f"/{victim}.git/git-upload-pack")
    assert leaked == []
    assert TOKEN not in result.stderr
    hub_git = mockhub.requests(f"/{victim}.git/info/refs")
    assert hub_git and all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in hub_git)
    stats = crawl_stats(result)
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        models = {d["_id"]: d for d in store.find("models")}
        commits = list(store.find("commits"))
    assert len(models) == 3 and stats["ptm/enrich/commits/ok"] == 2
    gaps = models[f"huggingface:{victim}"]["enrichment"]["gaps"]
    assert gaps["commits"] == {"probe": "redirect_cross_origin", "git info/refs": "git_redirect",
                               "git-upload-pack": "git_clone"}[hop]
    assert not [c for c in commits if c["model"] == f"huggingface:{victim}"]
    assert "foreign history" not in {c["title"] for c in commits}
    # the throwaway keyring is gone, its daemons too; the user's ~/.gnupg was never made
    assert list(tmp.iterdir()) == [] and gnupg_daemons(tmp) == {}
    assert not (home / ".gnupg").exists()
