"""modelhub.ai's real models.json (33 models), its config schema and example configs."""

from __future__ import annotations

import json
from pathlib import Path

import fastjsonschema
import pytest

from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import to_doc
from ptmspiders.parsers import modelhub as p
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error
from tests.conftest import FIXTURES

pytestmark = pytest.mark.conformance


@pytest.fixture
def folder(hubdata: Path) -> Path:
    return hubdata / "modelhub"


def build(entry: p.IndexEntry, config: dict | None, error: str | None = None):
    item = normalize_model(p.parse_model(
        entry, config, config_error=error, index_path="models.json", blob_sha=None,
        source_url=None, config_url=None, seen_at="2025-01-01T00:00:00Z"))
    assert schema_error("model", to_doc(item)) is None, entry.name
    return item


def test_every_index_entry_is_a_document(folder):
    entries, rejects = p.parse_index((folder / "models.json").read_bytes())
    assert rejects == [] and len(entries) == 33
    items = {e.name: build(e, None, "not_fetched") for e in entries}
    assert len({i._id for i in items.values()}) == 33
    squeeze = items["squeezenet"]
    assert squeeze.hub_uid == "d50796da-87f2-4493-846e-6eeb498acc63"
    assert squeeze.libraries == ["mxnet", "onnx"]
    assert squeeze.github_repos == ["modelhub-ai/squeezenet"]
    assert squeeze.description == "ImageNet classification"
    deepcontrast = items["colab_deepcontrast"]
    assert deepcontrast.hub_uid == "0000" and deepcontrast.libraries == ["tensorflow"]
    dental = next(e for e in entries if e.repo.owner == "bhklab")
    assert dental.repo.repo == "DentalArtifactModel"  # case kept for the raw URL
    assert sum(i.extra["gpu"] is not None for i in items.values()) == 2


def test_example_configs(folder):
    entries, _ = p.parse_index((folder / "models.json").read_bytes())
    multi = p.parse_config((folder / "example_config_multiple_inputs.json").read_bytes())
    item = build(entries[0], multi)
    assert item.title.startswith("Demo Config for a multiple inputs")
    assert set(item.extra["io"]["input"]) >= {"format", "t1"}
    assert item.extra["publication"]["year"] == 1800
    # The real single-input example lacks a comma: a counted config error, not a crash.
    with pytest.raises(BadResponse) as exc:
        p.parse_config((folder / "example_config_single_input.json").read_bytes())
    assert exc.value.reason == "invalid_json"


def test_project_fixture_configs_follow_the_real_schema(folder):
    validate = fastjsonschema.compile(json.loads((folder / "config_schema.json").read_text()))
    configs = sorted((FIXTURES / "github").glob("*/*/*/contrib_src/model/config.json"))
    valid = [c for c in configs if "broken" not in str(c)]
    assert len(valid) == 3
    for config in valid:
        validate(json.loads(config.read_text()))
