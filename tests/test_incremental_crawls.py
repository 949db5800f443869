"""A sequence of hf_models crawls against a mock Hub whose catalogue changes between runs.

Every step checks the requests the mock received, the crawl record's counts, the change records
of that crawl and which models carry ``removed_at``. The same steps run on SQLite (one
``scrapy crawl`` subprocess per step) and on MongoDB semantics (mongomock does not outlive a
process, so ``python -m tests.test_incremental_crawls URI`` runs all steps in one reactor with
``CrawlerRunner`` and prints each step's result as a JSON line).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ptmspiders.stores import Store, open_store
from tests.conftest import ROOT, run_crawl
from tests.mockhub import MockHub

pytestmark = pytest.mark.crawl

PAGE_SIZE = 10  # 25 fixture models: three list pages
LIST_PAGES = 3
NEW_SHA = "f" * 40
HF = "huggingface:"


def _model(hub: MockHub, repo_id: str) -> dict[str, Any]:
    found = hub.hf.by_id(repo_id)  # type: ignore[attr-defined]
    assert found is not None, repo_id
    return found


def _remove(hub: MockHub, repo_id: str) -> dict[str, Any]:
    model = _model(hub, repo_id)
    hub.hf.models.remove(model)  # type: ignore[attr-defined]
    return model


def unchanged_hub(hub: MockHub) -> None:
    return None


def change_catalogue(hub: MockHub) -> None:
    """One new, two changed (one with a new sha), one removed, one renamed model."""
    bert = _model(hub, "acme-ai/bert-base-cased")
    bert.update(sha=NEW_SHA, downloads=6000000, tags=[*bert["tags"], "new-tag"])
    keras = _model(hub, "jdoe/keras-mnist")
    keras["likes"] += 1
    hub._removed = _remove(hub, "msmith/fasttext-langid")  # type: ignore[attr-defined]
    yolo = _model(hub, "vision-works/yolo-det-s")
    yolo.update(id="vision-works/yolo-det-small", modelId="vision-works/yolo-det-small")
    hub.hf.renames["vision-works/yolo-det-s"] = "vision-works/yolo-det-small"  # type: ignore
    fresh = copy.deepcopy(_model(hub, "jdoe/sentiment-distilbert"))
    fresh.update(_id="0123456789abcdef01234567", id="newco/fresh-model", author="newco",
                 modelId="newco/fresh-model", sha="1" * 40, downloads=3, likes=0)
    hub.hf.models.append(fresh)  # type: ignore[attr-defined]


def drop_one_jdoe_model(hub: MockHub) -> None:
    _remove(hub, "jdoe/tiny-random-gpt")


def readd_removed(hub: MockHub) -> None:
    hub.hf.models.append(hub._removed)  # type: ignore[attr-defined]


@dataclass
class Step:
    name: str
    mutate: Callable[[MockHub], None]
    args: dict[str, str] = field(default_factory=dict)


STEPS = [
    Step("first", unchanged_hub),
    Step("unchanged", unchanged_hub),
    Step("changed", change_catalogue),
    Step("restricted", drop_one_jdoe_model, {"author": "jdoe"}),
    Step("full", readd_removed, {"full": "1"}),
]


def collect(store: Store, hub: MockHub) -> dict[str, Any]:
    crawl = next(store.query("crawls", {}, sort=[("started_at", -1)], limit=1))
    changes = list(store.query("changes", {"crawl_id": crawl["_id"]}))
    removed = {d["_id"]: d["removed_at"]
               for d in store.query("models", {}, fields=["removed_at"])}
    return {"requests": [r.path for r in hub.requests()], "crawl": crawl, "changes": changes,
            "removed": removed}


def by_kind(result: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for record in result["changes"]:
        out.setdefault(record["kind"], {})[record["model_id"]] = record
    return out


def check_step(name: str, result: dict[str, Any], history: list[dict[str, Any]]) -> None:
    crawl, counts, kinds = result["crawl"], result["crawl"]["counts"], by_kind(result)
    stats = crawl["stats"]
    list_requests = [p for p in result["requests"] if p == "/api/models"]
    assert crawl["finish_reason"] == "finished" and crawl["status"] == "done"
    removed_now = {i for i, at in result["removed"].items() if at}
    if name == "first":
        assert counts == {"new": 25, "changed": 0, "unchanged": 0, "renamed": 0,
                          "reappeared": 0, "missing": 0}
        # The hub's first crawl is the baseline: counted, no per-model "new" record.
        assert result["changes"] == [] and crawl["baseline"] is True
        assert crawl["complete"] is True and crawl["arguments"] == {}
        assert removed_now == set()
    elif name == "unchanged":
        assert crawl["baseline"] is False
        # Done-when: only the list requests (owners are stored, no model needs a refresh).
        assert result["requests"] == ["/api/models"] * LIST_PAGES
        assert counts["unchanged"] == 25 and counts["new"] == counts["changed"] == 0
        assert result["changes"] == []
        assert stats["ptm/incremental/refresh"] == 0
        assert stats["ptm/incremental/unchanged"] == 25
        # history compared the models in batches: at most one store lookup per list page
        assert 1 <= stats["ptm/history/lookups"] <= LIST_PAGES
    elif name == "changed":
        assert len(list_requests) == LIST_PAGES
        # The new owner (a user): one call, at the organisations' endpoint (owners=orgs).
        assert sorted(set(result["requests"]) - {"/api/models"}) == [
            "/api/organizations/newco/overview"]
        assert counts == {"new": 1, "changed": 2, "unchanged": 21, "renamed": 1,
                          "reappeared": 0, "missing": 1}
        assert stats["ptm/incremental/refresh"] == 3  # new sha, new id, renamed id
        assert set(kinds) == {"new", "changed", "renamed", "removed"}
        assert set(kinds["new"]) == {HF + "newco/fresh-model"}
        bert = kinds["changed"][HF + "acme-ai/bert-base-cased"]
        assert set(bert["fields"]) == {"latest_commit_sha", "downloads", "tags"}
        assert bert["values"]["latest_commit_sha"] == {
            "old": "48051f6d502c5448c9662319bec5780faadb2c45", "new": NEW_SHA}
        assert bert["values"]["downloads"] == {"old": 5234567, "new": 6000000}
        assert bert["lists"]["tags"] == {"added": ["new-tag"], "removed": []}
        keras = kinds["changed"][HF + "jdoe/keras-mnist"]
        assert keras["fields"] == ["likes"]
        assert keras["values"]["likes"]["new"] == keras["values"]["likes"]["old"] + 1
        renamed = kinds["renamed"][HF + "vision-works/yolo-det-small"]
        assert renamed["renamed_from"] == HF + "vision-works/yolo-det-s"
        assert renamed["values"]["hub_id"] == {"old": "vision-works/yolo-det-s",
                                               "new": "vision-works/yolo-det-small"}
        assert set(kinds["removed"]) == {HF + "msmith/fasttext-langid",
                                         HF + "vision-works/yolo-det-s"}
        assert kinds["removed"][HF + "vision-works/yolo-det-s"]["renamed_to"] == \
            HF + "vision-works/yolo-det-small"
        assert "renamed_to" not in kinds["removed"][HF + "msmith/fasttext-langid"]
        assert kinds["removed"][HF + "msmith/fasttext-langid"]["values"]["removed_at"]["new"] \
            == crawl["finished_at"]
        assert removed_now == {HF + "msmith/fasttext-langid", HF + "vision-works/yolo-det-s"}
        assert HF + "newco/fresh-model" in result["removed"]
    elif name == "restricted":
        assert result["requests"] == ["/api/models"]
        assert crawl["restricted"] is True and crawl["complete"] is False
        assert crawl["arguments"] == {"author": "jdoe"}
        assert counts["missing"] == 0 and counts["unchanged"] == 2
        assert result["changes"] == []
        # not listed any more, but a restricted crawl cannot tell: no removed_at
        assert result["removed"][HF + "jdoe/tiny-random-gpt"] is None
    elif name == "full":
        assert len(list_requests) == LIST_PAGES
        assert crawl["complete"] is True and crawl["arguments"] == {"full": True}
        assert stats["ptm/incremental/refresh"] == 25
        assert counts == {"new": 0, "changed": 0, "unchanged": 24, "renamed": 0,
                          "reappeared": 1, "missing": 1}
        back = kinds["reappeared"][HF + "msmith/fasttext-langid"]
        assert back["values"]["removed_at"]["old"] == history[2]["crawl"]["finished_at"]
        assert back["values"]["removed_at"]["new"] is None
        assert set(kinds["removed"]) == {HF + "jdoe/tiny-random-gpt"}
        assert removed_now == {HF + "jdoe/tiny-random-gpt", HF + "vision-works/yolo-det-s"}
        # never deleted
        assert len(result["removed"]) == 27


def crawl_args(step: Step) -> list[str]:
    out = ["-s", f"PTM_HF_PAGE_SIZE={PAGE_SIZE}"]
    for key, value in step.args.items():
        out += ["-a", f"{key}={value}"]
    return out


def test_crawl_sequence_on_sqlite(mockhub: MockHub, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    results: list[dict[str, Any]] = []
    for step in STEPS:
        step.mutate(mockhub)
        mockhub.clear_log()
        run_crawl("hf_models", mockhub, tmp_path, *crawl_args(step), store_uri=uri)
        with open_store(uri) as store:
            results.append(collect(store, mockhub))
        check_step(step.name, results[-1], results)


def test_crawl_sequence_on_mongodb_semantics(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tests.test_incremental_crawls",
                           "mongomock://localhost/ptm_sequence"], cwd=ROOT, env=hub_env_plain(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(STEPS), proc.stderr[-4000:]
    for i, step in enumerate(STEPS):
        check_step(step.name, results[i], results[: i + 1])


def hub_env_plain() -> dict[str, str]:
    """No hub tokens: the script starts its own mock Hub and points the settings at it."""
    return {k: v for k, v in os.environ.items()
            if k not in ("HF_TOKEN", "GITHUB_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")}


def _run_sequence(uri: str) -> None:
    """All steps in one process and one reactor, the mock Hub in a thread (for mongomock)."""
    from scrapy.utils.reactor import install_reactor

    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    import mongomock
    from scrapy.crawler import CrawlerRunner
    from scrapy.utils.project import get_project_settings
    from twisted.internet import defer, reactor

    from ptmspiders.stores.mongo import MongoStore

    shared = mongomock.MongoClient()
    MongoStore._connect = staticmethod(lambda _uri: shared)  # type: ignore[method-assign]
    hub = MockHub().start()
    os.environ["HF_ENDPOINT"] = hub.url
    settings = get_project_settings()
    settings.set("HF_ENDPOINT", hub.url)
    settings.set("PTM_STORE_URI", uri)
    settings.set("PTM_HF_PAGE_SIZE", PAGE_SIZE)
    settings.set("LOG_LEVEL", "WARNING")
    runner = CrawlerRunner(settings)
    failures: list[Any] = []

    @defer.inlineCallbacks
    def crawl_all() -> Any:
        try:
            for step in STEPS:
                step.mutate(hub)
                hub.clear_log()
                yield runner.crawl("hf_models", **step.args)
                store = open_store(uri)
                print(json.dumps(collect(store, hub), default=str), flush=True)
        except Exception as exc:  # reported through the exit code
            failures.append(exc)
            raise
        finally:
            hub.stop()
            reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(crawl_all)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    _run_sequence(sys.argv[1])


def test_catalogue_files_skipped_by_blob_sha_count_as_seen(mockhub: MockHub,
                                                           tmp_path: Path) -> None:
    """A GitHub-backed hub notes unchanged catalogue files instead of re-emitting them: history
    counts those models as unchanged, never as missing."""
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    repo = ("pytorch", "hub", "master")
    alexnet = "pytorch_vision_alexnet.md"
    results = []
    for step in range(3):
        if step == 2:
            text = mockhub.github.read(*repo, alexnet).decode()  # type: ignore[attr-defined]
            mockhub.github.put(*repo, alexnet, text.replace(  # type: ignore[attr-defined]
                "achieved a top-5 error of 15.3%", "won ImageNet 2012"))
            mockhub.github.delete(*repo, "intelisl_midas_v2.md")  # type: ignore[attr-defined]
        run_crawl("pytorch_hub", mockhub, tmp_path, store_uri=uri)
        with open_store(uri) as store:
            results.append(collect(store, mockhub))
    first, second, third = (r["crawl"] for r in results)
    assert first["counts"]["new"] == 5 and first["complete"] is True
    assert second["counts"] == {"new": 0, "changed": 0, "unchanged": 5, "renamed": 0,
                                "reappeared": 0, "missing": 0}
    assert results[1]["changes"] == []
    assert third["counts"] == {"new": 0, "changed": 1, "unchanged": 3, "renamed": 0,
                               "reappeared": 0, "missing": 1}
    kinds = by_kind(results[2])
    alex = kinds["changed"]["pytorch_hub:pytorch_vision_alexnet"]
    assert alex["values"]["description"] == {
        "old": "The 2012 ImageNet winner achieved a top-5 error of 15.3%",
        "new": "The 2012 ImageNet winner won ImageNet 2012"}
    assert set(kinds["removed"]) == {"pytorch_hub:intelisl_midas_v2"}
    assert {i for i, at in results[2]["removed"].items() if at} == {
        "pytorch_hub:intelisl_midas_v2"}
