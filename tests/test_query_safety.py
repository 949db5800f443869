"""``ptm`` with hostile or broken input: one ``ptm: error:`` line and exit 2 (usage) or 1
(store), never a traceback, and the store left exactly as it was (issue 24, item 5)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptmspiders import cli
from ptmspiders.items import to_doc
from ptmspiders.parsers import huggingface as hf
from ptmspiders.stores import COLLECTIONS, Store, StoreError, open_store
from tests.conftest import FIXTURES

CARD_PATH = "raw.cardData.model-index.results.metrics.value"


def card_model() -> dict[str, Any]:
    """A model as the Hugging Face spider stores it, from a recorded API entry whose card
    carries its model-index (task, metrics with values), as the Hub's cardData does."""
    entries = json.loads((FIXTURES / "huggingface" / "models.json").read_text())
    entry = next(e for e in entries if e["id"] == "acme-ai/t5-small-summarize")
    entry["cardData"]["model-index"] = entry["model-index"]  # results: rouge 33.1
    item = hf.parse_model(entry, endpoint="https://huggingface.co", source_url=None,
                          seen_at="2026-11-25T12:00:00.000Z")
    return to_doc(item)


def plain_model() -> dict[str, Any]:
    return {"_id": "huggingface:acme-ai/plain", "hub": "huggingface", "hub_id": "acme-ai/plain",
            "owner": "acme-ai", "raw": {"cardData": {"license": "mit"}}}


@pytest.fixture
def store_file(tmp_path: Path) -> Iterator[Path]:
    """A SQLite store on disk with two models, closed (as after a crawl)."""
    path = tmp_path / "ptm.sqlite"
    with open_store(f"sqlite:///{path}") as store:
        store.upsert("models", [card_model(), plain_model()])
    yield path


def snapshot(path: Path) -> tuple[str, list[str]]:
    """The database file's bytes (hashed) and its tables."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()
    return digest, tables


def ptm(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(err: str, message: str) -> None:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ptm: error: ")
    assert message in lines[0]


DEEP_AND = '{"$and": [' * 45 + '{"hub": "huggingface"}' + "]}" * 45

BAD_QUERIES = [
    pytest.param(["query", '{"downloads": {"$gt": 100000000000000000000000}}'],
                 2, "outside the 64-bit range", id="int-beyond-64-bits-compared"),
    pytest.param(["query", '{"downloads": 18446744073709551616}'],
                 2, "outside the 64-bit range", id="int-beyond-64-bits-equal"),
    pytest.param(["query", '{"downloads": {"$in": [1, -9223372036854775809]}}'],
                 2, "outside the 64-bit range", id="int-beyond-64-bits-in-list"),
    pytest.param(["query", "{}", "--collection", "sqlite_master"],
                 2, "unknown collection 'sqlite_master'", id="collection-sqlite_master"),
    pytest.param(["query", "{}", "--collection", "nosuch"],
                 2, "unknown collection 'nosuch'", id="collection-nosuch"),
    pytest.param(["query", DEEP_AND], 2, "nested more than 32 levels", id="and-45-deep"),
    pytest.param(["query", "[" * 1000 + "]" * 1000], 2, "nested more than 32 levels",
                 id="json-array-1000-deep"),
    pytest.param(["query", '{"a": ' * 1000 + "1" + "}" * 1000], 2, "nested more than 32",
                 id="json-object-1000-deep"),
    pytest.param(["query", json.dumps({".".join(["a"] * 40): 1})], 2, "more than 32 parts",
                 id="path-of-40-parts"),
    pytest.param(["query", '{"downloads": NaN}'], 2, "NaN", id="nan"),
    pytest.param(["query", '{"downloads": ' + "9" * 5000 + "}"], 2, "FILTER is not JSON",
                 id="int-of-5000-digits"),
    pytest.param(["query", '{"hub_id": {"$regex": "(a)\\\\1"}}'], 2, "RE2",
                 id="regex-backreference"),
    pytest.param(["query", "{}", "--limit", "99999999999999999999999"], 2, "--limit",
                 id="limit-beyond-64-bits"),
    pytest.param(["query", "{nope"], 2, "FILTER is not JSON", id="not-json"),
    pytest.param(["querx", "{}"], 2, "invalid choice", id="unknown-command"),
]


@pytest.mark.parametrize(("argv", "code", "message"), BAD_QUERIES)
def test_bad_input_is_one_error_line_and_leaves_the_store_alone(
        store_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
        message: str) -> None:
    before = snapshot(store_file)
    got, out, err = ptm(capsys, "--store", f"sqlite:///{store_file}", *argv)
    assert got == code
    assert out == ""
    assert_one_error(err, message)
    assert snapshot(store_file) == before


def test_collections_are_the_stores_own(store_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Every collection the store knows can be queried, and reading one that has no table
    yet (owners here) reads nothing and creates nothing."""
    before = snapshot(store_file)
    assert "owners" not in before[1]
    for name in COLLECTIONS:
        code, out, err = ptm(capsys, "--store", f"sqlite:///{store_file}", "query", "{}",
                             "--collection", name)
        assert (code, err) == (0, "")
        assert len(out.splitlines()) == (2 if name == "models" else 0)
    assert snapshot(store_file) == before


def test_a_file_that_is_not_a_store_is_one_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("not a database\n")
    code, out, err = ptm(capsys, "--store", f"sqlite:///{path}", "stats")
    assert code == 1 and out == ""
    assert_one_error(err, "not a database")
    assert path.read_text() == "not a database\n"


def test_unreachable_mongodb_is_one_error_line(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "SERVER_TIMEOUT_S", 0.2)  # the test need not wait 5 s
    code, out, err = ptm(capsys, "--store", "mongodb://reader:s3cret@127.0.0.1:1/ptm",
                         "query", "{}")
    assert code == 1 and out == ""
    assert_one_error(err, "cannot reach MongoDB at mongodb://reader:***@127.0.0.1:1/ptm")
    assert "s3cret" not in err


def test_the_catastrophic_regex_finishes(store_file: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``(.|.)*X`` backtracks exponentially in Python's ``re``; RE2 answers in linear time.
    Long ids make the difference: ``re`` would not finish on them."""
    with open_store(f"sqlite:///{store_file}") as store:
        store.upsert("models", [{"_id": f"huggingface:o/{'a' * 40}{n}", "hub": "huggingface",
                                 "hub_id": f"o/{'a' * 40}{n}"} for n in range(5)])
    code, out, err = ptm(capsys, "--store", f"sqlite:///{store_file}", "query",
                         '{"hub_id": {"$regex": "(.|.)*X"}}')
    assert (code, out, err) == (0, "", "")
    code, out, _ = ptm(capsys, "--store", f"sqlite:///{store_file}", "query",
                       '{"hub_id": {"$regex": "(.|.)*0$"}}', "--fields", "_id")
    assert code == 0 and [json.loads(x)["_id"] for x in out.splitlines()] == [
        f"huggingface:o/{'a' * 40}0"]


def test_the_real_six_part_card_path_works_on_the_command_line(
        store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ptm(capsys, "--store", f"sqlite:///{store_file}", "query",
                         json.dumps({CARD_PATH: {"$gt": 30}}), "--fields", "_id")
    assert (code, err) == (0, "")
    assert out == '{"_id": "huggingface:acme-ai/t5-small-summarize"}\n'


@pytest.mark.parametrize(("where", "expected"), [
    ({CARD_PATH: 33.1}, ["t5"]),
    ({CARD_PATH: {"$gt": 30, "$lt": 40}}, ["t5"]),
    ({CARD_PATH: {"$gt": 40}}, []),
    ({CARD_PATH: {"$exists": True}}, ["t5"]),
    ({CARD_PATH: None}, ["plain"]),  # missing on the way counts as null, as in MongoDB
    ({"raw.cardData.model-index.results.task.type": "summarization"}, ["t5"]),
    ({"raw.cardData.model-index.0.results.0.metrics.0.type": "rouge"}, ["t5"]),
    ({"raw.cardData.model-index.results.metrics.type": {"$in": ["bleu", "rouge"]}}, ["t5"]),
    ({"$nor": [{CARD_PATH: {"$lt": 0}}], "raw.cardData.model-index.name": {"$regex": "^t5"}},
     ["t5"]),
])
def test_the_six_part_card_path_on_both_stores(store: Store, where: dict[str, Any],
                                               expected: list[str]) -> None:
    store.upsert("models", [card_model(), plain_model()])
    names = {"t5": "huggingface:acme-ai/t5-small-summarize",
             "plain": "huggingface:acme-ai/plain"}
    assert [d["_id"] for d in store.query("models", where)] == [names[n] for n in expected]
    assert store.count("models", where) == len(expected)


def test_a_twenty_part_path_is_an_ordinary_query(store_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """It built 280 MB of SQL: now a short statement that matches nothing here."""
    before = snapshot(store_file)
    path = ".".join(["raw", "cardData", *(f"p{i}" for i in range(18))])
    code, out, err = ptm(capsys, "--store", f"sqlite:///{store_file}", "query",
                         json.dumps({path: {"$gte": 0}}))
    assert (code, out, err) == (0, "", "")
    assert snapshot(store_file) == before


def test_sql_grows_linearly_with_the_path() -> None:
    """Each part of a dotted path once quadrupled the SQL (a 20-part path: 280 MB)."""
    from ptmspiders.query import to_sql

    def size(parts: int) -> int:
        return len(to_sql({".".join(f"p{i}" for i in range(parts)): {"$gt": 1}})[0])

    assert size(6) == size(2)  # the path is a parameter: the SQL does not grow with it
    assert size(30) < 300


@pytest.mark.parametrize("make", [
    lambda f: {"$and": [f, {"hub": "x"}]},
    lambda f: {"$or": [f, {"hub": "x"}]},
    lambda f: {"$nor": [f]},
    lambda f: {"$and": [{"$nor": [f]}]},
], ids=["and", "or", "nor", "and-nor"])
def test_the_deepest_allowed_filter_runs_on_sqlite(make: Any, tmp_path: Path) -> None:
    """Nesting up to the bound parses in SQLite (whose parser stack is ~100 deep)."""
    from ptmspiders.query import QueryError, check_filter

    where: dict[str, Any] = {"raw.cardData.license": {"$not": {"$in": ["x", 1, None]}}}
    while True:
        deeper = make(where)
        try:
            check_filter(deeper)
        except QueryError:
            break
        where = deeper
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        store.upsert("models", [plain_model()])
        assert store.count("models", where) in (0, 1)


def test_a_filter_too_wide_and_deep_for_sqlite_is_a_query_error(tmp_path: Path) -> None:
    from ptmspiders.query import QueryError

    where: dict[str, Any] = {"hub": "x"}
    for _ in range(15):
        where = {"$nor": [*([{"hub": "y"}] * 1000), where]}
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store, \
            pytest.raises(QueryError, match="too complex"):
        store.count("models", where)


def test_read_only_sqlite_creates_and_writes_nothing(store_file: Path) -> None:
    before = snapshot(store_file)
    with open_store(f"sqlite:///{store_file}", readonly=True) as store:
        assert list(store.query("owners", {"hub": "huggingface"})) == []
        assert store.count("commits") == 0 and store.get("changes", "x") is None
        assert store.count("models", {CARD_PATH: 33.1}) == 1
        with pytest.raises(StoreError, match="read-only"):
            store.upsert("owners", [{"_id": "o", "hub": "huggingface"}])
        with pytest.raises(StoreError, match="unknown collection"):
            store.count("sqlite_master")
    assert snapshot(store_file) == before


def test_read_only_sqlite_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        open_store(f"sqlite:///{tmp_path}/missing/ptm.sqlite", readonly=True)
    assert not (tmp_path / "missing").exists()


def test_read_only_mongodb_creates_no_index_and_no_collection() -> None:
    import mongomock

    from ptmspiders.stores.mongo import MongoStore

    client = mongomock.MongoClient()
    store = MongoStore("mongomock://localhost/ptm_ro", client=client, readonly=True)
    assert list(store.query("models", {"hub": "huggingface"})) == []
    assert store.count("owners") == 0
    assert client["ptm_ro"].list_collection_names() == []
    with pytest.raises(StoreError, match="read-only"):
        store.upsert("models", [plain_model()])
    with pytest.raises(StoreError, match="unknown collection"):
        store.count("system.users")
    assert client["ptm_ro"].list_collection_names() == []


class _Recording:
    """A collection that records the keyword arguments of every read."""

    def __init__(self, coll: Any, calls: list[dict[str, Any]]) -> None:
        self.coll, self.calls = coll, calls

    def find(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.coll.find(*args, **kwargs)

    def count_documents(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.coll.count_documents(*args, **kwargs)


def test_ptm_gives_mongodb_reads_a_time_limit(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """MongoDB runs ``$regex`` with a backtracking engine: the server stops it (maxTimeMS)."""
    from ptmspiders.stores.mongo import MongoStore

    store = open_store("mongomock://localhost/ptm_limits")
    assert isinstance(store, MongoStore)
    store.upsert("models", [plain_model()])
    calls: list[dict[str, Any]] = []
    original = store.coll
    monkeypatch.setattr(store, "coll", lambda name: _Recording(original(name), calls))
    monkeypatch.setattr(cli, "open_existing", lambda uri: store)
    code, out, _ = ptm(capsys, "--timeout", "7", "query", '{"hub_id": {"$regex": "pl"}}')
    assert code == 0 and len(out.splitlines()) == 1
    assert calls and all(c.get("max_time_ms") == 7000 for c in calls)


def test_unicode_digits_in_a_path_are_keys_not_indexes(store: Store) -> None:
    """``"²".isdigit()`` is true: taken for an array index it made a broken SQLite path."""
    store.upsert("models", [{"_id": "a", "hub": "x", "files": [{"²": 1}], "t": {"²": 2}}])
    for where in ({"files.²": 1}, {"t.²": 2}, {"files.0.²": 1}, {"t.²": {"$exists": True}}):
        assert store.count("models", where) == 1, where
    assert list(store.query("models", {}, fields=["t.²"])) == [{"_id": "a", "t.²": 2}]
