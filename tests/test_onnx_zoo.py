"""ONNX Model Zoo: the manifest parser on the project's fixture, then whole crawls."""

from __future__ import annotations

import json

import pytest

from ptmspiders.github import RepoRef
from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import to_doc
from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.parsers import onnx_zoo as p
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.stores import open_store
from tests.conftest import FIXTURES, crawl_stats, run_crawl

MANIFEST = FIXTURES / "github" / "onnx" / "models" / "main" / "ONNX_HUB_MANIFEST.json"
REPO = RepoRef.parse("onnx/models", "main")
SEEN = "2025-01-02T03:04:05.000Z"


def parse(body: bytes):
    return p.parse_manifest(body, repo=REPO, path=p.MANIFEST, blob_sha="a" * 40,
                            source_url="http://raw/manifest", seen_at=SEEN)


def test_manifest_entries_become_items():
    items, rejects = parse(MANIFEST.read_bytes())
    assert len(items) == 5
    assert rejects == [("entry 5 (Broken entry without a path)", "entry_without_model_path"),
                       ("entry 6", "entry_not_object")]
    by_id = {i._id: normalize_model(i) for i in items}
    sq = by_id["onnx_zoo:validated/vision/classification/squeezenet/model/squeezenet1.0-12.onnx"]
    assert (sq.name, sq.owner, sq.hub) == ("SqueezeNet 1.0", "onnx", "onnx_zoo")
    assert sq.url == ("https://github.com/onnx/models/tree/main/"
                      "validated/vision/classification/squeezenet")
    assert sq.tasks == ["image-classification"]
    assert sq.libraries == ["onnx"]
    assert sq.tags == ["vision", "classification", "squeezenet"]
    assert sq.extra["opset_version"] == 12 and sq.extra["onnx_version"] == "1.9"
    assert sq.extra["io_ports"]["inputs"][0] == {"name": "data_0", "shape": [1, 3, 224, 224],
                                                 "type": "tensor(float)"}
    assert sq.extra["download_url"] == (
        "https://media.githubusercontent.com/media/onnx/models/main/"
        "validated/vision/classification/squeezenet/model/squeezenet1.0-12.onnx")
    assert [f["path"].rsplit("/", 1)[1] for f in sq.files] == ["squeezenet1.0-12.onnx",
                                                               "squeezenet1.0-12.tar.gz"]
    assert sq.files[0]["size"] == 5000000 and len(sq.files[0]["sha256"]) == 64
    assert sq.github_repos == ["onnx/models"]
    assert sq.extra["path"] == "ONNX_HUB_MANIFEST.json" and sq.extra["blob_sha"] == "a" * 40
    yolo = by_id["onnx_zoo:validated/vision/object_detection_segmentation/yolov3/model/"
                 "yolov3-10.onnx"]
    assert yolo.tasks == ["object-detection", "image-segmentation"]
    assert len(yolo.files) == 1  # no model_with_data in this entry
    assert yolo.extra["io_ports"]["inputs"][0]["shape"] == ["unk__576", 3, "unk__577",
                                                            "unk__578"]
    bidaf = next(i for i in items if i.name == "BiDAF")
    assert bidaf.tasks == ["question-answering"]
    vgg = next(i for i in items if i.name == "VGG 16-fc7")
    assert vgg.extra["extra_ports"] == {"features": [{"name": "fc7_1", "shape": [1, 4096]}]}
    for item in items:
        assert schema_error("model", to_doc(item)) is None


def test_same_name_other_opset_is_another_document():
    items, _ = parse(MANIFEST.read_bytes())
    squeeze = [i for i in items if i.name == "SqueezeNet 1.0"]
    assert sorted(i.extra["opset_version"] for i in squeeze) == [3, 12]
    assert len({i._id for i in squeeze}) == 2


@pytest.mark.parametrize(("entry", "reason"), [
    ({"model_path": "validated/x.onnx"}, "entry_without_model"),
    ({"model": "X", "model_path": "validated/x.onnx", "metadata": "oops"}, "metadata_not_object"),
    ({"model": "X", "model_path": "validated/x.onnx", "opset_version": "ten"},
     "bad_opset_version"),
])
def test_bad_entries_are_rejected(entry, reason):
    items, rejects = parse(json.dumps([entry]).encode())
    assert items == [] and rejects[0][1] == reason


def test_duplicate_model_path_is_rejected():
    entry = {"model": "X", "model_path": "validated/vision/classification/x/model/x.onnx"}
    items, rejects = parse(json.dumps([entry, entry]).encode())
    assert len(items) == 1 and rejects[0][1] == "duplicate_model_path"


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"model": "not a list"}', "wrong_shape"),
    (b'[{"model": "x",', "truncated_json"),
    (b"version https://git-lfs.github.com/spec/v1\n", "invalid_json"),
])
def test_unusable_manifest(body, reason):
    with pytest.raises(BadResponse) as exc:
        parse(body)
    assert exc.value.reason == reason


@pytest.mark.crawl
def test_crawl_one_document_per_entry_and_unchanged_manifest_is_not_read(mockhub, tmp_path):
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    stats = crawl_stats(run_crawl("onnx_zoo", mockhub, tmp_path))
    assert stats["ptm/catalogue_files"] == 1
    assert stats["ptm/valid/models"] == 5
    assert stats["ptm/rejected/entry_without_model_path"] == 1
    assert stats["ptm/rejected/entry_not_object"] == 1
    with open_store(uri) as store:
        ids = store.ids("models", {"hub": "onnx_zoo"})
    assert len(ids) == 5

    mockhub.clear_log()
    stats = crawl_stats(run_crawl("onnx_zoo", mockhub, tmp_path))
    assert mockhub.requests("/raw/") == []
    assert stats["ptm/unchanged_documents"] == 5
    with open_store(uri) as store:
        assert store.ids("models", {"hub": "onnx_zoo"}) == ids


@pytest.mark.crawl
def test_crawl_of_a_broken_manifest_is_logged_and_counted(mockhub, tmp_path):
    mockhub.github.put("onnx", "models", "main", "ONNX_HUB_MANIFEST.json", "[{\"model\": ")
    result = run_crawl("onnx_zoo", mockhub, tmp_path)
    stats = crawl_stats(result)
    assert stats["ptm/skipped/truncated_json"] == 1
    assert "Skipped catalogue file ONNX_HUB_MANIFEST.json: truncated_json" in result.stderr
    # Malformed as committed (the tree's blob sha): no retry can change it.
    assert "ptm/retry/count" not in stats
    assert len(mockhub.requests("/raw/onnx/models/main/ONNX_HUB_MANIFEST.json")) == 1
    assert "ptm/valid/models" not in stats
    assert stats["finish_reason"] == "finished"


@pytest.mark.crawl
def test_crawl_of_a_truncated_tree_is_marked_incomplete(mockhub, tmp_path):
    mockhub.github.truncate_at = 1  # the manifest sorts first: it is still listed
    stats = crawl_stats(run_crawl("onnx_zoo", mockhub, tmp_path,
                                  expect_exit=EXIT_INCOMPLETE))
    assert stats["ptm/incomplete/tree_truncated"] == 1
    assert stats["ptm/valid/models"] == 5
