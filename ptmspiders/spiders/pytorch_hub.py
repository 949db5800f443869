"""PyTorch Hub: the Markdown catalogue entries at the root of ``pytorch/hub``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ptmspiders.github import TreeEntry
from ptmspiders.parsers import pytorch_hub as parser
from ptmspiders.spiders.github_catalogue import GithubCatalogueSpider


class PytorchHubSpider(GithubCatalogueSpider):
    name = "pytorch_hub"
    hub = parser.HUB
    setting_prefix = "PTM_PYTORCH_HUB"

    def is_catalogue_file(self, path: str) -> bool:
        return parser.is_entry_path(path)

    def parse_file(self, entry: TreeEntry, body: bytes, *, source_url: str,
                   seen_at: str) -> Iterable[Any]:
        return [parser.parse_entry(body, path=entry.path, blob_sha=entry.sha,
                                   source_url=source_url, seen_at=seen_at)]
