"""The ``ptm`` command on both stores: same output, exit codes scripts can trust."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptmspiders import cli
from ptmspiders.stores import Store, open_store
from tests.conftest import ROOT
from tests.test_query import CASES, DOCS

CRAWLS = [
    {"_id": "c1", "spider": "hf_models", "hub": "huggingface", "started_at": "2026-01-01T00:00Z",
     "finished_at": "2026-01-01T00:10Z", "finish_reason": "finished", "complete": True,
     "counts": {"new": 5, "changed": 0, "unchanged": 0, "missing": 0}},
    {"_id": "c2", "spider": "hf_models", "hub": "huggingface", "started_at": "2026-02-01T00:00Z",
     "finished_at": "2026-02-01T00:10Z", "finish_reason": "finished", "complete": True,
     "counts": {"new": 0, "changed": 1, "unchanged": 3, "missing": 1}},
    {"_id": "c3", "spider": "tfhub", "hub": "tfhub", "started_at": "2026-01-15T00:00Z",
     "finished_at": None, "finish_reason": "shutdown", "complete": False, "counts": {}},
]
CHANGES = [
    {"_id": "c1|huggingface:o0/m2", "crawl_id": "c1", "model_id": "huggingface:o0/m2",
     "at": "2026-01-01T00:05Z", "kind": "new", "fields": [], "values": {}, "lists": {}},
    {"_id": "c2|huggingface:o0/m2", "crawl_id": "c2", "model_id": "huggingface:o0/m2",
     "at": "2026-02-01T00:05Z", "kind": "changed", "fields": ["downloads", "tags"],
     "values": {"downloads": {"old": 10, "new": 20}},
     "lists": {"tags": {"added": ["bert"], "removed": []}}},
    {"_id": "c2|huggingface:o1/m1", "crawl_id": "c2", "model_id": "huggingface:o1/m1",
     "at": "2026-02-01T00:09Z", "kind": "removed", "fields": ["removed_at"],
     "values": {"removed_at": {"old": None, "new": "2026-02-01T00:10Z"}}, "lists": {}},
]


class Kept:
    """The test's store, left open when ``ptm`` closes it."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *exc: object) -> None:
        return None


def fill(store: Store) -> Store:
    store.upsert("models", [dict(d) for d in DOCS])
    store.set_fields("models", ["huggingface:o1/m1"], {"removed_at": "2026-02-01T00:10Z"})
    store.upsert("owners", [{"_id": "huggingface:o0", "hub": "huggingface", "name": "o0",
                             "is_verified": True},
                            {"_id": "huggingface:o1", "hub": "huggingface", "name": "o1",
                             "type": "user", "is_verified": False,
                             "extra": {"overview": "skipped"}}])
    store.upsert("crawls", [dict(c) for c in CRAWLS])
    store.upsert("changes", [dict(c) for c in CHANGES])
    return store


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, Store]]:
    sqlite = fill(open_store(f"sqlite:///{tmp_path}/ptm.sqlite"))
    mongo = open_store("mongomock://localhost/ptm_cli_test")
    for name in ("models", "owners", "crawls", "changes"):
        mongo.delete(name, mongo.ids(name))
    fill(mongo)
    yield {"sqlite": sqlite, "mongomock": mongo}
    sqlite.close()
    mongo.close()


def ptm(store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(cli, "open_existing", lambda uri: Kept(store))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def both(stores: dict[str, Store], capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str, str]:
    results = [ptm(s, capsys, monkeypatch, *argv) for s in stores.values()]
    assert results[0] == results[1], argv
    return results[0]


@pytest.mark.parametrize(("where", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_query_gives_the_same_documents_on_both_stores(stores: dict[str, Store],
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       where: dict[str, Any],
                                                       expected: list[int]) -> None:
    code, out, _ = both(stores, capsys, monkeypatch, "query", json.dumps(where))
    assert code == 0
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) == len(expected)
    assert [d["_id"] for d in docs] == sorted(d["_id"] for d in docs)


def test_query_table_as_the_demo_runs_it(stores: dict[str, Store],
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = both(stores, capsys, monkeypatch, "query", '{"hub": "huggingface"}',
                        "--sort=-downloads", "--limit", "3", "--table",
                        "--fields", "_id,owner,downloads,license,tasks")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["_id", "owner", "downloads", "license", "tasks"]
    assert [line.split()[0] for line in lines[2:]] == [
        "huggingface:o1/m5", "huggingface:o0/m4", "huggingface:o0/m2"]
    assert "apache-2.0" in lines[4]


def test_query_fields_and_other_collections(stores: dict[str, Store],
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = both(stores, capsys, monkeypatch, "query", '{"gated": true}',
                        "--fields", "hub_id,card.present")
    assert code == 0
    assert [json.loads(x) for x in out.splitlines()] == [{"hub_id": "o0/m2",
                                                          "card.present": True}]
    code, out, _ = both(stores, capsys, monkeypatch, "query", '{"complete": false}',
                        "--collection", "crawls", "--fields", "_id")
    assert code == 0 and out == '{"_id": "c3"}\n'


@pytest.mark.parametrize(("argv", "message"), [
    (["query", '{"downloads": {"$where": 1}}'], "unsupported operator $where"),
    (["query", "{nope"], "FILTER is not JSON"),
    (["query", "[1, 2]"], "must be a JSON object"),
    (["query", "{}", "--sort", "a'b"], "unsupported character"),
    (["query", "{}", "--collection", "models; drop"], "unknown collection"),
    (["export", "--format", "parquet", "-"], "parquet needs a file"),
    (["export", "--format", "jsonl", "--hub", "nohub", "x.jsonl"], "unknown hub nohub"),
])
def test_usage_errors_exit_2(stores: dict[str, Store], capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch, argv: list[str],
                             message: str) -> None:
    code, out, err = both(stores, capsys, monkeypatch, *argv)
    assert code == 2 and out == ""
    assert message in err


@pytest.mark.parametrize("argv", [["query", "{}", "--limit", "-1"], ["nocommand"],
                                  ["export", "x"], ["history"]])
def test_argument_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize("argv", [["--help"], ["query", "--help"], ["export", "--help"],
                                  ["history", "--help"], ["stats", "--help"],
                                  ["crawls", "--help"]])
def test_help_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    assert "usage: ptm" in capsys.readouterr().out


def test_missing_store_is_a_failure_not_a_new_file(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere" / "ptm.sqlite"
    assert cli.main(["--store", f"sqlite:///{path}", "stats"]) == 1
    assert "no SQLite store" in capsys.readouterr().err
    assert not path.exists() and not path.parent.exists()
    assert cli.main(["--store", "redis://x", "stats"]) == 1


def test_ctrl_c_is_one_line_and_status_130(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during a command (here: while the store opens) was a KeyboardInterrupt
    traceback."""
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "open_existing", interrupted)
    assert cli.main(["--store", f"sqlite:///{tmp_path}/ptm.sqlite", "stats"]) == 130
    assert capsys.readouterr().err == "ptm: error: interrupted\n"


def test_stats_json_and_table(stores: dict[str, Store], capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    results = [ptm(s, capsys, monkeypatch, "stats", "--json") for s in stores.values()]
    data = [json.loads(r[1]) for r in results]
    for d in data:
        d.pop("store")
    assert data[0] == data[1]
    stats = data[0]
    assert stats["hubs"] == {
        "huggingface": {"models": 5, "removed": 1, "owners": 2, "collections": 0},
        "tfhub": {"models": 1, "removed": 0, "owners": 0, "collections": 0}}
    assert stats["commits_total"] == 0
    assert stats["models_total"] == 6 and stats["owners_verified"] == 1
    assert stats["owners_without_overview"] == 1  # a user an owners=orgs crawl recognised
    assert [(c["spider"], c["_id"]) for c in stats["last_crawls"]] == [
        ("hf_models", "c2"), ("tfhub", "c3")]
    code, out, _ = ptm(stores["sqlite"], capsys, monkeypatch, "stats")
    assert code == 0 and "Last crawl per spider:" in out and "huggingface  5" in out
    assert "2 owners (1 verified, 1 user without overview)" in out


def test_history_jsonl_and_table(stores: dict[str, Store], capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = both(stores, capsys, monkeypatch, "history", "huggingface:o0/m2")
    assert code == 0
    assert [json.loads(x)["kind"] for x in out.splitlines()] == ["new", "changed"]
    # a bare hub id works too
    code, out2, _ = both(stores, capsys, monkeypatch, "history", "o0/m2", "--table")
    assert code == 0
    assert "downloads: 10 -> 20; tags: +1 -0" in out2
    code, _, err = both(stores, capsys, monkeypatch, "history", "huggingface:nope/x")
    assert code == 1 and "no history" in err


def test_crawls_listing(stores: dict[str, Store], capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = both(stores, capsys, monkeypatch, "crawls", "--spider", "hf_models")
    assert code == 0
    assert [json.loads(x)["_id"] for x in out.splitlines()] == ["c2", "c1"]
    code, out, _ = both(stores, capsys, monkeypatch, "crawls", "--table", "--limit", "1")
    assert code == 0 and out.splitlines()[2].startswith("c2 ")


def test_module_entry_point_and_exit_codes(tmp_path: Path) -> None:
    store = fill(open_store(f"sqlite:///{tmp_path}/ptm.sqlite"))
    store.close()
    base = [sys.executable, "-m", "ptmspiders", "--store", f"sqlite:///{tmp_path}/ptm.sqlite"]
    ok = subprocess.run([*base, "query", '{"tags": "bert"}', "--fields", "_id"], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout == '{"_id": "huggingface:o0/m2"}\n'
    bad = subprocess.run([*base, "query", '{"$text": {"$search": "x"}}'], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unsupported operator $text" in bad.stderr


def test_history_of_a_renamed_model_starts_at_its_first_name(
        stores: dict[str, Store], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    renamed = [
        {"_id": "c1|huggingface:o/old", "crawl_id": "c1", "model_id": "huggingface:o/old",
         "at": "2026-01-01T00:05Z", "kind": "new"},
        {"_id": "c2|huggingface:o/new", "crawl_id": "c2", "model_id": "huggingface:o/new",
         "at": "2026-02-01T00:05Z", "kind": "renamed", "renamed_from": "huggingface:o/old"},
        {"_id": "c2|huggingface:o/old", "crawl_id": "c2", "model_id": "huggingface:o/old",
         "at": "2026-02-01T00:10Z", "kind": "removed", "renamed_to": "huggingface:o/new"},
    ]
    for s in stores.values():
        s.upsert("changes", [dict(r) for r in renamed])
    code, out, _ = both(stores, capsys, monkeypatch, "history", "huggingface:o/new")
    assert code == 0
    assert [(json.loads(x)["model_id"], json.loads(x)["kind"]) for x in out.splitlines()] == [
        ("huggingface:o/old", "new"), ("huggingface:o/new", "renamed"),
        ("huggingface:o/old", "removed")]


def test_history_of_a_baseline_model_starts_at_first_seen(
        stores: dict[str, Store], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub's first crawl writes no record per model: history starts at crawl.first_seen."""
    code, out, _ = both(stores, capsys, monkeypatch, "history", "huggingface:o1/m1")
    assert code == 0
    rows = [json.loads(x) for x in out.splitlines()]
    assert [(r["kind"], r["at"]) for r in rows] == [
        ("first_seen", "2026-01-01T00:00:00.000Z"), ("removed", "2026-02-01T00:09Z")]
    code, out, _ = both(stores, capsys, monkeypatch, "history", "huggingface:o0/m4", "--table")
    assert code == 0 and "first_seen" in out and "huggingface:o0/m4" in out
    code, out, _ = both(stores, capsys, monkeypatch, "history", "huggingface:o1/m1",
                        "--limit", "1")
    assert [json.loads(x)["kind"] for x in out.splitlines()] == ["first_seen"]


def test_stats_says_restricted_rather_than_incomplete(
        store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A restricted crawl (``-a limit=``, packages) is never complete by design: the table says
    so, while a crawl that ended incomplete still reads false."""
    store.upsert("crawls", [
        {"_id": "p1", "spider": "packages", "hub": "packages", "started_at": "2026-03-01T00:00Z",
         "finished_at": "2026-03-01T00:10Z", "finish_reason": "finished", "complete": False,
         "restricted": True, "counts": {}},
        {"_id": "t1", "spider": "tfhub", "hub": "tfhub", "started_at": "2026-03-01T00:00Z",
         "finished_at": "2026-03-01T00:10Z", "finish_reason": "finished", "complete": False,
         "restricted": False, "counts": {}}])
    code, out, _ = ptm(store, capsys, monkeypatch, "stats")
    rows = {line.split()[0]: line.split()[3] for line in out.splitlines()
            if line.startswith(("packages ", "tfhub "))}
    assert code == 0 and rows == {"packages": "restricted", "tfhub": "false"}
