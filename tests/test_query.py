"""MongoDB filters give the same documents, in the same order, on SQLite and on mongomock.

Every case also states the expected ``_id`` list, so a translation that is wrong the same way on
both stores still fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptmspiders.query import QueryError, check_filter, parse_sort, to_sql
from ptmspiders.stores import Store, open_store


def model(n: int, **kw: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "_id": f"huggingface:o{n % 2}/m{n}", "hub": "huggingface", "hub_id": f"o{n % 2}/m{n}",
        "name": f"m{n}",
        "owner": f"o{n % 2}", "downloads": n * 10, "likes": None, "license": "mit",
        "gated": False, "tags": ["t", f"t{n}"], "tasks": [],
        "files": [{"path": "README.md", "size": 10}, {"path": f"w{n}.bin", "size": n}],
        "card": {"present": True, "has_model_index": n % 2 == 0},
        "crawl": {"first_seen": "2026-01-01T00:00:00.000Z", "last_seen": "2026-01-02T00:00:00.000Z",
                  "source_url": None},
    }
    doc.update(kw)
    return doc


DOCS = [
    model(0, license=None, tags=[], gated=None),
    model(1, downloads=15.5, likes=3, tasks=["fill-mask"]),
    model(2, license="apache-2.0", gated=True, tags=["t", "bert", "T2"]),
    model(3, hub="tfhub", _id="tfhub:o1/m3", downloads=None, extra={"mixed": "7"}),
    model(4, likes=0, tasks=["fill-mask", "text-classification"], card={"present": False,
                                                                        "has_model_index": False}),
    model(5, extra={"mixed": 7}, files=[]),
]
for _d in DOCS[5:]:
    _d.pop("license")

# (filter, expected models by number; the stores return them in _id order)
CASES: list[tuple[dict[str, object], list[int]]] = [
    ({}, [0, 1, 2, 4, 5, 3]),
    ({"hub": "tfhub"}, [3]),
    ({"license": None}, [0, 5]),  # null and missing
    ({"license": {"$exists": False}}, [5]),
    ({"license": {"$exists": True}}, [0, 1, 2, 4, 3]),
    ({"license": {"$ne": "mit"}}, [0, 2, 5]),
    ({"gated": True}, [2]),
    ({"gated": False}, [1, 4, 5, 3]),
    ({"gated": {"$in": [None, True]}}, [0, 2]),
    ({"downloads": {"$gt": 15}}, [1, 2, 4, 5]),
    ({"downloads": {"$gte": 20, "$lt": 50}}, [2, 4]),
    ({"downloads": {"$lte": 10}}, [0]),
    ({"downloads": {"$gt": "0"}}, []),  # strings never compare with numbers
    ({"extra.mixed": 7}, [5]),
    ({"extra.mixed": "7"}, [3]),
    ({"extra.mixed": {"$gte": "0"}}, [3]),
    ({"tags": "bert"}, [2]),  # array membership
    ({"tags": ["t", "t1"]}, [1]),  # whole-array equality
    ({"tags": {"$in": ["bert", "t4"]}}, [2, 4]),
    ({"tags": {"$nin": ["t"]}}, [0]),
    ({"tags": {"$all": ["t", "bert"]}}, [2]),
    ({"tags": {"$size": 0}}, [0]),
    ({"tasks": {"$size": 2}}, [4]),
    ({"tags": {"$regex": "^t\\d$"}}, [1, 4, 5, 3]),
    ({"tags": {"$regex": "^t2$", "$options": "i"}}, [2]),
    ({"hub_id": {"$regex": "m[23]"}}, [2, 3]),
    ({"hub_id": {"$regex": "m [2 3] $  # m2 or m3, at the end", "$options": "x"}}, [2, 3]),
    ({"hub_id": {"$regex": "\\#|M[\\ 4]", "$options": "xi"}}, [4]),
    ({"files.path": "w4.bin"}, [4]),  # dotted path through an array of sub-documents
    ({"files.size": {"$gt": 3}}, [0, 1, 2, 4, 3]),
    ({"files.path": {"$exists": True}}, [0, 1, 2, 4, 3]),
    ({"files": {"$size": 0}}, [5]),
    ({"card.present": False}, [4]),
    ({"card.has_model_index": True}, [0, 2]),
    ({"crawl.first_seen": {"$lt": "2026-01-01T12:00:00Z"}}, [0, 1, 2, 4, 5, 3]),
    ({"_id": {"$in": ["tfhub:o1/m3", "huggingface:o0/m4", "nope"]}}, [4, 3]),
    ({"_id": {"$gt": "huggingface:o1"}}, [1, 5, 3]),
    ({"$or": [{"likes": {"$gte": 1}}, {"gated": True}]}, [1, 2]),
    ({"$and": [{"owner": "o0"}, {"downloads": {"$ne": 0}}]}, [2, 4]),
    ({"$nor": [{"owner": "o0"}, {"hub": "tfhub"}]}, [1, 5]),
    ({"likes": {"$not": {"$gt": 1}}}, [0, 2, 4, 5, 3]),
    ({"likes": {"$eq": 0}}, [4]),
]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Store]:
    path: Path = tmp_path_factory.mktemp("query")
    sqlite = open_store(f"sqlite:///{path}/q.sqlite")
    mongo = open_store("mongomock://localhost/ptm_query_test")
    for s in (sqlite, mongo):
        s.delete("models", [str(d["_id"]) for d in DOCS])
        s.upsert("models", [dict(d) for d in DOCS])
    yield sqlite, mongo
    sqlite.close()
    mongo.close()


def ids(numbers: list[int]) -> list[str]:
    return [str(d["_id"]) for n in numbers for d in DOCS if d["hub_id"].endswith(f"/m{n}")]


@pytest.mark.parametrize(("where", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_each_operator_gives_the_same_documents(both: tuple[Store, Store],
                                                where: dict[str, object],
                                                expected: list[int]) -> None:
    sqlite, mongo = both
    got_sqlite = list(sqlite.query("models", where))
    got_mongo = list(mongo.query("models", where))
    assert [d["_id"] for d in got_sqlite] == sorted(ids(expected))
    assert got_sqlite == got_mongo
    # find/count/ids take the same filters on both stores
    assert sqlite.count("models", where) == mongo.count("models", where) == len(expected)
    assert sqlite.ids("models", where) == mongo.ids("models", where)


@pytest.mark.parametrize(("sort", "expected"), [
    ("-downloads", [4, 2, 1, 0, 3]),  # nulls last when descending, as MongoDB
    ("downloads", [3, 0, 1, 2, 4]),
    ("owner,-downloads", [4, 2, 0, 1, 3]),
    ("likes,_id", [0, 2, 3, 4, 1]),
])
def test_sort_and_limit_agree(both: tuple[Store, Store], sort: str, expected: list[int]) -> None:
    sqlite, mongo = both
    where = {"_id": {"$ne": "huggingface:o1/m5"}}
    spec = parse_sort(sort)
    got = [[d["_id"] for d in s.query("models", where, sort=spec)] for s in (sqlite, mongo)]
    assert got[0] == got[1] == ids(expected)
    limited = [list(s.query("models", where, sort=spec, limit=2)) for s in (sqlite, mongo)]
    assert [d["_id"] for d in limited[0]] == ids(expected)[:2]
    assert limited[0] == limited[1]


def test_projection_is_flat_and_identical(both: tuple[Store, Store]) -> None:
    sqlite, mongo = both
    fields = ["downloads", "card.present", "card", "tags", "files.path", "nope"]
    got = [list(s.query("models", {"hub": "huggingface"}, fields=fields,
                        sort=[("downloads", -1)], limit=1)) for s in (sqlite, mongo)]
    assert json.dumps(got[0]) == json.dumps(got[1])  # true stays true, not 1
    assert got[0] == [{
        "_id": "huggingface:o1/m5", "downloads": 50, "card.present": True,
        "card": {"present": True, "has_model_index": False}, "tags": ["t", "t5"],
        "files.path": None, "nope": None}]


@pytest.mark.parametrize("where", [
    {"downloads": {"$where": "1"}},
    {"$text": {"$search": "x"}},
    {"tags": {"$elemMatch": {"$eq": "t"}}},
    {"downloads": {"$gt": None}},
    {"downloads": {"$gt": True}},
    {"$or": []},
    {"$and": {"hub": "x"}},
    {"tags": {"$in": "t"}},
    {"name": {"$regex": "("}},
    {"name": {"$regex": "a", "$options": "q"}},
    {"name": {"$options": "i"}},
    {"card": {"present": True, "$gt": 1}},
    {"a'b": 1},
    {"a..b": 1},
    ["not", "an", "object"],
])
def test_unsupported_filters_are_clear_errors_on_both_stores(both: tuple[Store, Store],
                                                             where: object) -> None:
    for s in both:
        with pytest.raises(QueryError):
            list(s.query("models", where))  # type: ignore[arg-type]


def test_sort_spec_parsing() -> None:
    assert parse_sort("-downloads, likes,+_id") == [("downloads", -1), ("likes", 1), ("_id", 1)]
    assert parse_sort(None) == []
    with pytest.raises(QueryError):
        parse_sort("bad'name")


def test_scalar_fields_keep_index_friendly_sql() -> None:
    """Top-level scalar fields skip MongoDB's array branch, so SQLite's expression index on
    ``hub`` can be used; array fields keep it."""
    sql, params = to_sql({"hub": "tfhub"}, scalar_fields=frozenset({"hub"}))
    assert "json_extract(doc, '$.\"hub\"') = ?" in sql and "json_each" not in sql
    assert params == ["tfhub"]
    sql, _ = to_sql({"tags": "x"}, scalar_fields=frozenset({"hub"}))
    assert "json_each" in sql
    assert check_filter(None) == {}


def test_set_fields_sets_and_clears_on_both_stores(store: Store) -> None:
    store.upsert("models", [dict(d) for d in DOCS[:3]])
    a, b = str(DOCS[0]["_id"]), str(DOCS[1]["_id"])
    assert store.set_fields("models", [a, b, "missing"], {"removed_at": "2026-02-01T00:00:00Z"}) \
        == 2
    assert store.count("models", {"removed_at": {"$gt": ""}}) == 2
    assert store.get("models", a)["downloads"] == 0  # other fields untouched
    assert store.set_fields("models", [a], {"removed_at": None, "flag": True}) == 1
    doc = store.get("models", a)
    assert doc["removed_at"] is None and doc["flag"] is True
    assert store.ids("models", {"removed_at": None}) == {a, str(DOCS[2]["_id"])}
    assert store.set_fields("models", [], {"x": 1}) == 0


def test_get_many_projection_keeps_json_types(store: Store) -> None:
    store.upsert("models", [dict(DOCS[2])])
    got = store.get_many("models", [str(DOCS[2]["_id"])], fields=["gated", "card.present"])
    assert json.dumps(got) == json.dumps({str(DOCS[2]["_id"]): {"gated": True,
                                                                "card.present": True}})


def test_long_in_lists_work_and_agree(both: tuple[Store, Store]) -> None:
    """A store batch asks with hundreds of values (history's renames); a flat OR chain of
    them exceeded SQLite's expression depth."""
    many = [f"o{i % 2}/x{i}" for i in range(3000)]
    wanted = {"hub_id": {"$in": [*many, "o1/m1", "o0/m2", 40, None]}}
    for store in both:
        assert [d["_id"] for d in store.query("models", wanted)] == ids([2, 1])
        assert [d["_id"] for d in store.query(
            "models", {"downloads": {"$in": [10, 15.5, "20", True, *range(100, 3100)]}})
        ] == ids([1])
        assert [d["_id"] for d in store.query(
            "models", {"_id": {"$nin": [f"huggingface:o{n % 2}/m{n}" for n in range(2000)]}})
        ] == ids([3])
        # the same depth for logical operators with many clauses
        assert [d["_id"] for d in store.query(
            "models", {"$or": [{"downloads": n} for n in range(1500)] + [{"likes": 3}]})
        ] == ids([0, 2, 4, 1, 5])
        assert [d["_id"] for d in store.query(
            "models", {"$nor": [{"downloads": n} for n in range(1, 1500)]})] == ids([0, 1, 3])
