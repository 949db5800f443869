"""The real ONNX_HUB_MANIFEST.json (184 entries) through the parser, the normalising
pipeline and the schema; assertions are on real values."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ptmspiders.github import RepoRef
from ptmspiders.items import ModelItem, to_doc
from ptmspiders.parsers import onnx_zoo as p
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error
from tests.conftest import FIXTURES

pytestmark = pytest.mark.conformance

REPO = RepoRef.parse("onnx/models", "main")


@pytest.fixture
def manifest(hubdata: Path) -> bytes:
    return (hubdata / "onnx_model_zoo" / "ONNX_HUB_MANIFEST.json").read_bytes()


@pytest.fixture
def items(manifest: bytes) -> dict[str, ModelItem]:
    found, rejects = p.parse_manifest(manifest, repo=REPO, path=p.MANIFEST, blob_sha=None,
                                      source_url=None, seen_at="2025-01-01T00:00:00Z")
    assert rejects == []
    out = {}
    for item in found:
        normalize_model(item)
        assert schema_error("model", to_doc(item)) is None, item._id
        out[item._id] = item
    return out


def test_one_document_per_entry(items):
    assert len(items) == 184
    assert len({i.name for i in items.values()}) == 116  # names repeat across opsets
    assert all(i.libraries == ["onnx"] and i.extra["opset_version"] for i in items.values())
    assert sum(len(i.files) == 2 for i in items.values()) == 184
    assert sum("extra_ports" in i.extra for i in items.values()) == 67
    assert sum(i.extra["io_ports"] is None for i in items.values()) == 22


def test_real_values(items):
    bert = items["onnx_zoo:validated/text/machine_comprehension/bert-squad/model/bertsquad-10.onnx"]
    assert bert.name == "BERT-Squad"
    assert bert.extra["opset_version"] == 10 and bert.extra["onnx_version"] == "1.5"
    assert bert.files[0] == {
        "path": "validated/text/machine_comprehension/bert-squad/model/bertsquad-10.onnx",
        "size": 435852734,
        "sha256": "5945dee6478abdab2d5e4ce3868b4d969741e3dad2134cc669da65a4f092755b"}
    assert bert.files[1]["sha256"] == (
        "0ff18af268a891e7de390c5476191084e95eafba2763a69091c83ced7030c8b2")
    assert bert.files[1]["size"] == 403398451
    assert bert.tasks == ["question-answering"]
    assert bert.tags == ["text", "machine comprehension", "bert-squad"]
    inputs = bert.extra["io_ports"]["inputs"]
    assert inputs[1] == {"name": "segment_ids:0", "shape": ["unk__493", 256],
                         "type": "tensor(int64)"}
    tasks = Counter(t for i in items.values() for t in i.tasks)
    assert tasks["image-classification"] == 119
    assert tasks["object-detection"] == 33
    versions = Counter(i.extra["onnx_version"] for i in items.values())
    assert versions["1.9"] == 35 and versions["1.2.1"] == 16


def test_project_fixture_uses_the_real_entry_shape(manifest):
    real = json.loads(manifest)
    real_keys = {frozenset(e) for e in real}
    real_meta = {frozenset(e["metadata"]) for e in real}
    ours = json.loads((FIXTURES / "github/onnx/models/main/ONNX_HUB_MANIFEST.json").read_text())
    valid = [e for e in ours if isinstance(e, dict) and "model_path" in e]
    assert valid and all(frozenset(e) in real_keys for e in valid)
    assert all(any(frozenset(e["metadata"]) <= m for m in real_meta) for e in valid)
