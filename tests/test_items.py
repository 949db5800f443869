"""The document classes, the published JSON Schemas generated from them, and validation."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from itemadapter import ItemAdapter
from pydantic import ValidationError

from ptmspiders import schema
from ptmspiders.items import DOCUMENTS, ModelItem, OwnerItem, field_names, to_doc, validate
from ptmspiders.pipelines.validate import load_schema, schema_error


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_checked_in_schema_is_generated_from_the_class(name):
    """Run ``python -m ptmspiders.schema`` after changing a document class."""
    assert schema.path(name).read_text() == schema.schema_text(DOCUMENTS[name]), name


@pytest.mark.parametrize("cls", list(DOCUMENTS.values()))
def test_every_field_is_published_and_required(cls):
    published = load_schema(cls.schema_name)
    assert list(published["properties"]) == list(field_names(cls)) == published["required"]
    assert field_names(cls)[0] == "_id"


# The fields the model document was specified with (the project's founding issue).
SPECIFIED_MODEL_FIELDS = {
    "_id", "hub", "hub_id", "name", "owner", "url", "owner_url", "tasks", "libraries",
    "architectures", "tags", "datasets", "papers", "github_repos", "license", "downloads",
    "likes", "created_at", "last_modified", "latest_commit_sha", "gated", "private", "files",
    "card", "raw", "crawl",
}


def test_model_schema_requires_every_specified_field():
    assert set(load_schema("model")["required"]) >= SPECIFIED_MODEL_FIELDS


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
    ({"downloads": "5"}, "invalid_downloads"),  # strict: no coercion of hub strings
    ({"gated": 1}, "invalid_gated"),
    ({"papers": ["1810.04805"]}, "invalid_papers"),
    ({"github_repos": ["https://github.com/a/b"]}, "invalid_github_repos"),
    ({"created_at": "yesterday"}, "invalid_created_at"),
    ({"card": {"present": True}}, "missing_field"),
    ({"files": [{"size": 3}]}, "missing_field"),
    ({"files": [{"path": "w.bin", "size": -3}]}, "invalid_files"),
    ({"crawl": {}}, "missing_field"),
    ({"enrichment": {"steps": ["cards"]}}, "invalid_enrichment"),
])
def test_validation_rejects_bad_values(change, reason):
    doc = to_doc(_model(**change))
    assert schema_error("model", doc) == reason
    with pytest.raises(ValidationError):  # the class and its generated schema agree
        validate(_model(**change))


def test_a_value_that_is_not_json_is_invalid():
    assert schema_error("model", to_doc(_model(tags={"a"}))) == "invalid_tags"


def test_owner_orgs_are_unique():
    owner = OwnerItem(_id="huggingface:o", hub="huggingface", name="o", orgs=["a", "a"])
    assert schema_error("owner", to_doc(owner)) == "invalid_orgs"
    with pytest.raises(ValidationError):
        validate(owner)


def test_construction_is_unchecked():
    """Parsers build items unchecked: ValidatePipeline validates once, after normalising."""
    assert _model(downloads=-1).downloads == -1
    validate(_model())


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


def test_itemadapter_sees_the_documents_keys():
    item = _model()
    assert ItemAdapter(item).asdict() == to_doc(item)


@pytest.mark.parametrize("cls", list(DOCUMENTS.values()))
def test_schema_page_names_every_field(cls):
    """docs/schema.md describes each document's fields: a new field needs its line there."""
    page = (Path(__file__).parent.parent / "docs" / "schema.md").read_text()
    # The model's table, or the paragraph naming the document's schema file.
    start = page.index("| field |" if cls is ModelItem
                       else f"`ptmspiders/schema/{cls.schema_name}.schema.json`")
    section = page[start:page.find("\n\n", start)]
    missing = [f for f in field_names(cls) if f"`{f}`" not in section]
    assert not missing, f"docs/schema.md does not describe {cls.__name__}: {missing}"
