"""TF Hub: the document parser on the project's fixtures, then whole crawls."""

from __future__ import annotations

import pytest

from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import CollectionItem, ModelItem, OwnerItem, to_doc
from ptmspiders.outcome import EXIT_INCOMPLETE
from ptmspiders.parsers import tfhub as p
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error
from ptmspiders.spiders.tfhub import is_collection_path
from ptmspiders.stores import open_store
from tests.conftest import FIXTURES, crawl_stats, run_crawl
from tests.mockhub import MockResponse

ROOT = FIXTURES / "github" / "tensorflow" / "tfhub.dev" / "master"
DOCS = "assets/docs/"
SEEN = "2025-01-02T03:04:05.000Z"
MOBILENET = "google/models/imagenet/mobilenet_v3_small_100_224/classification/5"


def parse(rel: str):
    item = p.parse_document((ROOT / DOCS / rel).read_bytes(), path=DOCS + rel, blob_sha="b" * 40,
                            source_url=f"http://raw/{rel}", seen_at=SEEN)
    if isinstance(item, ModelItem):
        normalize_model(item)
    assert schema_error(item.schema_name, to_doc(item)) is None
    return item


def test_module_keeps_every_metadata_key_and_repeats_as_lists():
    item = parse(f"{MOBILENET}.md")
    assert isinstance(item, ModelItem)
    assert item._id == "tfhub:google/imagenet/mobilenet_v3_small_100_224/classification/5"
    assert item.url == "https://tfhub.dev/google/imagenet/mobilenet_v3_small_100_224/classification/5"
    assert (item.owner, item.model_type) == ("google", "module")
    assert item.owner_url == "https://tfhub.dev/google"
    assert item.description == ("Imagenet classification with MobileNet V3 small "
                                "(depth multiplier 1.00).")
    assert item.tasks == ["image-classification"]
    assert item.architectures == ["mobilenet-v3", "hard-swish"]
    assert item.datasets == ["imagenet-ilsvrc-2012-cls"]
    assert item.license == "apache-2.0"
    assert item.libraries == ["tensorflow"]
    assert item.papers == ["arxiv:1905.02244"]
    meta = item.extra["metadata"]
    assert meta["network-architecture"] == ["mobilenet-v3", "hard-swish"]
    assert meta["asset-path"] == "internal" and meta["format"] == "saved_model_2"
    assert meta["colab"].startswith("https://colab.research.google.com/")
    assert item.extra["fine_tunable"] is True
    assert item.extra["path"] == DOCS + f"{MOBILENET}.md"
    assert item.extra["blob_sha"] == "b" * 40


@pytest.mark.parametrize(("rel", "hub_id", "library"), [
    (f"{MOBILENET}/default/tfjs/1.md",
     "google/tfjs-model/imagenet/mobilenet_v3_small_100_224/classification/5/default/1", "tfjs"),
    (f"{MOBILENET}/default/lite/1.md",
     "google/lite-model/imagenet/mobilenet_v3_small_100_224/classification/5/default/1",
     "tflite"),
    ("google/models/yamnet_edgetpu/1/default/coral/1.md",
     "google/coral-model/yamnet_edgetpu/1/default/1", "tflite"),
])
def test_variants_get_distinct_ids_and_link_to_their_parent(rel, hub_id, library):
    item = parse(rel)
    assert item.hub_id == hub_id and item.url == f"https://tfhub.dev/{hub_id}"
    assert item.libraries == [library]
    parent = item.extra["parent_model"]
    assert item.base_models == [parent]
    assert parent in ("google/imagenet/mobilenet_v3_small_100_224/classification/5",
                      "google/yamnet_edgetpu/1")


def test_placeholder_old_layout_and_entity_in_id():
    placeholder = parse("google/models/yamnet_edgetpu/1.md")
    assert placeholder.model_type == "placeholder" and placeholder.libraries == []
    old = parse("vasudevgupta7/wav2vec2/1.md")  # no models/ folder
    assert old._id == "tfhub:vasudevgupta7/wav2vec2/1" and old.license == "mit"
    assert old.extra["languages"] == ["en"] and "language:en" in old.tags
    nvidia = parse("nvidia/models/unet/industrial/class_2/1.md")
    assert nvidia._id == "tfhub:nvidia/unet/industrial/class_2/1"
    assert nvidia.extra["fine_tunable"] is False
    assert nvidia.license == "custom"
    assert nvidia.extra["asset_path"].endswith("class_2/1.tar.gz")


def test_publisher_is_an_owner():
    owner = parse("google/google.md")
    assert isinstance(owner, OwnerItem)
    assert (owner._id, owner.type, owner.fullname) == ("tfhub:google", "org", "Google")
    assert owner.url == "https://tfhub.dev/google"
    assert owner.extra["homepage"] == "https://ai.google"
    assert owner.extra["icon_url"] == "https://www.gstatic.com/aihub/google_logo_120.png"


def test_collection_lists_members():
    coll = parse("google/collections/mobilenet_v3/1.md")
    assert isinstance(coll, CollectionItem)
    assert coll._id == "tfhub:google/collections/mobilenet_v3/1"
    assert coll.url == "https://tfhub.dev/google/collections/mobilenet_v3/1"
    assert coll.members == ["google/imagenet/mobilenet_v3_small_100_224/classification",
                            "google/imagenet/mobilenet_v3_large_100_224/classification/5",
                            "google/yamnet_edgetpu/1"]
    assert coll.tasks == ["image-classification"]
    assert coll.architectures == ["mobilenet-v3"]


@pytest.mark.parametrize(("body", "reason"), [
    ((ROOT / DOCS / "google/models/datasets/cifar/1.md").read_bytes(), "unknown_type"),
    ((ROOT / DOCS / "google/models/broken/1.md").read_bytes(), "no_header"),
    (b"\n\n  \n", "empty_document"),
    (b"# Module &zwnj;\n", "no_id"),
    (b"# Module ok/1\n\xff", "not_utf8"),
])
def test_unusable_documents(body, reason):
    with pytest.raises(BadResponse) as exc:
        p.parse_document(body, path="assets/docs/x.md", blob_sha=None, source_url=None,
                         seen_at=SEEN)
    assert exc.value.reason == reason


def test_helpers():
    assert p.clean_id("nvidia/&zwnj;unet/\u200bx/1 ") == "nvidia/unet/x/1"
    assert p.handle("google/x/5") == "google/x" and p.handle("google/x") == "google/x"
    assert is_collection_path("assets/docs/google/collections/bert/1.md")
    assert not is_collection_path("assets/docs/google/models/collections.md")


EXPECTED_MODELS = {
    "tfhub:google/imagenet/mobilenet_v3_small_100_224/classification/5",
    "tfhub:google/tfjs-model/imagenet/mobilenet_v3_small_100_224/classification/5/default/1",
    "tfhub:google/lite-model/imagenet/mobilenet_v3_small_100_224/classification/5/default/1",
    "tfhub:google/yamnet_edgetpu/1",
    "tfhub:google/coral-model/yamnet_edgetpu/1/default/1",
    "tfhub:vasudevgupta7/wav2vec2/1",
    "tfhub:nvidia/unet/industrial/class_2/1",
}
COLLECTION = "tfhub:google/collections/mobilenet_v3/1"


@pytest.mark.crawl
def test_crawl_accounts_for_every_file_and_links_collections(mockhub, tmp_path):
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    result = run_crawl("tfhub", mockhub, tmp_path)
    stats = crawl_stats(result)
    assert stats["ptm/catalogue_files"] == 13
    # every catalogue file is either stored or counted with its reason
    assert stats["ptm/files_parsed"] + stats["ptm/skipped"] == 13
    assert stats["ptm/skipped/unknown_type"] == 1
    assert stats["ptm/skipped/no_header"] == 1
    assert stats["ptm/skipped/not_markdown"] == 1
    assert "assets/docs/google/models/datasets/cifar/1.md: unknown_type" in result.stderr
    assert (stats["ptm/valid/models"], stats["ptm/valid/owners"],
            stats["ptm/valid/collections"]) == (7, 2, 1)
    with open_store(uri) as store:
        assert store.ids("models", {"hub": "tfhub"}) == EXPECTED_MODELS
        assert store.ids("owners", {"hub": "tfhub"}) == {"tfhub:google", "tfhub:vasudevgupta7"}
        assert store.ids("collections", {"hub": "tfhub"}) == {COLLECTION}
        docs = {d["_id"]: d for d in store.find("models", {"hub": "tfhub"})}
    linked = {i for i, d in docs.items() if d["extra"]["collections"] == [COLLECTION]}
    assert linked == {"tfhub:google/imagenet/mobilenet_v3_small_100_224/classification/5",
                      "tfhub:google/yamnet_edgetpu/1"}

    # Second run: nothing changed, so only the files without a document are read again.
    mockhub.clear_log()
    stats = crawl_stats(run_crawl("tfhub", mockhub, tmp_path))
    assert sorted(r.path.rsplit("/", 2)[-2] for r in mockhub.requests("/raw/")) == [
        "broken", "cifar"]
    assert stats["ptm/unchanged_documents"] == 10

    # The collection drops the placeholder: the collection and the placeholder are re-read,
    # the placeholder loses its link, everything else stays unread.
    coll_path = "assets/docs/google/collections/mobilenet_v3/1.md"
    text = (ROOT / coll_path).read_text()
    mockhub.github.put("tensorflow", "tfhub.dev", "master", coll_path,
                       text.replace("| [edge](https://tfhub.dev/google/yamnet_edgetpu/1) | "
                                    "Placeholder |\n", ""))
    mockhub.clear_log()
    stats = crawl_stats(run_crawl("tfhub", mockhub, tmp_path))
    read = {r.path.split("/docs/", 1)[1] for r in mockhub.requests("/raw/")}
    assert read == {"google/collections/mobilenet_v3/1.md", "google/models/yamnet_edgetpu/1.md",
                    "google/models/broken/1.md", "google/models/datasets/cifar/1.md"}
    with open_store(uri) as store:
        assert store.get("models", "tfhub:google/yamnet_edgetpu/1")["extra"]["collections"] == []
        assert store.count("models", {"hub": "tfhub"}) == 7
        members = store.get("collections", COLLECTION)["members"]
    assert "google/yamnet_edgetpu/1" not in members


@pytest.mark.crawl
def test_crawl_goes_on_when_a_collection_cannot_be_read(mockhub, tmp_path):
    def gone(hub, req):
        if req.path.endswith("/collections/mobilenet_v3/1.md"):
            return MockResponse.text("404: Not Found", status=404)
        return None

    mockhub.before.append(gone)
    result = run_crawl("tfhub", mockhub, tmp_path, expect_exit=EXIT_INCOMPLETE)
    stats = crawl_stats(result)
    assert stats["ptm/failed/raw"] == 1
    assert stats["ptm/incomplete/raw_failed"] == 1
    assert "Catalogue file assets/docs/google/collections/mobilenet_v3/1.md could not be read" \
        in result.stderr
    assert stats["ptm/valid/models"] == 7 and "ptm/valid/collections" not in stats
