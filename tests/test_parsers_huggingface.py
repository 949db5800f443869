"""The Hub parser on the project's own fixtures (the Hub's list/detail formats)."""

import json
from pathlib import Path

import pytest

from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import to_doc
from ptmspiders.parsers import huggingface as hf
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error

FIX = Path(__file__).parent / "fixtures" / "huggingface"
EP = "https://huggingface.co"
SEEN = "2026-11-25T12:00:00.000Z"


def entries():
    return json.loads((FIX / "models.json").read_text())


def parse(entry):
    return hf.parse_model(entry, endpoint=EP, source_url="u", seen_at=SEEN)


def by_id(repo_id):
    return next(e for e in entries() if e["id"] == repo_id)


def test_every_fixture_entry_parses_normalises_and_validates():
    for entry in entries():
        item = normalize_model(parse(entry))
        assert schema_error("model", to_doc(item)) is None, entry["id"]
        assert item._id == f"huggingface:{entry['id']}"
        assert item.raw is entry


def test_fields_taken_from_the_api():
    item = normalize_model(parse(by_id("acme-ai/bert-base-cased")))
    assert item.owner == "acme-ai"
    assert item.url == "https://huggingface.co/acme-ai/bert-base-cased"
    assert item.owner_url == "https://huggingface.co/acme-ai"
    assert item.tasks == ["fill-mask"]
    assert item.libraries == ["transformers", "pytorch", "tensorflow"]
    assert item.architectures == ["BertForMaskedLM"]
    assert item.datasets == ["bookcorpus", "wikipedia"]
    assert item.papers == ["arxiv:1810.04805"]
    assert item.license == "apache-2.0"
    assert item.downloads == 5234567 and item.likes == 812
    assert item.created_at is None  # the Hub's placeholder date means unknown
    assert item.last_modified == "2024-06-01T12:00:00.000Z"
    assert item.gated is False and item.private is False
    assert item.parameters == 108310272
    assert {"path": "model.safetensors", "size": None, "sha256": None} in item.files
    assert item.card == {"present": True, "has_model_index": False}


def test_gated_license_name_base_models_and_github_links():
    item = normalize_model(parse(by_id("lumen-labs/llama-lite-8b-instruct")))
    assert item.gated is True and item.gated_mode == "manual"
    assert item.license == "llama-lite-community"  # license: other + license_name
    assert item.base_models == ["lumen-labs/llama-lite-8b"]
    assert item.github_repos == ["lumen-labs/llama-lite"]
    assert item.created_at == "2024-07-18T08:56:00.000Z"


def test_prefixed_tags_siblings_and_github_links_of_any_card():
    """The parser's shortcuts (tags joined once, a card's JSON text searched for GitHub
    links) find what the per-value passes find, also in a card that is not JSON."""
    entry = {
        "id": "o/m",
        "tags": ["license:mit", "dataset:squad", "dataset:squad", "base_model:finetune:a/b",
                 "base_model:quantized:c/d", "pytorch", 7, "Dataset:no"],
        "siblings": [{"rfilename": "model.bin", "size": 5, "lfs": {"sha256": "ab", "size": 9}},
                     {"rfilename": "x.json"}, {"rfilename": 3}, "README.md",
                     {"rfilename": "README.md"}],
        "cardData": {"links": [{"code": "see (https://github.com/o/r)"}]},
    }
    item = parse(entry)
    assert item.license == "mit"
    assert item.datasets == ["squad"]
    assert item.base_models == ["a/b", "c/d"]
    assert item.libraries == ["pytorch"]
    assert item.files == [{"path": "model.bin", "size": 5, "sha256": "ab"},
                          {"path": "x.json", "size": None, "sha256": None},
                          {"path": "README.md", "size": None, "sha256": None}]
    assert item.card["present"] is True
    assert item.github_repos == ["https://github.com/o/r"]
    not_json = {**entry, "cardData": {1: "x", "repo": "github.com/o/r2"},
                "siblings": [{"rfilename": "a.bin"}]}
    item = parse(not_json)
    assert item.github_repos == ["github.com/o/r2"] and item.card["present"] is False
    assert parse({**entry, "cardData": {"big": 2**70, "r": "github.com/o/r3"}}
                 ).github_repos == ["github.com/o/r3"]
    assert parse({**entry, "cardData": {"r": "gitlab.com/o/r"}}).github_repos == []


def test_model_index_papers_doi_and_string_datasets():
    item = normalize_model(parse(by_id("acme-ai/t5-small-summarize")))
    assert item.card["has_model_index"] is True
    assert item.papers == ["arxiv:1910.10683", "doi:10.57967/hf/0001"]
    assert item.datasets == ["cnn_dailymail"]
    assert item.license == "mit"


def test_legacy_model_without_owner_and_missing_card():
    legacy = parse(by_id("distil-legacy"))
    assert legacy.owner is None and legacy.owner_url is None and legacy.name == "distil-legacy"
    no_card = parse(by_id("jdoe/tiny-random-gpt"))
    assert no_card.card["present"] is False
    assert no_card.license is None


def test_expand_subset_leaves_other_fields_empty():
    item = parse({"_id": "x1", "id": "o/m", "sha": "abc"})
    assert item.latest_commit_sha == "abc"
    assert item.tags == [] and item.downloads is None and item.card["present"] is None


def test_page_with_bad_entries_keeps_the_good_ones():
    body = json.dumps([by_id("jdoe/keras-mnist"), {"no": "id"}, 42]).encode()
    items, rejects = hf.parse_models_page(body, endpoint=EP, source_url=None, seen_at=SEEN)
    assert [i.hub_id for i in items] == ["jdoe/keras-mnist"]
    assert [r for _, r in rejects] == ["entry_without_id", "entry_not_object"]


@pytest.mark.parametrize(("body", "reason"), [
    (b"<html>Bad gateway</html>", "html_instead_of_json"),
    (b'[{"id": "a/b"', "truncated_json"),
    (b'{"error": "x"}', "wrong_shape"),
    (b"", "empty_body"),
])
def test_unusable_pages_raise_with_a_reason(body, reason):
    with pytest.raises(BadResponse) as exc:
        hf.parse_models_page(body, endpoint=EP, source_url=None, seen_at=SEEN)
    assert exc.value.reason == reason


def test_list_url_uses_repeated_expand_and_clamps_the_page_size():
    url = hf.list_url(EP, limit=5000, author="acme-ai", filters=["bert", "en"], sort="downloads",
                      expand=["sha", "tags"])
    assert url == ("https://huggingface.co/api/models?limit=1000&author=acme-ai&filter=bert"
                   "&filter=en&sort=downloads&direction=-1&expand=sha&expand=tags")


def test_owner_parsers():
    owners = json.loads((FIX / "owners.json").read_text())
    org = hf.parse_owner(json.dumps(owners["organizations"]["acme-ai"]).encode(), name="acme-ai",
                         kind="org", endpoint=EP, source_url=None, seen_at=SEEN)
    assert (org._id, org.type, org.is_verified, org.num_models) == (
        "huggingface:acme-ai", "org", True, 3)
    user = hf.parse_owner(json.dumps(owners["users"]["msmith"]).encode(), name="msmith",
                          kind="user", endpoint=EP, source_url=None, seen_at=SEEN)
    assert (user.type, user.is_verified, user.is_pro) == ("user", False, True)
    assert user.orgs == [] and org.orgs == []


def test_user_overview_lists_the_users_organisations():
    owners = json.loads((FIX / "owners.json").read_text())
    user = hf.parse_owner(json.dumps(owners["users"]["jdoe"]).encode(), name="jdoe",
                          kind="user", endpoint=EP, source_url=None, seen_at=SEEN)
    assert user.orgs == ["acme-ai", "reading-club"]
    # Entries of another shape are skipped; a repeated name is kept once.
    body = {"type": "user", "name": "x", "orgs": [
        {"name": "a"}, "b", {"fullname": "no name"}, {"name": ""}, {"name": 3}, {"name": "a"},
        None, {"name": "c", "fullname": "C"}]}
    assert hf.parse_owner(json.dumps(body).encode(), name="x", kind="user", endpoint=EP,
                          source_url=None, seen_at=SEEN).orgs == ["a", "c"]
    body = {"type": "user", "name": "x", "orgs": {"name": "a"}}
    assert hf.parse_owner(json.dumps(body).encode(), name="x", kind="user", endpoint=EP,
                          source_url=None, seen_at=SEEN).orgs == []
    # An organisation's overview has no member organisations, whatever it carries.
    body = {"name": "o", "orgs": [{"name": "a"}]}
    assert hf.parse_owner(json.dumps(body).encode(), name="o", kind="org", endpoint=EP,
                          source_url=None, seen_at=SEEN).orgs == []
