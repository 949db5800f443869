"""``ptm report`` on a store of known documents: every number checked against a hand count,
on SQLite and MongoDB alike, and the page opened in headless Chromium."""

from __future__ import annotations

import csv
import html
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ptmspiders.cli import main as ptm
from ptmspiders.report import build_report, compute_from_store
from ptmspiders.report.metrics import gini, top_k
from ptmspiders.report.render import public
from ptmspiders.stores import Store, open_store

CRAWL = {"first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-01T00:00:00Z",
         "source_url": None}


def model(_id: str, **kw: Any) -> dict[str, Any]:
    hub, hub_id = _id.split(":", 1)
    doc = {"_id": _id, "hub": hub, "hub_id": hub_id, "name": hub_id.split("/")[-1],
           "owner": hub_id.split("/")[0] if "/" in hub_id else None, "tasks": [], "tags": [],
           "datasets": [], "github_repos": [], "license": None, "downloads": None,
           "likes": None, "files": [], "card": {"present": None, "has_model_index": False},
           "crawl": CRAWL}
    doc.update(kw)
    return doc


def files(*paths: str) -> list[dict[str, Any]]:
    return [{"path": p, "size": 1, "sha256": None} for p in paths]


MODELS = [
    model("huggingface:org-a/m1", downloads=1000, likes=10, tasks=["fill-mask"],
          license="apache-2.0", datasets=["wiki"], github_repos=["org-a/code"],
          files=files("model.safetensors", "pytorch_model.bin", "README.md"),
          card={"present": True, "has_model_index": True, "length": 100,
                "states_license": True, "states_datasets": False,
                "states_limitations": False, "states_evaluation": False}),
    model("huggingface:org-a/m2", downloads=500, tasks=["fill-mask", "text-classification"],
          base_models=["org-a/m1"], datasets=["wiki", "books"], files=files("pytorch_model.bin"),
          card={"present": True, "has_model_index": False, "length": 50,
                "states_license": False, "states_datasets": False,
                "states_limitations": True, "states_evaluation": False}),
    model("huggingface:org-b/m3", downloads=5000, base_models=["org-a/m1"],
          github_repos=["shared/repo"], files=files("x.ckpt", "y.pkl"),
          card={"present": False, "has_model_index": False},
          risk={"weight_formats": ["pickle"], "pickle_only": True, "scanned_files": 2,
                "unsafe_files": ["y.pkl"]}),
    model("huggingface:user-u/m4", downloads=0, tasks=["text-generation"],
          base_models=["org-a/m1", "other/base"], files=files("m.gguf"),
          risk={"weight_formats": ["gguf"], "pickle_only": False, "scanned_files": 1,
                "unsafe_files": []}),
    model("huggingface:org-c/m5", tasks=["text-generation"],
          card={"present": True, "has_model_index": True}),
    model("pytorch_hub:pt-owner/p1", license="mit", github_repos=["shared/repo"],
          files=files("weights.pth"), card={"present": True, "has_model_index": False}),
    model("modelzoo:z1", likes=50, github_repos=["shared/repo", "other/x"]),
    model("kaggle:kag-org/k1", downloads=30, files=files("model.keras")),
]
OWNERS = [
    {"_id": "huggingface:org-a", "hub": "huggingface", "name": "org-a", "type": "org",
     "is_verified": True, "crawl": CRAWL},
    {"_id": "huggingface:org-b", "hub": "huggingface", "name": "org-b", "type": "org",
     "is_verified": False, "crawl": CRAWL},
    {"_id": "huggingface:org-c", "hub": "huggingface", "name": "org-c", "type": "org",
     "is_verified": True, "crawl": CRAWL},
    {"_id": "huggingface:org-d", "hub": "huggingface", "name": "org-d", "type": "org",
     "is_verified": None, "crawl": CRAWL},
    {"_id": "huggingface:user-u", "hub": "huggingface", "name": "user-u", "type": "user",
     "is_verified": False, "crawl": CRAWL},
    {"_id": "kaggle:kag-org", "hub": "kaggle", "name": "kag-org", "type": "org",
     "is_verified": False, "crawl": CRAWL},
]


def commit(model_id: str, n: int, signature: str, signed: bool | None,
           method: str = "git") -> dict[str, Any]:
    sha = f"{n:040x}"
    return {"_id": f"{model_id}@{sha}", "hub": "huggingface", "model": model_id, "sha": sha,
            "date": None, "authors": [], "title": f"c{n}", "signature": signature,
            "signed": signed, "signer": None, "signature_method": method, "crawl": CRAWL}


COMMITS = [
    commit("huggingface:org-a/m1", 1, "good", True),
    commit("huggingface:org-a/m1", 2, "unsigned", False),
    commit("huggingface:org-b/m3", 3, "unknown", True),
    commit("huggingface:org-a/m2", 4, "unsigned", False),
    commit("huggingface:org-c/m5", 5, "unknown", None, method="api"),
    commit("huggingface:user-u/m4", 6, "bad", True),
]


def fill(store: Store) -> Store:
    store.upsert("models", [dict(d) for d in MODELS])
    store.upsert("owners", [dict(d) for d in OWNERS])
    store.upsert("commits", [dict(d) for d in COMMITS])
    return store


def s(value: Any, numerator: int, denominator: int) -> None:
    """A share entry equals the hand count."""
    assert (value["numerator"], value["denominator"]) == (numerator, denominator)
    assert value["value"] == (numerator / denominator if denominator else None)
    assert value["definition"]


def test_every_number_matches_a_hand_count(store: Store) -> None:
    m, counts = compute_from_store(fill(store))
    assert counts == {"models": 8, "owners": 6, "commits": 6, "packages": 0}

    v = m["verified_orgs"]  # orgs with a known status: a, b, c (hf), kag-org
    s(v, 2, 4)
    s(v["per_hub"]["huggingface"], 2, 3)
    s(v["per_hub"]["kaggle"], 0, 1)
    assert v["documents"] == 6

    c = m["signed_commits"]  # the api commit has no known signing
    s(c["commits"], 3, 5)
    s(c["models"], 3, 4)
    assert c["verified_orgs_signing"]["value"] == 1
    assert c["verified_orgs_signing"]["orgs"] == ["org-a"]
    assert c["verified_orgs_signing"]["denominator"] == 2
    assert c["statuses"] == {"good": 1, "bad": 1, "unsigned": 2, "unknown": 2}
    assert c["methods"] == {"api": 1, "git": 5} and c["documents"] == 6

    mi = m["model_index"]  # hf models only: m1 and m5 of five
    s(mi, 2, 5)
    assert mi["documents"] == 5
    s(mi["per_task"]["fill-mask"], 1, 2)
    s(mi["per_task"]["text-classification"], 0, 1)
    s(mi["per_task"]["text-generation"], 1, 2)
    s(mi["per_task"]["(none)"], 0, 1)

    cd = m["cards"]  # presence known: m1 m2 m3 m5 p1
    s(cd, 4, 5)
    s(cd["per_hub"]["huggingface"], 3, 4)
    s(cd["per_hub"]["pytorch_hub"], 1, 1)
    s(cd["popular_without_card"], 1, 1)  # top 10% of m1 m2 m3 by downloads: m3
    assert cd["popular_without_card"]["models"] == ["huggingface:org-b/m3"]
    s(cd["states"]["license"], 1, 2)  # read cards (with a length): m1 m2
    s(cd["states"]["limitations"], 1, 2)
    s(cd["states"]["datasets"], 0, 2)
    s(cd["states"]["evaluation"], 0, 2)

    mf = m["missing_fields"]
    assert mf["denominator"] == 8
    s(mf["fields"]["license"], 6, 8)
    s(mf["fields"]["card"], 4, 8)
    s(mf["fields"]["model_index"], 6, 8)
    s(mf["fields"]["owner"], 1, 8)
    s(mf["fields"]["downloads"], 3, 8)  # m4's 0 is a count, not a gap
    s(mf["fields"]["github_repos"], 4, 8)
    s(mf["fields"]["base_models"], 5, 8)
    s(mf["fields"]["description"], 8, 8)
    s(mf["per_hub"]["huggingface"]["fields"]["license"], 4, 5)
    s(mf["per_hub"]["modelzoo"]["fields"]["likes"], 0, 1)

    d = m["dependencies"]
    assert d["base_models"] == [{"name": "org-a/m1", "models": 3},
                                {"name": "other/base", "models": 1}]
    assert d["datasets"] == [{"name": "wiki", "models": 2}, {"name": "books", "models": 1}]
    s(d["with_base_model"], 3, 8)
    s(d["with_dataset"], 2, 8)

    p = m["popularity"]["per_hub"]
    assert set(p) == {"huggingface", "kaggle", "modelzoo"}  # pytorch_hub has no counts
    hf = p["huggingface"]
    assert (hf["measure"], hf["models"], hf["total"]) == ("downloads", 4, 6500)
    s(hf["top1"], 5000, 6500)
    s(hf["top10"], 5000, 6500)
    # ascending 0, 500, 1000, 5000: 2*(0+2*500+3*1000+4*5000)/(4*6500) - 5/4
    assert hf["gini"] == pytest.approx(48000 / 26000 - 1.25)
    assert p["modelzoo"]["measure"] == "likes" and p["modelzoo"]["total"] == 50
    assert p["kaggle"]["gini"] == 0

    r = m["maintainers_reach"]
    assert r["owners"] == 6 and r["documents"] == 7  # z1 has no owner
    assert r["top_by_downloads"][:3] == [
        {"owner": "org-b", "hub": "huggingface", "models": 1, "downloads": 5000},
        {"owner": "org-a", "hub": "huggingface", "models": 2, "downloads": 1500},
        {"owner": "kag-org", "hub": "kaggle", "models": 1, "downloads": 30}]
    assert r["top_by_models"][0]["owner"] == "org-a"
    s(r["top_owners_share"], 5000, 6530)
    assert r["gini_downloads"] == pytest.approx(2 * 37620 / (6 * 6530) - 7 / 6)
    assert r["gini_models"] == pytest.approx(2 * 27 / (6 * 7) - 7 / 6)

    u = m["unsafe_serialisation"]  # with weights: m1 m2 m3 m4 p1 k1; pickle only: m2 m3 p1
    s(u, 3, 6)
    s(u["per_hub"]["huggingface"], 2, 4)
    s(u["per_hub"]["pytorch_hub"], 1, 1)
    s(u["per_hub"]["kaggle"], 0, 1)
    s(u["popular"], 1, 2)  # top of hf (m3) and of kaggle (k1)
    assert u["formats"] == {"gguf": 1, "keras": 1, "pickle": 4, "safetensors": 1}
    s(u["hub_scan_unsafe"], 1, 2)
    ps = u["package_scan"]  # no packages stored: said so, not 0%
    assert ps["packages"] == 0 and ps["unsafe"]["value"] is None and "No scanned" in ps["note"]
    assert ps["agreement"]["models"] == 0

    x = m["cross_hub"]
    s(x, 3, 4)
    assert x["repositories"] == 3
    assert x["shared_repositories"] == [{
        "repo": "shared/repo", "hubs": ["huggingface", "modelzoo", "pytorch_hub"],
        "models": ["huggingface:org-b/m3", "modelzoo:z1", "pytorch_hub:pt-owner/p1"]}]


def risky(_id: str, hub_unsafe: list[str] | None) -> dict[str, Any]:
    """A model the hub scanned (``hub_unsafe``: the files it flags) or did not (``None``)."""
    risk = None if hub_unsafe is None else {"weight_formats": ["pickle"], "pickle_only": True,
                                            "scanned_files": 1, "unsafe_files": hub_unsafe}
    return model(_id, files=files("pytorch_model.bin"), risk=risk)


def package(_id: str, *statuses: str) -> dict[str, Any]:
    """A package document as the downloader stores it: its files' scans and their summary."""
    from ptmspiders.packages.scan import summarise

    scans = [{"status": st, "globals": [], "dangerous": [], "scanner": "picklescan 1.0.5"}
             for st in statuses]
    return {"_id": _id, "files": [{"path": f"f{n}.bin", "scan": sc}
                                  for n, sc in enumerate(scans)],
            "scan": summarise(scans)}


def test_package_scan_beside_the_hub_scan(store: Store, tmp_path: Path) -> None:
    hf = "huggingface:o/"
    store.upsert("models", [risky(hf + "a", ["x.bin"]), risky(hf + "b", []),
                            risky(hf + "c", []), risky(hf + "d", ["x.bin"]),
                            risky(hf + "e", []), risky(hf + "f", None), risky(hf + "g", []),
                            risky("kaggle:k/h", [])])
    store.upsert("packages", [
        package(hf + "a", "safe", "unsafe"),      # both flag it
        package(hf + "b", "safe", "safe"),        # neither does
        package(hf + "c", "suspicious"),          # only ours (in the hub's sense of a flag)
        package(hf + "d", "safe"),                # only the hub's
        package(hf + "e", "safe", "error"),       # ours inconclusive
        package(hf + "f", "unsafe"),              # the hub did not scan it
        package(hf + "g"),                        # nothing scanned: not a scanned package
        package("huggingface:gone/z", "unsafe"),  # no such model: not read
        package("kaggle:k/h", "unsafe"),          # another hub's model
    ])
    m, counts = compute_from_store(store, ["huggingface"])
    assert counts["packages"] == 7  # a..g
    ps = m["unsafe_serialisation"]["package_scan"]
    assert ps["packages"] == 6 and "note" not in ps
    s(ps["unsafe"], 2, 6)   # a, f
    s(ps["flagged"], 3, 6)  # a, c, f
    assert ps["with_errors"] == 1
    assert {k: v for k, v in ps["agreement"].items() if k != "definition"} == {
        "models": 4, "agree_unsafe": 1, "agree_safe": 1, "only_ours": 1, "only_hub": 1,
        "inconclusive": 1}
    build_report(store, tmp_path / "r", ["huggingface"])
    with (tmp_path / "r" / "package_scan.csv").open() as fh:
        rows = {r["measure"]: (r["models"], r["of"]) for r in csv.DictReader(fh)}
    assert rows["unsafe (our scan)"] == ("2", "6")
    assert rows["agreement with the hub: only hub"] == ("1", "4")
    page = html.unescape((tmp_path / "r" / "index.html").read_text())
    assert "only ours 1, only the hub's 1" in page


def test_both_stores_give_the_same_numbers(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/a.sqlite") as a, \
            open_store("mongomock://localhost/ptm_report_same") as b:
        ma, _ = compute_from_store(fill(a))
        mb, _ = compute_from_store(fill(b))
    assert json.dumps(public(ma), sort_keys=True) == json.dumps(public(mb), sort_keys=True)


def test_hub_filter(store: Store) -> None:
    m, counts = compute_from_store(fill(store), ["huggingface"])
    assert counts == {"models": 5, "owners": 5, "commits": 6, "packages": 0}
    s(m["verified_orgs"], 2, 3)
    assert m["cross_hub"]["shared_repositories"] == []


def test_gini_and_top_k() -> None:
    assert gini([]) is None and gini([0, 0]) is None
    assert gini([5, 5, 5]) == 0
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)
    assert [top_k(n) for n in (0, 1, 10, 11, 100)] == [0, 1, 1, 2, 10]


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    db = f"sqlite:///{tmp_path}/ptm.sqlite"
    with open_store(db) as st:
        fill(st)
    out = tmp_path / "report"
    assert ptm(["--store", db, "report", "--out", str(out)]) == 0
    return out


def test_cli_writes_html_json_and_csvs(report_dir: Path, tmp_path: Path) -> None:
    data = json.loads((report_dir / "metrics.json").read_text())
    assert list(data) == ["meta", "verified_orgs", "signed_commits", "model_index", "cards",
                          "missing_fields", "dependencies", "popularity", "maintainers_reach",
                          "unsafe_serialisation", "cross_hub"]
    assert data["meta"]["documents"] == {"models": 8, "owners": 6, "commits": 6,
                                         "packages": 0}
    assert data["model_index"]["value"] == 0.4
    assert "_values" not in json.dumps(data)  # bulk data stays in the CSVs
    with (report_dir / "missing_fields.csv").open() as fh:
        rows = {(r["hub"], r["field"]): r for r in csv.DictReader(fh)}
    assert rows[("all", "license")]["missing"] == "6" and rows[("all", "license")]["models"] == "8"
    with (report_dir / "maintainers.csv").open() as fh:
        owners = list(csv.DictReader(fh))
    assert len(owners) == 6 and owners[0]["owner"] == "org-b"
    page = (report_dir / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    assert "http://" not in page and "https://" not in page  # opens offline
    for title in ("Verified organisations", "Signed commits", "Cross-hub"):
        assert title in page
    assert "no downloaded packages are stored" in page
    assert (report_dir / "package_scan.csv").exists()
    db = f"sqlite:///{tmp_path}/ptm.sqlite"
    assert ptm(["--store", db, "report", "--out", str(tmp_path / "x"), "--hub", "nohub"]) == 2


def test_cli_refuses_an_empty_out_and_escapes_a_hub_name(
        report_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path}/ptm.sqlite"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    # --out '' wrote the report into the current folder.
    assert ptm(["--store", db, "report", "--out", ""]) == 2
    assert capsys.readouterr().err == "ptm: error: --out is empty: name the report's folder\n"
    assert list((tmp_path / "cwd").iterdir()) == []
    # A hub name's terminal escape was printed as is.
    assert ptm(["--store", db, "report", "--out", str(tmp_path / "x"), "--hub", "\x1b[2J"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.startswith("ptm: error: unknown hub(s): \\x1b[2J;")


def test_empty_store_still_renders(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/empty.sqlite") as st:
        m = build_report(st, tmp_path / "out")
    assert m["verified_orgs"]["value"] is None
    assert (tmp_path / "out" / "index.html").read_text().count("data:image/png") == 6


HOSTILE = "<script>alert(1)</script>"


def test_hub_text_is_escaped_on_the_page(store: Store, tmp_path: Path) -> None:
    """Model ids and owner names come from the hubs: on the page they are text, never markup."""
    fill(store)
    hub_id = f"{HOSTILE}/m'1\"&"
    store.upsert("models", [model(f"huggingface:{hub_id}", owner=HOSTILE, downloads=7,
                                  base_models=[f"<img src=x onerror=alert(2)>/{HOSTILE}"],
                                  github_repos=["shared/repo"])])
    build_report(store, tmp_path / "r")
    page = Page()
    page.feed((tmp_path / "r" / "index.html").read_text())
    assert "script" not in page.tags and not any("onerror" in a for a in page.attrs)
    assert [t for t in page.tags if t == "img"] == ["img"] * 6  # the figures only
    assert HOSTILE in page.cells  # the owner, in maintainers.csv
    assert any(f"huggingface:{hub_id}" in c.split() for c in page.cells)  # in cross_hub.csv
    assert f"<img src=x onerror=alert(2)>/{HOSTILE}" in page.cells  # a base model


class Page(HTMLParser):
    """The tags, attribute names and table cell texts of a page, as a browser parses them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]
        self._in_cell = tag == "td"
        if self._in_cell:
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_report_renders_in_headless_chromium(report_dir: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto((report_dir / "index.html").as_uri())
            page.wait_for_load_state("load")
            sizes = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            sections = page.eval_on_selector_all("section", "s => s.map(x => x.id)")
        finally:
            browser.close()
    assert len(sizes) == 6
    assert all(done and w > 100 and h > 100 for done, w, h in sizes), sizes
    assert len(sections) == 10
    assert all(u.startswith(("file:", "data:")) for u in requests)  # nothing from the network


def test_slim_documents_give_the_numbers_of_full_ones() -> None:
    from ptmspiders.report import slim_model
    from ptmspiders.report.metrics import compute

    full = compute(MODELS, OWNERS, COMMITS)
    slim = compute([slim_model({**d, "raw": {"big": "x" * 1000}}) for d in MODELS], OWNERS,
                   COMMITS)
    assert json.dumps(public(full), sort_keys=True) == json.dumps(public(slim), sort_keys=True)
    assert "raw" not in slim_model({**MODELS[0], "raw": {"a": 1}})
