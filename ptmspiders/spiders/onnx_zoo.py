"""ONNX Model Zoo: ``ONNX_HUB_MANIFEST.json`` of ``onnx/models``, one document per entry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ptmspiders.github import TreeEntry
from ptmspiders.parsers import onnx_zoo as parser
from ptmspiders.spiders.github_catalogue import GithubCatalogueSpider


class OnnxZooSpider(GithubCatalogueSpider):
    name = "onnx_zoo"
    hub = parser.HUB
    setting_prefix = "PTM_ONNX_ZOO"

    def is_catalogue_file(self, path: str) -> bool:
        return path == parser.MANIFEST

    def file_expect(self, path: str) -> str | None:
        return "list"

    def parse_file(self, entry: TreeEntry, body: bytes, *, source_url: str,
                   seen_at: str) -> Iterable[Any]:
        items, rejects = parser.parse_manifest(body, repo=self.repo, path=entry.path,
                                               blob_sha=entry.sha, source_url=source_url,
                                               seen_at=seen_at)
        for label, reason in rejects:
            self.reject(entry.path, label, reason)
        return items
