"""After a demo crawl of every spider (Hugging Face with cards, files and signed commits),
every number ``ptm report`` writes matches an independent count: plain SQL over the SQLite
store, and a different Gini formula."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, hub_env, run_crawl
from tests.mockhub import MockHub
from tests.test_demo_hub import demo_args

pytestmark = [pytest.mark.crawl,
              pytest.mark.skipif(not (shutil.which("git") and shutil.which("gpg")),
                                 reason="needs git and gpg")]

# The serialisation formats, written out again for an independent classification.
PICKLE = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".mar", ".nemo")
SAFE = (".safetensors", ".gguf", ".ggml", ".onnx", ".ort", ".tflite", ".h5", ".hdf5", ".keras",
        ".pb", ".mlmodel", ".msgpack", ".npz")
NOT_WEIGHTS = ("training_args.bin", "optimizer.bin", "scheduler.bin", "rng_state.bin")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sqlite3.Connection, dict,
                                                                      Path]]:
    tmp = tmp_path_factory.mktemp("demo")
    with MockHub(clean=True) as hub:  # the hub demo.sh crawls
        keyring = hub.hf_git._keyring()  # type: ignore[attr-defined]
        spiders = subprocess.run([sys.executable, "-m", "scrapy", "list"], cwd=ROOT,
                                 env=hub_env(hub), capture_output=True, text=True,
                                 check=True).stdout.split()
        assert "hf_models" in spiders
        # packages last, as in demo.sh: it fetches the packages of the models stored before
        for spider in sorted(spiders, key=lambda name: name == "packages"):
            extra = ["-s", "PTM_HF_CARDS=1", "-s", "PTM_HF_FILES=1", "-s", "PTM_HF_COMMITS=1",
                     "-s", f"PTM_HF_GNUPGHOME={keyring}"] if spider == "hf_models" else []
            if spider == "packages":
                extra = [*demo_args(spider, hub), "-s", f"PTM_PACKAGES_DIR={tmp / 'packages'}"]
            run_crawl(spider, hub, tmp, *extra,
                      env=hub_env(hub, GITHUB_MEDIA_URL=f"{hub.url}/media"))
    out = tmp / "report"
    done = subprocess.run([sys.executable, "-m", "ptmspiders.cli", "--store",
                           f"sqlite:///{tmp}/ptm.sqlite", "report", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(tmp / "ptm.sqlite")
    yield conn, json.loads((out / "metrics.json").read_text()), out
    conn.close()


def q(conn: sqlite3.Connection, sql: str, *params: Any) -> Any:
    return conn.execute(sql, params).fetchone()[0]


def rows(conn: sqlite3.Connection, sql: str, *params: Any) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


def check(entry: dict[str, Any], numerator: int, denominator: int) -> None:
    assert (entry["numerator"], entry["denominator"]) == (numerator, denominator)
    assert entry["value"] == (numerator / denominator if denominator else None)


def gini_pairs(values: list[int]) -> float | None:
    """Gini as the mean absolute difference over twice the mean (not the rank formula)."""
    n, total = len(values), sum(values)
    if not n or not total:
        return None
    return sum(abs(a - b) for a in values for b in values) / (2 * n * total)


J = "json_extract(doc, '$.{}')"


def test_every_hub_was_crawled(demo: tuple) -> None:
    conn, m, _ = demo
    hubs = {h for (h,) in rows(conn, "SELECT DISTINCT json_extract(doc, '$.hub') FROM models")}
    assert {"huggingface", "pytorch_hub", "onnx_zoo"} <= hubs
    assert m["meta"]["documents"]["models"] == q(conn, "SELECT count(*) FROM models")
    assert m["meta"]["documents"]["commits"] == q(conn, "SELECT count(*) FROM commits") > 25


def test_verified_orgs(demo: tuple) -> None:
    conn, m, _ = demo
    org = f"{J.format('type')} = 'org'"
    check(m["verified_orgs"],
          q(conn, f"SELECT count(*) FROM owners WHERE {org} AND {J.format('is_verified')} = 1"),
          q(conn, f"SELECT count(*) FROM owners WHERE {org} "
                  f"AND {J.format('is_verified')} IS NOT NULL"))


def test_signed_commits(demo: tuple) -> None:
    conn, m, _ = demo
    s = m["signed_commits"]
    signed, known = f"{J.format('signed')} = 1", f"{J.format('signed')} IS NOT NULL"
    check(s["commits"], q(conn, f"SELECT count(*) FROM commits WHERE {signed}"),
          q(conn, f"SELECT count(*) FROM commits WHERE {known}"))
    check(s["models"], q(conn, f"SELECT count(DISTINCT {J.format('model')}) FROM commits "
                               f"WHERE {signed}"),
          q(conn, f"SELECT count(DISTINCT {J.format('model')}) FROM commits WHERE {known}"))
    assert s["statuses"] == {k: q(conn, f"SELECT count(*) FROM commits WHERE "
                                        f"{J.format('signature')} = ?", k)
                             for k in ("good", "bad", "unsigned", "unknown")}
    assert s["statuses"]["good"] and s["statuses"]["bad"] and s["statuses"]["unknown"]
    orgs = rows(conn, """
        SELECT DISTINCT json_extract(o.doc, '$.name') FROM commits c
        JOIN models m ON m._id = json_extract(c.doc, '$.model')
        JOIN owners o
          ON o._id = json_extract(m.doc, '$.hub') || ':' || json_extract(m.doc, '$.owner')
        WHERE json_extract(c.doc, '$.signed') = 1 AND json_extract(o.doc, '$.type') = 'org'
          AND json_extract(o.doc, '$.is_verified') = 1 ORDER BY 1""")
    assert s["verified_orgs_signing"]["orgs"] == [o for (o,) in orgs]
    assert s["verified_orgs_signing"]["value"] == len(orgs) > 0


def test_model_index(demo: tuple) -> None:
    conn, m, _ = demo
    hf = f"{J.format('hub')} = 'huggingface'"
    check(m["model_index"],
          q(conn, f"SELECT count(*) FROM models WHERE {hf} "
                  f"AND {J.format('card.has_model_index')} = 1"),
          q(conn, f"SELECT count(*) FROM models WHERE {hf}"))
    per_task = rows(conn, f"""
        SELECT t.value, count(*), sum(json_extract(m.doc, '$.card.has_model_index') = 1)
        FROM models m, json_each(m.doc, '$.tasks') t WHERE {hf.replace('doc', 'm.doc')}
        GROUP BY t.value""")
    assert {t: (e["numerator"], e["denominator"]) for t, e in m["model_index"]["per_task"].items()
            if t != "(none)"} == {t: (k, n) for t, n, k in per_task}


def test_cards(demo: tuple) -> None:
    conn, m, _ = demo
    present = J.format("card.present")
    check(m["cards"], q(conn, f"SELECT count(*) FROM models WHERE {present} = 1"),
          q(conn, f"SELECT count(*) FROM models WHERE {present} IS NOT NULL"))
    top = rows(conn, f"""
        WITH known AS (SELECT _id, {J.format('hub')} AS hub, {J.format('downloads')} AS dl,
                              {present} AS present FROM models
                       WHERE {present} IS NOT NULL
                         AND json_type(doc, '$.downloads') = 'integer'),
             ranked AS (SELECT *, row_number() OVER (PARTITION BY hub ORDER BY dl DESC, _id) AS rn,
                               count(*) OVER (PARTITION BY hub) AS n FROM known)
        SELECT _id, present FROM ranked WHERE rn <= (n + 9) / 10""")
    without = sorted(i for i, p in top if p == 0)
    check(m["cards"]["popular_without_card"], len(without), len(top))
    assert m["cards"]["popular_without_card"]["models"] == without
    read = f"{present} = 1 AND {J.format('card.length')} IS NOT NULL"
    for fact in ("license", "datasets", "limitations", "evaluation"):
        check(m["cards"]["states"][fact],
              q(conn, f"SELECT count(*) FROM models WHERE {read} "
                      f"AND {J.format('card.states_' + fact)} = 1"),
              q(conn, f"SELECT count(*) FROM models WHERE {read}"))


def test_missing_fields(demo: tuple) -> None:
    conn, m, _ = demo
    total = q(conn, "SELECT count(*) FROM models")
    for field, entry in m["missing_fields"]["fields"].items():
        if field == "card":
            cond = f"{J.format('card.present')} IS NOT 1"
        elif field == "model_index":
            cond = f"{J.format('card.has_model_index')} IS NOT 1"
        else:
            p = f"'$.{field}'"
            cond = (f"json_type(doc, {p}) IS NULL OR json_type(doc, {p}) = 'null' "
                    f"OR (json_type(doc, {p}) = 'text' AND json_extract(doc, {p}) = '') "
                    f"OR (json_type(doc, {p}) = 'array' AND json_array_length(doc, {p}) = 0) "
                    f"OR (json_type(doc, {p}) = 'object' AND json_extract(doc, {p}) = '{{}}')")
        check(entry, q(conn, f"SELECT count(*) FROM models WHERE {cond}"), total)
    with (demo[2] / "missing_fields.csv").open() as fh:
        assert sum(1 for r in csv.DictReader(fh) if r["hub"] == "all") == len(
            m["missing_fields"]["fields"])


def test_dependencies(demo: tuple) -> None:
    conn, m, _ = demo
    for key, path in (("base_models", "$.base_models"), ("datasets", "$.datasets")):
        counted = rows(conn, f"""
            SELECT j.value, count(DISTINCT m._id) AS n FROM models m, json_each(m.doc, '{path}') j
            GROUP BY j.value ORDER BY n DESC, j.value LIMIT 20""")
        assert [(d["name"], d["models"]) for d in m["dependencies"][key]] == counted
    check(m["dependencies"]["with_base_model"],
          q(conn, "SELECT count(*) FROM models WHERE json_array_length(doc, '$.base_models') > 0"),
          q(conn, "SELECT count(*) FROM models"))


def test_popularity(demo: tuple) -> None:
    conn, m, _ = demo
    per_hub = m["popularity"]["per_hub"]
    assert "huggingface" in per_hub
    for hub, e in per_hub.items():
        values = [v for (v,) in rows(conn, f"""
            SELECT {J.format(e['measure'])} FROM models WHERE {J.format('hub')} = ?
              AND json_type(doc, '$.{e['measure']}') = 'integer' ORDER BY 1 DESC""", hub)]
        assert (e["models"], e["total"]) == (len(values), sum(values))
        for label, per in (("top1", 100), ("top10", 10)):
            k = max(1, -(-len(values) // per))
            check(e[label], sum(values[:k]), sum(values))
        assert e["gini"] == pytest.approx(gini_pairs(values))


def test_maintainers_reach(demo: tuple) -> None:
    conn, m, out = demo
    counted = rows(conn, f"""
        SELECT {J.format('owner')}, {J.format('hub')}, count(*),
               sum(CASE WHEN json_type(doc, '$.downloads') = 'integer'
                        THEN {J.format('downloads')} ELSE 0 END) AS dl
        FROM models WHERE {J.format('owner')} IS NOT NULL AND {J.format('owner')} != ''
        GROUP BY 1, 2 ORDER BY dl DESC, 2, 1""")
    r = m["maintainers_reach"]
    assert r["owners"] == len(counted)
    assert [(o["owner"], o["hub"], o["models"], o["downloads"])
            for o in r["top_by_downloads"]] == counted[:20]
    with (out / "maintainers.csv").open() as fh:
        assert [(x["owner"], x["hub"], int(x["models"]), int(x["downloads"]))
                for x in csv.DictReader(fh)] == counted
    assert r["gini_downloads"] == pytest.approx(gini_pairs([c[3] for c in counted]))
    assert r["gini_models"] == pytest.approx(gini_pairs([c[2] for c in counted]))


def test_unsafe_serialisation(demo: tuple) -> None:
    conn, m, _ = demo
    formats: dict[str, set[str]] = {}
    info: dict[str, tuple[str, Any]] = {}
    for _id, hub, downloads, path in rows(conn, """
            SELECT m._id, json_extract(m.doc, '$.hub'), json_extract(m.doc, '$.downloads'),
                   json_extract(f.value, '$.path')
            FROM models m, json_each(m.doc, '$.files') f"""):
        info[_id] = (hub, downloads)
        name = path.rsplit("/", 1)[-1].lower()
        if name in NOT_WEIGHTS:
            continue
        if name.endswith(PICKLE):
            formats.setdefault(_id, set()).add("pickle")
        elif name.endswith(SAFE):
            formats.setdefault(_id, set()).add("other")
    pickle_only = {i for i, f in formats.items() if f == {"pickle"}}
    u = m["unsafe_serialisation"]
    check(u, len(pickle_only), len(formats))
    assert 0 < len(pickle_only) < len(formats)
    by_hub: dict[str, list[tuple[int, str]]] = {}
    for i in formats:
        hub, downloads = info[i]
        if isinstance(downloads, int):
            by_hub.setdefault(hub, []).append((-downloads, i))
    top = [i for ranked in by_hub.values() for _, i in sorted(ranked)[:max(1, -(-len(ranked)
                                                                                // 10))]]
    check(u["popular"], len(pickle_only & set(top)), len(top))
    scanned = rows(conn, """SELECT json_array_length(doc, '$.risk.unsafe_files') FROM models
                            WHERE json_extract(doc, '$.risk.scanned_files') > 0""")
    check(u["hub_scan_unsafe"], sum(1 for (n,) in scanned if n), len(scanned))
    assert u["hub_scan_unsafe"]["numerator"] == 2  # the mock flags two pickles


def test_cross_hub(demo: tuple) -> None:
    conn, m, _ = demo
    shared = rows(conn, """
        SELECT r.value FROM models m, json_each(m.doc, '$.github_repos') r
        GROUP BY r.value HAVING count(DISTINCT json_extract(m.doc, '$.hub')) > 1 ORDER BY 1""")
    assert sorted(e["repo"] for e in m["cross_hub"]["shared_repositories"]) == [
        r for (r,) in shared]
    names = [r for (r,) in shared]
    marks = ",".join("?" * len(names)) or "NULL"
    linked = q(conn, f"""SELECT count(DISTINCT m._id) FROM models m,
                         json_each(m.doc, '$.github_repos') r WHERE r.value IN ({marks})""",
               *names)
    check(m["cross_hub"], linked,
          q(conn, "SELECT count(*) FROM models WHERE json_array_length(doc, '$.github_repos') > 0"))
