"""One spelling per fact across hubs, applied to every item before validation."""

from __future__ import annotations

from typing import Any

from scrapy.crawler import Crawler

from ptmspiders import normalize as n
from ptmspiders.items import ModelItem


class NormalizePipeline:
    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NormalizePipeline:
        return cls(crawler)

    # A coroutine, as all the project's stages: Scrapy awaits it as it is, where a plain return
    # value gets a coroutine built around it per stage and item (~2 us of three stages' ~6 per
    # model at hub scale). None of them awaits anything, so an item passes a stage in one step.
    async def process_item(self, item: Any) -> Any:
        if isinstance(item, ModelItem):
            normalize_model(item)
        return item


def normalize_model(item: ModelItem) -> ModelItem:
    """Normalise in place: dates, license, libraries, GitHub repos, papers (also from tags)."""
    item.created_at = n.iso_utc(item.created_at)
    item.last_modified = n.iso_utc(item.last_modified)
    item.license = n.normalize_license(item.license)
    item.tags = n.dedupe(item.tags)
    item.tasks = n.dedupe(item.tasks)
    item.datasets = n.dedupe(item.datasets)
    item.libraries = n.dedupe([n.normalize_library(lib) for lib in item.libraries])
    item.github_repos = n.github_repos(item.github_repos, allow_bare=True)
    found = n.papers_from_tags(item.tags)  # already de-duplicated: alone, it is the answer
    item.papers = found if item.papers == [] else n.dedupe([*n.papers(item.papers), *found])
    return item
