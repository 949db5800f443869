"""Every real Hub body recorded in ../shared/hubdata/huggingface goes through the parser,
the normaliser and the schema (skipped where the recordings are absent)."""

import json

import pytest

from ptmspiders.items import to_doc
from ptmspiders.parsers import huggingface as hf
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error

pytestmark = pytest.mark.conformance
EP = "https://huggingface.co"


def recorded(hubdata):
    folder = hubdata / "huggingface" / "model_info"
    out = {}
    for meta_path in sorted(folder.glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        body = (folder / meta["response"]["body_file"]).read_bytes()
        out[meta_path.name[: -len(".meta.json")]] = (meta, body)
    return out


def test_every_recorded_200_body_is_a_valid_document(hubdata):
    bodies = recorded(hubdata)
    ok = [(k, m, b) for k, (m, b) in bodies.items() if m["response"]["status"]["code"] == 200]
    assert len(ok) >= 6
    for key, meta, body in ok:
        item = normalize_model(hf.parse_model_detail(body, endpoint=EP,
                                                     source_url=meta["request"]["uri"],
                                                     seen_at="2026-01-01T00:00:00Z"))
        assert schema_error("model", to_doc(item)) is None, key
        assert item.raw == json.loads(body)


def _item(hubdata, key):
    _, body = recorded(hubdata)[key]
    return normalize_model(hf.parse_model_detail(body, endpoint=EP, source_url=None,
                                                 seen_at="2026-01-01T00:00:00Z"))


def test_real_values_bert(hubdata):
    item = _item(hubdata, "google-bert__bert-base-uncased")
    assert item._id == "huggingface:google-bert/bert-base-uncased"
    assert item.owner == "google-bert"
    assert item.created_at is None  # 2022-03-02T23:29:04.000Z placeholder
    assert item.license == "apache-2.0"
    assert item.papers == ["arxiv:1810.04805"]
    assert item.datasets == ["bookcorpus", "wikipedia"]
    assert item.architectures == ["BertForMaskedLM"]
    assert item.latest_commit_sha == "86b5e0934494bd15c9632b12f734a8a67f723594"
    assert {"transformers", "pytorch", "tensorflow", "onnx"} <= set(item.libraries)
    assert item.downloads == 72376843 and item.likes == 2065


def test_real_values_gated_llama(hubdata):
    item = _item(hubdata, "meta-llama__Llama-3.1-8B-Instruct")
    assert item.gated is True and item.gated_mode == "manual"
    assert item.license == "llama3.1"
    assert item.created_at == "2024-07-18T08:56:00.000Z"
    assert "meta-llama/Meta-Llama-3.1-8B" in item.base_models
    assert "meta-llama/llama-models" in item.github_repos


def test_real_values_without_safetensors(hubdata):
    sd = _item(hubdata, "stabilityai__stable-diffusion-2-1")
    assert sd.libraries[0] == "diffusers" and sd.parameters is None
    assert sd.license == "openrail++"
    sep = _item(hubdata, "speechbrain__sepformer-wham")
    assert sep.libraries == ["speechbrain"] and sep.created_at is None  # ...05.000Z placeholder


def test_expand_answer_has_only_the_asked_field(hubdata):
    item = _item(hubdata, "meta-llama__Llama-3.1-8B-Instruct__expand_inferenceProviderMapping")
    assert item.hub_id == "meta-llama/Llama-3.1-8B-Instruct"
    assert item.downloads is None and item.tags == []


def test_recorded_redirects_are_relative_307s(hubdata):
    redirects = {k: m for k, (m, _) in recorded(hubdata).items() if "307" in k}
    assert len(redirects) == 2
    for meta in redirects.values():
        assert meta["response"]["status"]["code"] == 307
        assert meta["response"]["headers"]["Location"][0].startswith("/api/models/")
