"""Weight formats and the card flags on real Hub answers (../shared/hubdata, skipped when
absent): the file names of real repositories, classified as the studies classify them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptmspiders.parsers import huggingface as hf
from ptmspiders.parsers.hf_repo import file_risk

pytestmark = pytest.mark.conformance


def recorded(hubdata: Path, name: str) -> dict:
    return json.loads((hubdata / "huggingface" / "model_info" / f"{name}.body.json").read_text())


@pytest.mark.parametrize(("name", "formats", "pickle_only"), [
    # bert ships every format, Core ML's weight.bin included (raw weights, not a pickle)
    ("google-bert__bert-base-uncased",
     ["coreml", "flax_msgpack", "hdf5", "onnx", "pickle", "safetensors"], False),
    ("meta-llama__Llama-3.1-8B-Instruct", ["pickle", "safetensors"], False),
    ("speechbrain__sepformer-wham", ["pickle"], True),  # SpeechBrain's torch.save .ckpt files
])
def test_weight_formats_of_real_repositories(hubdata: Path, name: str, formats: list[str],
                                             pickle_only: bool) -> None:
    entry = recorded(hubdata, name)
    item = hf.parse_model(entry, endpoint="https://huggingface.co", source_url=None,
                          seen_at="2025-01-01T00:00:00Z")
    risk = file_risk(item.files)
    assert risk["weight_formats"] == formats
    assert risk["pickle_only"] is pickle_only
    assert all(p.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for p in risk["pickle_files"])
    assert risk["scanned_files"] == 0  # siblings carry no security scan


def test_core_ml_weights_are_not_counted_as_pickles(hubdata: Path) -> None:
    entry = recorded(hubdata, "google-bert__bert-base-uncased")
    paths = [s["rfilename"] for s in entry["siblings"]]
    coreml = [p for p in paths if ".mlpackage/" in p and p.endswith("weight.bin")]
    assert coreml  # the real repository has them
    risk = file_risk([{"path": p} for p in paths])
    assert not set(coreml) & set(risk["pickle_files"])
    assert "pytorch_model.bin" in risk["pickle_files"]
