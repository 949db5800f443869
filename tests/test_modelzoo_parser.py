"""modelzoo.co parsers on fixtures, without a reactor or a browser.

``rendered_*.html`` are the DOMs headless Chromium produced from the mock hub's JavaScript model
pages (``tests/mockhub/modelzoo.py``), saved with ``page.content()``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import fastjsonschema
import pytest

from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import to_doc
from ptmspiders.parsers import modelzoo as mz
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error
from tests.mockhub.modelzoo import DETAIL_FIELDS, LIST_FIELDS, render_home, render_page

FIXTURES = Path(__file__).parent / "fixtures" / "modelzoo"
BASE = "https://modelzoo.co"
SEEN = "2025-01-01T00:00:00.000Z"
MODELS: list[dict] = json.loads((FIXTURES / "models.json").read_text())


def list_body(models: list) -> bytes:
    return json.dumps({"models": [{k: m.get(k) for k in LIST_FIELDS} for m in models]}).encode()


def detail(model: dict) -> dict:
    return {"id": MODELS.index(model) + 1, **{k: model.get(k) for k in DETAIL_FIELDS}}


def item_for(slug: str, source: str = "api"):
    model = next(m for m in MODELS if m["slug"] == slug)
    entry = {k: model.get(k) for k in LIST_FIELDS}
    item = mz.build_item(entry, detail(model) if source != "list" else None, base=BASE,
                         source=source, source_url="u", seen_at=SEEN)
    return normalize_model(item)


def test_list_and_detail_parse():
    entries, rejects = mz.parse_list(list_body(MODELS))
    assert [e["slug"] for e in entries] == [m["slug"] for m in MODELS]
    assert rejects == []
    got = mz.parse_detail(json.dumps(detail(MODELS[0])).encode())
    assert got["papers"] == {"Mask R-CNN": "https://arxiv.org/abs/1703.06870"}


def test_every_fixture_model_is_a_valid_document():
    for model in MODELS:
        for source in ("api", "list"):
            item = item_for(model["slug"], source)
            assert schema_error("model", to_doc(item)) is None, (model["slug"], source)
            assert item._id == f"modelzoo:{model['slug']}"
            assert item.extra["detail_source"] == source


def test_mask_rcnn_fields():
    item = item_for("mask-r-cnn-keras")
    assert item.title == "Mask R-CNN"
    assert item.url == "https://modelzoo.co/model/mask-r-cnn-keras"
    assert item.likes == 24610  # GitHub stars as modelzoo shows them
    assert item.github_repos == ["matterport/mask_rcnn"]
    assert item.owner == "matterport" and item.owner_url == "https://github.com/matterport"
    assert item.libraries == ["keras"]
    assert item.tasks == ["computer-vision"] and item.tags == ["CV"]
    assert item.papers == ["arxiv:1703.06870"]
    assert item.description.startswith("<h1>Mask R-CNN for Object Detection")
    assert item.extra["description_format"] == "html"
    assert item.extra["summary"].startswith("Mask R-CNN for object detection")
    assert item.extra["papers"] == {"Mask R-CNN": "https://arxiv.org/abs/1703.06870"}
    assert item.extra["api_id"] == 1


def test_links_papers_and_odd_values():
    cyclegan = item_for("pytorch-cyclegan-and-pix2pix")
    assert cyclegan.github_repos == ["junyanz/pytorch-cyclegan-and-pix2pix"]
    assert cyclegan.papers == ["arxiv:1703.10593", "arxiv:1611.07004"]
    assert cyclegan.tasks == ["generative-models", "computer-vision"]
    bert = item_for("bert-tensorflow")
    assert bert.papers == ["arxiv:1810.04805", "doi:10.18653/v1/n19-1423"]  # + README link
    dqn = item_for("deep-q-learning-chainer")
    assert dqn.likes is None and "summary" not in dqn.extra and dqn.libraries == ["chainer"]
    wavenet = item_for("wavenet-mxnet")  # not on GitHub; its "description" is an image URL
    assert wavenet.github_repos == [] and wavenet.owner is None
    assert wavenet.extra["link"] == "http://www.example.org/wavenet-mxnet/"
    gat = item_for("graph-attention-networks-jax")
    assert gat.github_repos == ["example-lab/gat-jax"] and gat.owner == "Example-Lab"
    assert gat.papers == []  # an OpenReview link is no arXiv/DOI id
    style = item_for("fast-style-transfer-caffe2")
    assert style.description == "Real-time neural style transfer"  # empty README
    assert style.tasks == [] and style.github_repos == [] and style.libraries == ["caffe2"]


def test_a_slug_is_one_quoted_path_segment():
    # Unquoted, ``a#b`` asked for model ``a`` and ``../x`` for another path of the site.
    assert mz.detail_url("http://h/", "a#b") == "http://h/api/models/a%23b/"
    assert mz.detail_url("http://h", "../x?y") == "http://h/api/models/..%2Fx%3Fy/"
    assert mz.page_url("http://h", "a/b") == "http://h/model/a%2Fb"
    assert mz.detail_url("http://h", "mask-rcnn_1.0") == "http://h/api/models/mask-rcnn_1.0/"


def test_list_only_document_keeps_list_facts():
    item = item_for("mask-r-cnn-keras", source="list")
    assert item.likes == 24610 and item.github_repos == ["matterport/mask_rcnn"]
    assert item.papers == [] and item.description.startswith("Mask R-CNN for object")


@pytest.mark.parametrize("slug", ["mask-r-cnn-keras", "u-net-caffe", "deep-q-learning-chainer"])
def test_rendered_page_gives_the_api_detail(slug):
    model = next(m for m in MODELS if m["slug"] == slug)
    page = mz.parse_rendered_page((FIXTURES / f"rendered_{slug}.html").read_text())
    for key in ("title", "description", "stars", "link", "framework", "long_desc"):
        assert page[key] == (model[key] or None), key
    assert page["papers"] == (model["papers"] or None)
    assert [(c["slug"], c["title"], c["short_title"]) for c in page["categories"]] == \
        [(c["slug"], c["title"], c["short_title"]) for c in model["categories"]]
    from_page = mz.build_item({"slug": slug}, page, base=BASE, source="browser",
                              source_url="u", seen_at=SEEN)
    from_api = item_for(slug)
    for field in ("title", "description", "likes", "libraries", "tasks", "tags", "papers",
                  "github_repos", "owner"):
        assert getattr(normalize_model(from_page), field) == getattr(from_api, field), field


def test_unrendered_page_is_refused():
    shell = render_page(MODELS[0])  # what a client without JavaScript receives
    with pytest.raises(BadResponse) as exc:
        mz.parse_rendered_page(shell)
    assert exc.value.reason == "not_rendered"
    assert "Mask R-CNN" not in shell  # the data is only reachable by running the script


def test_rendered_home_page_gives_the_list():
    entries, rejects = mz.parse_rendered_list((FIXTURES / "rendered_home.html").read_text())
    assert rejects == []
    cats = [[{k: c[k] for k in ("slug", "title", "short_title")} for c in m["categories"]]
            for m in MODELS]  # the cards show no category id
    assert entries == [{**{k: m[k] or None for k in LIST_FIELDS}, "categories": c}
                       for m, c in zip(MODELS, cats, strict=True)]
    with pytest.raises(BadResponse) as exc:
        mz.parse_rendered_list(render_home(MODELS))
    assert exc.value.reason == "not_rendered"


@pytest.mark.parametrize(("body", "reason"), [
    (b"<!DOCTYPE html><html><title>403 Forbidden</title></html>", "html_instead_of_json"),
    (b'{"models": [{"slug": "a"', "truncated_json"),
    (b'{"detail": "Not found."}', "wrong_shape"),
    (b"[]", "wrong_shape"),
])
def test_unusable_api_answers(body, reason):
    with pytest.raises(BadResponse) as exc:
        (mz.parse_list if b"models" in body or body == b"[]" else mz.parse_detail)(body)
    assert exc.value.reason == reason


def test_malformed_list_entries_are_rejected():
    body = json.dumps({"models": ["x", {"title": "no slug"}, {"slug": "../etc"},
                                  {"slug": "ok-1"}]}).encode()
    entries, rejects = mz.parse_list(body)
    assert [e["slug"] for e in entries] == ["ok-1"]
    assert [r for _, r in rejects] == ["entry_not_object", "entry_without_slug",
                                       "entry_without_slug"]


@pytest.mark.conformance
def test_mock_answers_match_ptmtorrent_schemas(hubdata):
    """The mock's list and detail bodies validate against the schemas PTMTorrent inferred from
    real modelzoo.co answers (no unknown field, the real enum values)."""
    folder = hubdata / "modelzoo"
    hub_schema = json.loads((folder / "PTMTorrent__modelZooHubMetadata.schema.json").read_text())
    model_schema = json.loads(
        (folder / "PTMTorrent__modelZooModelMetadata.schema.json").read_text())
    fastjsonschema.compile(hub_schema)(json.loads(list_body(MODELS)))
    fastjsonschema.compile(model_schema)([detail(m) for m in MODELS])


@pytest.mark.conformance
def test_every_real_framework_and_category_maps(hubdata):
    schema = json.loads((hubdata / "modelzoo" / "PTMTorrent__modelZooModelMetadata.schema.json"
                         ).read_text())
    defs = schema["definitions"]
    frameworks = defs["Framework"]["enum"]
    categories = list(zip(defs["Slug"]["enum"], defs["Title"]["enum"],
                          defs["ShortTitle"]["enum"], strict=True))
    assert "caffe2" in frameworks and ("graph", "Graph", "Graph") in categories
    for framework in frameworks:
        entry = {"slug": f"m-{framework}", "title": "T", "framework": framework,
                 "categories": [{"id": 1, "slug": s, "title": t, "short_title": st}
                                for s, t, st in categories]}
        item = normalize_model(mz.build_item(entry, None, base=BASE, source="list",
                                             source_url=None, seen_at=SEEN))
        assert item.libraries == [framework]
        assert item.tasks == [s for s, _, _ in categories]
        assert item.tags == [st for _, _, st in categories]
        assert schema_error("model", to_doc(item)) is None


@pytest.mark.conformance
def test_repository_mapping_matches_ptmtorrents_notes(hubdata):
    """PTMTorrent's notes map a model's link to ``AUTHOR/REPO``; ours gives the same repository
    (lower-cased, as every hub's ``github_repos``) and keeps the owner's spelling."""
    text = (hubdata / "modelzoo" / "PTMTorrent__modelzoo_README.md").read_text()
    m = re.search(r"<(https://github\.com/[^>]+)>\s*->\s*>?\s*(\S+)", text)
    assert m is not None
    url, expected = m.groups()
    entry = {"slug": "ptm-torrent", "title": "PTM-Torrent", "link": url, "framework": "pytorch",
             "categories": []}
    item = normalize_model(mz.build_item(entry, None, base=BASE, source="list",
                                         source_url=None, seen_at=SEEN))
    assert expected == "SoftwareSystemsLaboratory/PTM-Torrent"
    assert item.github_repos == [expected.lower()]
    assert item.owner == expected.split("/")[0]
