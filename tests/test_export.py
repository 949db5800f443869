"""``ptm export``: JSONL, Parquet (read back with pyarrow) and PTMTorrent's unified schema."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from ptmspiders import cli
from ptmspiders.export import paper_doi, ptmtorrent_record, write_parquet, write_ptmtorrent
from ptmspiders.stores import Store, open_store
from tests.test_cli import Kept, fill

# PTMTorrent's ptmSchema.json: required keys and the types of every key it defines.
PTMTORRENT_REQUIRED = {"id", "ModelHub", "ModelName", "ModelOwner", "ModelURL", "ModelOwnerURL",
                       "LatestGitCommitSHA"}
PTMTORRENT_TYPES: dict[str, type] = {
    "id": int, "ModelHub": dict, "ModelName": str, "ModelOwner": str, "ModelURL": str,
    "ModelOwnerURL": str, "Datasets": list, "ModelPaperDOIs": list, "LatestGitCommitSHA": str,
    "ModelTask": str, "ModelArchitecture": str}
MODELHUB_TYPES = {"ModelHubName": str, "ModelHubURL": str, "MetadataFilePath": str,
                  "MetadataObjectID": int}
DATASET_REQUIRED = {"DatasetName", "DatasetOwner", "DatasetURL", "DatasetOwnerURL"}


def check_ptmtorrent(record: dict[str, Any]) -> None:
    assert PTMTORRENT_REQUIRED <= set(record) <= set(PTMTORRENT_TYPES)
    for key, value in record.items():
        assert isinstance(value, PTMTORRENT_TYPES[key]), key
    assert {k: type(v) for k, v in record["ModelHub"].items()} == MODELHUB_TYPES
    for ds in record.get("Datasets", []):
        assert set(ds) == DATASET_REQUIRED and all(isinstance(v, str) for v in ds.values())
    assert all(isinstance(d, str) for d in record.get("ModelPaperDOIs", []))


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    fill(open_store(uri)).close()
    return uri


def test_parquet_reads_back_with_one_row_per_model(sqlite_uri: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models.parquet"
    assert cli.main(["--store", sqlite_uri, "export", "--format", "parquet",
                     "--batch-size", "2", str(out)]) == 0
    assert "exported 6 models" in capsys.readouterr().err
    table = pq.read_table(out)
    assert table.num_rows == 6
    assert pq.ParquetFile(out).metadata.num_row_groups == 3  # streamed in batches of 2
    rows = {r["_id"]: r for r in table.to_pylist()}
    assert set(rows) == {f"huggingface:o{n % 2}/m{n}" for n in (0, 1, 2, 4, 5)} | {
        "tfhub:o1/m3"}
    m2 = rows["huggingface:o0/m2"]
    assert m2["tags"] == ["t", "bert", "T2"] and m2["gated"] is True and m2["downloads"] == 20
    assert json.loads(m2["files"])[0] == {"path": "README.md", "size": 10}
    assert rows["huggingface:o1/m1"]["removed_at"] == "2026-02-01T00:10Z"
    assert rows["huggingface:o1/m1"]["downloads"] is None  # 15.5 is not an integer count
    assert str(table.schema.field("downloads").type) == "int64"
    assert str(table.schema.field("tags").type) == "list<element: string>"


def test_hub_filter_and_jsonl(sqlite_uri: str, tmp_path: Path) -> None:
    out = tmp_path / "tfhub.jsonl"
    assert cli.main(["--store", sqlite_uri, "export", "--format", "jsonl", "--hub", "tfhub",
                     str(out)]) == 0
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["_id"] for d in docs] == ["tfhub:o1/m3"]
    out2 = tmp_path / "f.jsonl"
    assert cli.main(["--store", sqlite_uri, "export", "--format", "jsonl", "--filter",
                     '{"downloads": {"$gte": 40}}', "--hub", "huggingface", str(out2)]) == 0
    assert len(out2.read_text().splitlines()) == 2


@pytest.mark.parametrize(("fmt", "name"), [("jsonl", "ptm.sqlite"), ("parquet", "ptm.sqlite"),
                                           ("jsonl", "ptm.sqlite-wal"), ("jsonl", "link")])
def test_export_refuses_to_overwrite_the_store_it_reads(
        sqlite_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str,
        name: str) -> None:
    """Before, ``ptm export ... ptm.sqlite`` truncated the store it was reading: all lost."""
    (tmp_path / "link").symlink_to(tmp_path / "ptm.sqlite")
    with open_store(sqlite_uri) as store:  # a writer keeps the WAL file there
        store.upsert("models", [{"_id": "tfhub:o9/m9", "hub": "tfhub"}])
        before = (tmp_path / "ptm.sqlite").read_bytes()
        assert cli.main(["--store", sqlite_uri, "export", "--format", fmt,
                         str(tmp_path / name)]) == 2
        assert (tmp_path / "ptm.sqlite").read_bytes() == before
    assert capsys.readouterr().err == (f"ptm: error: {tmp_path / name} is a file of the store "
                                       "itself: export to another file\n")
    with open_store(sqlite_uri) as store:
        assert store.count("models") == 7


@pytest.mark.parametrize("backend", ["sqlite", "mongomock"])
def test_ptmtorrent_export_has_the_unified_schema(backend: str, sqlite_uri: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "mongomock":
        mongo: Store = open_store("mongomock://localhost/ptm_export_test")
        for name in ("models", "owners", "crawls", "changes"):
            mongo.delete(name, mongo.ids(name))
        fill(mongo)
        monkeypatch.setattr(cli, "open_existing", lambda uri: Kept(mongo))
    out = tmp_path / "ptmtorrent.json"
    assert cli.main(["--store", sqlite_uri, "export", "--format", "ptmtorrent", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["id"] for r in records] == list(range(1, 7))
    for r in records:
        check_ptmtorrent(r)
    first = records[0]
    assert first["ModelHub"]["ModelHubName"] == "Hugging Face"
    assert first["ModelName"] == "m0" and first["ModelOwner"] == "o0"


def test_ptmtorrent_record_mapping() -> None:
    doc = {"_id": "huggingface:acme/bert", "hub": "huggingface", "hub_id": "acme/bert",
           "name": "bert", "owner": "acme", "url": "https://huggingface.co/acme/bert",
           "owner_url": "https://huggingface.co/acme", "latest_commit_sha": "abc",
           "tasks": ["fill-mask"], "architectures": ["BertForMaskedLM"],
           "papers": ["arxiv:1810.04805", "doi:10.57967/hf/0001"],
           "datasets": ["wikipedia", "allenai/c4"],
           "crawl": {"source_url": "https://huggingface.co/api/models?limit=1000"}}
    record = ptmtorrent_record(doc, 7)
    check_ptmtorrent(record)
    assert record["ModelHub"] == {"ModelHubName": "Hugging Face",
                                  "ModelHubURL": "https://huggingface.co",
                                  "MetadataFilePath": "https://huggingface.co/api/models?"
                                                      "limit=1000",
                                  "MetadataObjectID": 7}
    assert record["ModelPaperDOIs"] == ["10.48550/arXiv.1810.04805", "10.57967/hf/0001"]
    assert record["Datasets"] == [
        {"DatasetName": "wikipedia", "DatasetOwner": "",
         "DatasetURL": "https://huggingface.co/datasets/wikipedia", "DatasetOwnerURL": ""},
        {"DatasetName": "c4", "DatasetOwner": "allenai",
         "DatasetURL": "https://huggingface.co/datasets/allenai/c4",
         "DatasetOwnerURL": "https://huggingface.co/allenai"}]
    assert record["ModelTask"] == "fill-mask"
    assert record["ModelArchitecture"] == "BertForMaskedLM"
    bare = ptmtorrent_record({"hub": "modelzoo", "name": "x", "datasets": ["ImageNet"]}, 1)
    check_ptmtorrent(bare)
    assert "ModelTask" not in bare and bare["LatestGitCommitSHA"] == ""
    assert bare["Datasets"][0]["DatasetURL"] == ""
    assert paper_doi("nope") is None


def test_streaming_writers_handle_empty_input(tmp_path: Path) -> None:
    buf = io.BytesIO()
    assert write_ptmtorrent(iter([]), buf) == 0
    assert json.loads(buf.getvalue()) == []
    assert write_parquet(iter([]), tmp_path / "e.parquet") == 0
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0


def test_progress_bar_on_request(sqlite_uri: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--store", sqlite_uri, "export", "--format", "jsonl", "--progress",
                     str(tmp_path / "p.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "6/6" in err and "model" in err
