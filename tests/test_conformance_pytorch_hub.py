"""Every real PyTorch Hub catalogue file in ../shared/hubdata goes through the parser, the
normalising pipeline and the schema; assertions are on real values."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptmspiders.github import git_blob_sha
from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import ModelItem, to_doc
from ptmspiders.parsers import pytorch_hub as p
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error

pytestmark = pytest.mark.conformance


@pytest.fixture
def items(hubdata: Path) -> dict[str, ModelItem]:
    out = {}
    for f in sorted((hubdata / "pytorch_hub" / "models").glob("*.md")):
        body = f.read_bytes()
        item = normalize_model(p.parse_entry(body, path=f.name, blob_sha=git_blob_sha(body),
                                             source_url=None, seen_at="2025-01-01T00:00:00Z"))
        assert schema_error("model", to_doc(item)) is None, f.name
        out[item.hub_id] = item
    return out


def test_every_real_entry_parses(items):
    assert set(items) == {
        "facebookresearch_pytorchvideo_slowfast", "huggingface_pytorch-transformers",
        "hustvl_yolop", "pytorch_vision_resnet", "simplenet", "snakers4_silero-vad_vad"}
    for item in items.values():
        assert item._id == f"pytorch_hub:{item.hub_id}"
        assert item.title and item.description and item.github_repos
        assert item.extra["entrypoints"], item.hub_id
        assert len(item.extra["blob_sha"]) == 40


def test_real_values(items):
    resnet = items["pytorch_vision_resnet"]
    assert resnet.title == "ResNet" and resnet.owner == "pytorch"
    assert resnet.github_repos == ["pytorch/vision"]  # github-link points at a file
    assert resnet.extra["pinned_ref"] == "v0.10.0"
    assert resnet.extra["entrypoints"] == ["resnet18", "resnet34", "resnet50", "resnet101",
                                           "resnet152"]
    assert resnet.tags == ["vision", "scriptable"]
    assert "arxiv:1512.03385" in resnet.papers

    hf = items["huggingface_pytorch-transformers"]  # github-link ends in .git
    assert hf.github_repos == ["huggingface/transformers", "huggingface/pytorch-transformers"]
    assert {"tokenizer", "model", "modelForCausalLM"} <= set(hf.extra["entrypoints"])
    assert hf.raw["order"] == 10

    yolop = items["hustvl_yolop"]  # CRLF line endings
    assert yolop.title == "YOLOP" and yolop.github_repos == ["hustvl/yolop"]
    assert yolop.extra["entrypoints"] == ["yolop"]

    slowfast = items["facebookresearch_pytorchvideo_slowfast"]  # curly quotes, trailing spaces
    assert slowfast.extra["accelerator"] == "cuda-optional"
    assert slowfast.description == "SlowFast networks pretrained on the Kinetics 400 dataset"
    assert slowfast.raw["image"] == "slowfast.png"

    simplenet = items["simplenet"]  # outside the owner_repo_title naming rule
    assert simplenet.owner == "coderx7"
    assert simplenet.github_repos == ["coderx7/simplenet_pytorch"]
    assert simplenet.extra["pinned_ref"] == "v1.0.0"
    assert len(simplenet.extra["entrypoints"]) == 8

    vad = items["snakers4_silero-vad_vad"]  # keyword arguments over several lines
    assert vad.extra["entrypoints"] == ["silero_vad"]
    assert vad.tags == ["audio", "scriptable"]


def test_the_submission_template_is_malformed_not_a_crash(hubdata):
    # Its front matter holds an HTML comment line: neither YAML nor key/value lines.
    body = (hubdata / "pytorch_hub" / "docs" / "template.md").read_bytes()
    with pytest.raises(BadResponse) as exc:
        p.parse_entry(body, path="template.md", blob_sha=None, source_url=None,
                      seen_at="2025-01-01T00:00:00Z")
    assert exc.value.reason == "bad_front_matter"
    assert not p.is_entry_path("docs/template.md")
