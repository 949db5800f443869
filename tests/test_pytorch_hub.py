"""PyTorch Hub: the parser on the project's fixtures, then whole crawls against the mock."""

from __future__ import annotations

import pytest

from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import to_doc
from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.parsers import pytorch_hub as p
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.stores import open_store
from tests.conftest import FIXTURES, crawl_stats, run_crawl
from tests.test_safe_yaml import entry, laughs

ROOT = FIXTURES / "github" / "pytorch" / "hub" / "master"
SEEN = "2025-01-02T03:04:05.000Z"


def parse(name: str):
    item = p.parse_entry((ROOT / name).read_bytes(), path=name, blob_sha="f" * 40,
                         source_url=f"http://raw/{name}", seen_at=SEEN)
    return normalize_model(item)


def test_entry_with_pinned_ref_and_file_link():
    item = parse("pytorch_vision_alexnet.md")
    assert item._id == "pytorch_hub:pytorch_vision_alexnet"
    assert (item.hub, item.hub_id, item.title) == ("pytorch_hub", "pytorch_vision_alexnet",
                                                   "AlexNet")
    assert item.url == "https://pytorch.org/hub/pytorch_vision_alexnet/"
    assert item.owner == "pytorch" and item.owner_url == "https://github.com/pytorch"
    assert item.github_repos == ["pytorch/vision"]
    assert item.extra["entrypoints"] == ["alexnet"]
    assert item.extra["pinned_ref"] == "v0.10.0"
    assert item.extra["hub_loads"] == [
        {"repo": "pytorch/vision", "ref": "v0.10.0", "entrypoint": "alexnet"}]
    assert item.papers == ["arxiv:1404.5997"]
    assert item.tags == ["vision", "scriptable"]
    assert item.libraries == ["pytorch"]
    assert item.extra["path"] == "pytorch_vision_alexnet.md"
    assert item.extra["blob_sha"] == "f" * 40
    assert item.raw["order"] == 10
    assert schema_error("model", to_doc(item)) is None


def test_crlf_entry():
    item = parse("nvidia_deeplearningexamples_ssd.md")
    assert item.title == "SSD" and item.extra["accelerator"] == "cuda"
    assert item.extra["entrypoints"] == ["nvidia_ssd", "nvidia_ssd_processing_utils"]
    assert item.extra["pinned_refs"] == ["torchhub"]
    assert item.github_repos == ["nvidia/deeplearningexamples"]
    assert item.owner == "nvidia"
    assert item.papers == ["arxiv:1512.02325"]


def test_curly_quotes_trailing_spaces_and_keyword_arguments():
    item = parse("ultralytics_yolov5.md")
    assert item.title == "YOLOv5"
    assert item.extra["accelerator"] == "cuda-optional"
    assert item.description == 'Ultralytics YOLOv5 "object detection" models pretrained on COCO'
    # curly-quoted, double-quoted and keyword calls count; the local directory does not
    assert item.extra["entrypoints"] == ["yolov5s", "yolov5m", "custom"]
    assert item.extra["pinned_ref"] is None
    assert item.github_repos == ["ultralytics/yolov5"]


def test_git_suffix_link_and_doi():
    item = parse("facebookresearch_detr_resnet50.md")
    assert item.github_repos == ["facebookresearch/detr"]
    assert item.extra["github_link"] == "https://github.com/facebookresearch/detr.git"
    assert item.extra["pinned_ref"] == "main"
    assert item.papers == ["doi:10.1007/978-3-030-58452-8_13"]


def test_front_matter_yaml_refuses_is_read_line_by_line():
    item = parse("intelisl_midas_v2.md")  # "summary: ...: ..." is not valid YAML
    assert item.description == ("MiDaS models for computing relative depth from a single "
                                "image: robust across datasets")
    assert item.tags == ["vision"]
    assert item.github_repos == ["intel-isl/midas", "isl-org/midas"]
    assert item.extra["entrypoints"] == ["DPT_Large"]


@pytest.mark.parametrize(("body", "reason"), [
    ((ROOT / "broken_front_matter.md").read_bytes(), "bad_front_matter"),
    ((ROOT / "README.md").read_bytes(), "no_front_matter"),
    (b"---\n- a\n- b\n---\nbody", "bad_front_matter"),
    (b"---\ntitle: [unclosed\nnot a key line\n---\n", "bad_front_matter"),
    (b"\xff\xfe---", "not_utf8"),
])
def test_malformed_entries(body, reason):
    with pytest.raises(BadResponse) as exc:
        p.parse_entry(body, path="x.md", blob_sha=None, source_url=None, seen_at=SEEN)
    assert exc.value.reason == reason


def test_which_paths_are_entries():
    assert p.is_entry_path("pytorch_vision_resnet.md")
    assert not p.is_entry_path("README.md")
    assert not p.is_entry_path("docs/template.md")
    assert not p.is_entry_path("images/resnet.png")


EXPECTED_IDS = {f"pytorch_hub:{s}" for s in (
    "pytorch_vision_alexnet", "nvidia_deeplearningexamples_ssd", "ultralytics_yolov5",
    "facebookresearch_detr_resnet50", "intelisl_midas_v2")}


@pytest.mark.crawl
def test_crawl_stores_each_entry_once_and_skips_unchanged_files(mockhub, tmp_path):
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    stats = crawl_stats(run_crawl("pytorch_hub", mockhub, tmp_path))
    assert stats["ptm/catalogue_files"] == 6
    assert stats["ptm/valid/models"] == 5
    assert stats["ptm/skipped/bad_front_matter"] == 1
    assert len(mockhub.requests("/repos/pytorch/hub/git/trees/master")) == 1
    assert len(mockhub.requests("/raw/")) == 6
    with open_store(uri) as store:
        assert store.ids("models", {"hub": "pytorch_hub"}) == EXPECTED_IDS
        first = store.get("models", "pytorch_hub:ultralytics_yolov5")
    assert first is not None and first["extra"]["path"] == "ultralytics_yolov5.md"

    # Unchanged: only the file that never produced a document is read again.
    mockhub.clear_log()
    stats = crawl_stats(run_crawl("pytorch_hub", mockhub, tmp_path))
    assert [r.path for r in mockhub.requests("/raw/")] == [
        "/raw/pytorch/hub/master/broken_front_matter.md"]
    assert stats["ptm/unchanged_documents"] == 5
    assert "ptm/valid/models" not in stats

    # One file changes: only it is read, and its document is replaced, not duplicated.
    changed = (mockhub.fixtures / "github/pytorch/hub/master/ultralytics_yolov5.md").read_text()
    mockhub.github.put("pytorch", "hub", "master", "ultralytics_yolov5.md",
                       changed.replace("title: YOLOv5", "title: YOLOv5 v7"))
    mockhub.clear_log()
    stats = crawl_stats(run_crawl("pytorch_hub", mockhub, tmp_path))
    assert sorted(r.path for r in mockhub.requests("/raw/")) == [
        "/raw/pytorch/hub/master/broken_front_matter.md",
        "/raw/pytorch/hub/master/ultralytics_yolov5.md"]
    assert stats["ptm/unchanged_documents"] == 4 and stats["ptm/valid/models"] == 1
    with open_store(uri) as store:
        assert store.count("models", {"hub": "pytorch_hub"}) == 5
        doc = store.get("models", "pytorch_hub:ultralytics_yolov5")
    assert doc is not None and doc["title"] == "YOLOv5 v7"
    assert doc["extra"]["blob_sha"] != first["extra"]["blob_sha"]
    assert doc["crawl"]["first_seen"] == first["crawl"]["first_seen"]

    # -a full=1 reads everything again.
    mockhub.clear_log()
    stats = crawl_stats(run_crawl("pytorch_hub", mockhub, tmp_path, "-a", "full=1"))
    assert len(mockhub.requests("/raw/")) == 6 and stats["ptm/valid/models"] == 5


@pytest.mark.crawl
def test_crawl_refuses_a_billion_laughs_entry_and_stores_the_good_ones(mockhub, tmp_path):
    """~300 bytes of aliased front matter once became a multi-megabyte stored document."""
    mockhub.github.put("pytorch", "hub", "master", "evil_laughs.md",
                       entry("title: Evil\n" + laughs()))
    result = run_crawl("pytorch_hub", mockhub, tmp_path)
    stats = crawl_stats(result)
    assert stats["ptm/catalogue_files"] == 7
    assert stats["ptm/valid/models"] == 5
    assert stats["ptm/skipped/yaml_expands"] == 1
    assert "Skipped catalogue file evil_laughs.md: yaml_expands" in result.stderr
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        assert store.ids("models", {"hub": "pytorch_hub"}) == EXPECTED_IDS


@pytest.mark.crawl
def test_crawl_with_a_bad_repo_setting_fails_clearly(mockhub, tmp_path):
    result = run_crawl("pytorch_hub", mockhub, tmp_path, "-s", "PTM_PYTORCH_HUB_REPO=nope",
                       check=False)
    assert "PTM_PYTORCH_HUB_REPO" in result.stderr
    assert "expected owner/repo" in result.stderr
    assert not mockhub.requests("/repos/")


@pytest.mark.crawl
def test_crawl_of_another_ref_that_does_not_exist_is_incomplete(mockhub, tmp_path):
    result = run_crawl("pytorch_hub", mockhub, tmp_path, "-s", "PTM_PYTORCH_HUB_REF=gone",
                       expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    assert stats["ptm/incomplete"] is True
    assert stats["ptm/incomplete/list_request_failed"] == 1
    assert not mockhub.requests("/raw/")


@pytest.mark.crawl
def test_history_sees_unchanged_files_and_infers_removals_only_from_whole_crawls(mockhub,
                                                                                  tmp_path):
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    run_crawl("pytorch_hub", mockhub, tmp_path)
    mockhub.github.delete("pytorch", "hub", "master", "intelisl_midas_v2.md")
    # Restricted to one file: nothing is inferred about the others.
    run_crawl("pytorch_hub", mockhub, tmp_path, "-a", "paths=pytorch_vision_alexnet.md")
    with open_store(uri) as store:
        assert store.get("models", "pytorch_hub:intelisl_midas_v2").get("removed_at") is None
    # A whole crawl: the unchanged (skipped) files count as seen, the deleted one is removed.
    stats = crawl_stats(run_crawl("pytorch_hub", mockhub, tmp_path))
    assert stats["ptm/history/missing"] == 1
    with open_store(uri) as store:
        removed = {d["_id"] for d in store.find("models", {"hub": "pytorch_hub"})
                   if d.get("removed_at")}
    assert removed == {"pytorch_hub:intelisl_midas_v2"}
