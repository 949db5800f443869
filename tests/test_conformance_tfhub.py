"""Every real tfhub.dev catalogue document in ../shared/hubdata (and the catalogue's official
examples) through the parser, the normalising pipeline and the schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptmspiders.items import CollectionItem, ModelItem, OwnerItem, to_doc
from ptmspiders.parsers import tfhub as p
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error

pytestmark = pytest.mark.conformance


def parse_all(folder: Path, prefix: str) -> dict[str, ModelItem | OwnerItem | CollectionItem]:
    out: dict[str, ModelItem | OwnerItem | CollectionItem] = {}
    for f in sorted(folder.rglob("*.md")):
        path = prefix + f.relative_to(folder).as_posix()
        item = p.parse_document(f.read_bytes(), path=path, blob_sha=None, source_url=None,
                                seen_at="2025-01-01T00:00:00Z")
        if isinstance(item, ModelItem):
            normalize_model(item)
        assert schema_error(item.schema_name, to_doc(item)) is None, path
        assert item._id not in out, path
        out[item._id] = item
    return out


@pytest.fixture
def docs(hubdata: Path):
    return parse_all(hubdata / "tensorflow_hub" / "assets_docs", "assets/docs/")


def test_every_real_document_is_stored_somewhere(docs):
    kinds = {i: type(d).__name__ for i, d in docs.items()}
    assert len(docs) == 10
    assert sorted(kinds.values()).count("ModelItem") == 7
    assert kinds["tfhub:google"] == kinds["tfhub:deepmind"] == "OwnerItem"
    assert kinds["tfhub:google/collections/bert/1"] == "CollectionItem"


def test_real_values(docs):
    module = docs["tfhub:google/imagenet/mobilenet_v2_100_224/classification/5"]
    assert module.model_type == "module" and module.libraries == ["tensorflow"]
    assert module.tasks == ["image-classification"]
    assert module.architectures == ["mobilenet-v2"]
    assert module.datasets == ["imagenet-ilsvrc-2012-cls"]
    assert module.extra["formats"] == ["saved_model_2"]
    assert module.papers == ["arxiv:1801.04381"]

    tfjs = docs["tfhub:google/tfjs-model/imagenet/mobilenet_v2_100_224/classification/3/default/1"]
    assert tfjs.extra["parent_model"] == "google/imagenet/mobilenet_v2_100_224/classification/3"
    assert tfjs.base_models == ["google/imagenet/mobilenet_v2_100_224/classification/3"]
    lite = docs["tfhub:tensorflow/lite-model/mobilenet_v2_1.0_224_quantized/1/default/1"]
    assert lite.libraries == ["tflite"]
    assert lite.extra["metadata"]["interactive-visualizer"] == "tflite_image_classifier"

    unet = docs["tfhub:nvidia/unet/industrial/class_1/1"]  # &zwnj; in the id line
    assert unet.hub_id == "nvidia/unet/industrial/class_1/1"
    assert unet.license == "custom" and unet.extra["fine_tunable"] is False

    esrgan = docs["tfhub:captain-pool/esrgan-tf2/1"]  # layout without models/
    assert esrgan.license == "mit" and esrgan.datasets == ["div2k"]
    assert esrgan.tasks == ["image-super-resolution"]

    yamnet = docs["tfhub:google/yamnet/classification/1"]
    assert yamnet.model_type == "placeholder"

    google = docs["tfhub:google"]
    assert google.fullname == "Google" and google.extra["homepage"] == "https://ai.google"

    bert = docs["tfhub:google/collections/bert/1"]
    assert "tensorflow/bert_en_uncased_L-12_H-768_A-12" in bert.members
    assert "google/small_bert/bert_uncased_L-2_H-128_A-2" in bert.members
    assert not any("collections" in m for m in bert.members)
    assert bert.papers == ["arxiv:1810.04805", "arxiv:1908.08962"]
    assert bert.extra["languages"] == ["en"]


def test_official_examples(hubdata):
    docs = parse_all(hubdata / "tensorflow_hub" / "examples", "examples/")
    coll = docs["tfhub:google/collections/example-collection/1"]
    assert coll.architectures == ["dan", "transformer"]  # a repeated key
    assert coll.extra["metadata"]["network-architecture"] == ["dan", "transformer"]
    assert coll.members == ["google/universal-sentence-encoder-large/3",
                            "google/universal-sentence-encoder-lite",
                            "google/nnlm-en-dim50", "google/nnlm-en-dim128/1"]
    lite = docs["tfhub:google/lite-model/text-embedding-model/default/lite/1"]
    assert lite.extra["parent_model"] == "google/other-text-embedding-model/1"
    assert docs["tfhub:google/text-embedding-model/1"].extra["fine_tunable"] is True
