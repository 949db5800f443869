"""The typed items and the published JSON Schemas must describe the same documents."""

from dataclasses import dataclass

import pytest

from ptmspiders.items import ModelItem, OwnerItem, field_names, to_doc
from ptmspiders.pipelines.validate import load_schema, schema_error

REQUIRED_MODEL_FIELDS = {
    "_id", "hub", "hub_id", "name", "owner", "url", "owner_url", "tasks", "libraries",
    "architectures", "tags", "datasets", "papers", "github_repos", "license", "downloads",
    "likes", "created_at", "last_modified", "latest_commit_sha", "gated", "private", "files",
    "card", "raw", "crawl",
}


@pytest.mark.parametrize("cls", [ModelItem, OwnerItem])
def test_item_fields_match_schema_properties(cls):
    schema = load_schema(cls.schema_name)
    assert set(field_names(cls)) == set(schema["properties"])
    assert set(schema["required"]) <= set(field_names(cls))


def test_model_schema_requires_every_field_the_issue_names():
    assert set(load_schema("model")["required"]) == REQUIRED_MODEL_FIELDS


def _model(**kw):
    base = dict(_id="huggingface:a/b", hub="huggingface", hub_id="a/b", name="b",
                crawl={"first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-01T00:00:00Z",
                       "source_url": None})
    base.update(kw)
    return ModelItem(**base)


def test_default_model_is_valid():
    assert schema_error("model", to_doc(_model())) is None


@pytest.mark.parametrize(("change", "reason"), [
    ({"hub": "nohub"}, "invalid_hub"),
    ({"_id": "b"}, "invalid__id"),
    ({"downloads": -1}, "invalid_downloads"),
    ({"papers": ["1810.04805"]}, "invalid_papers"),
    ({"github_repos": ["https://github.com/a/b"]}, "invalid_github_repos"),
    ({"created_at": "yesterday"}, "invalid_created_at"),
    ({"card": {"present": True}}, "missing_field"),
])
def test_schema_rejects_bad_values(change, reason):
    assert schema_error("model", to_doc(_model(**change))) == reason


def test_to_doc_is_shallow_and_complete():
    item = _model(raw={"big": list(range(3))})
    doc = to_doc(item)
    assert doc["raw"] is item.raw
    assert list(doc) == list(field_names(ModelItem))


def test_to_doc_of_a_one_field_dataclass() -> None:
    """One attrgetter reads every field; with a single field it returns no tuple."""
    @dataclass(slots=True)
    class One:
        a: int

    assert to_doc(One(1)) == {"a": 1}
