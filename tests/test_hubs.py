"""The registry of hubs (ptmspiders/hubs.py) agrees with the spiders, the schemas and settings."""

from __future__ import annotations

import re

import pytest
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings

from ptmspiders.config import PtmSettings
from ptmspiders.hubs import HUBS, SERVICES, unknown_hubs
from ptmspiders.pipelines.validate import load_schema

SCHEMAS = ("model", "owner", "commit", "collection")


def spiders() -> dict[str, type]:
    loader = SpiderLoader.from_settings(get_project_settings())
    return {name: loader.load(name) for name in loader.list()}


def test_every_spider_hub_is_a_registry_key() -> None:
    # A hub-agnostic spider (one that reads every hub, such as packages) has no ``hub`` or
    # records its crawls under its own name.
    hubs = {name: getattr(cls, "hub", None) for name, cls in spiders().items()}
    assert {name: hub for name, hub in hubs.items()
            if hub is not None and hub != name and hub not in HUBS} == {}


def test_every_registry_spider_exists_and_crawls_its_hub() -> None:
    found = spiders()
    for hub in HUBS.values():
        assert hub.spiders, hub.key
        for name in hub.spiders:
            assert name in found, f"{hub.key}: no spider {name!r}"
            assert found[name].hub == hub.key
    # ... and every spider of a hub is listed under it.
    listed = {name for hub in HUBS.values() for name in hub.spiders}
    assert {n for n, cls in found.items() if getattr(cls, "hub", None) in HUBS} == listed


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schema_hub_enum_is_the_registry(schema: str) -> None:
    props = load_schema(schema)["properties"]
    assert props["hub"]["enum"] == list(HUBS)
    alternatives = re.fullmatch(r"\^\(([^)]*)\):.*", props["_id"]["pattern"])
    assert alternatives is not None
    assert alternatives.group(1).split("|") == list(HUBS)


def test_services_name_settings_that_exist() -> None:
    settings = PtmSettings.from_settings(get_project_settings())
    for service in SERVICES.values():
        assert settings.value(service.url_setting), service.key
        if service.buckets:
            assert service.window_setting is not None
            assert settings.value(service.window_setting) == service.window, service.key
        for tier, quotas in service.tiers.items():
            assert len(quotas) == len(service.buckets), (service.key, tier)
    used = {s.key for hub in HUBS.values() for s in hub.services}
    assert used == set(SERVICES)


def test_unknown_hubs() -> None:
    assert unknown_hubs(["huggingface", "nohub", "HuggingFace"]) == ["HuggingFace", "nohub"]
    assert unknown_hubs(HUBS) == []
