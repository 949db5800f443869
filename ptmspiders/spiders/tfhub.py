"""TF Hub: every document under ``assets/docs/`` of ``tensorflow/tfhub.dev``.

Collections are read first, so that each model document can carry the collections that list it
(``extra.collections``); an unchanged model file is refetched when that membership changed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from scrapy import Request
from scrapy.http import Response

from ptmspiders.github import TreeEntry
from ptmspiders.items import CollectionItem, ModelItem
from ptmspiders.parsers import tfhub as parser
from ptmspiders.spiders.github_catalogue import GithubCatalogueSpider, StoredDoc

logger = logging.getLogger(__name__)


def is_collection_path(path: str) -> bool:
    """``assets/docs/<publisher>/collections/...``: where the catalogue keeps Collections."""
    parts = path.split("/")
    return len(parts) > 4 and parts[3] == "collections"


class TfhubSpider(GithubCatalogueSpider):
    name = "tfhub"
    hub = parser.HUB
    setting_prefix = "PTM_TFHUB"
    collections = ("models", "owners", "collections")
    lookup_fields = ("extra.collections", "members")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.members: dict[str, list[str]] = {}  # collection _id -> member handles
        self.pending_collections = 0
        self.later: list[TreeEntry] = []
        self.membership: dict[str, list[str]] = {}  # member handle -> collection _ids

    def is_catalogue_file(self, path: str) -> bool:
        return parser.is_doc_path(path)

    def schedule(self, files: list[TreeEntry],
                 stored: dict[str, list[StoredDoc]]) -> Iterator[Request]:
        first: list[TreeEntry] = []
        for entry in files:
            if not entry.path.lower().endswith(".md"):
                self.skip_file(entry.path, "not_markdown")
            elif is_collection_path(entry.path):
                first.append(entry)
            else:
                self.later.append(entry)
        for entry in first:
            if self.skip_unchanged(entry, stored):
                for doc in stored[entry.path]:
                    members = doc.fields.get("members")
                    if doc.collection == "collections" and isinstance(members, list):
                        self.members[doc._id] = [str(m) for m in members]
                continue
            self.pending_collections += 1
            yield self.file_request(entry, priority=5).replace(
                callback=self.parse_collection_file, errback=self.errback_collection_file)
        if self.pending_collections == 0:
            yield from self.schedule_models()

    def parse_collection_file(self, response: Response, entry: TreeEntry) -> Iterator[Any]:
        if self.stale(response.request):  # not one of this run's pending collections
            return
        yield from self.parse_file_response(response, entry)
        yield from self.collection_done()

    def errback_collection_file(self, failure: Any) -> Iterator[Request]:
        if self.stale(getattr(failure, "request", None)):
            return
        self.errback_file(failure)
        yield from self.collection_done()

    def collection_done(self) -> Iterator[Request]:
        self.pending_collections -= 1
        if self.pending_collections == 0:
            yield from self.schedule_models()

    def schedule_models(self) -> Iterator[Request]:
        self.membership = {}
        for collection_id, members in sorted(self.members.items()):
            for handle in members:
                self.membership.setdefault(handle, []).append(collection_id)
        later, self.later = self.later, []
        for entry in later:
            if not self.skip_unchanged(entry, self.stored):
                yield self.file_request(entry)

    def collections_of(self, hub_id: str) -> list[str]:
        found = self.membership.get(hub_id, []) + self.membership.get(parser.handle(hub_id), [])
        return sorted(set(found))

    def still_current(self, entry: TreeEntry, docs: Sequence[StoredDoc]) -> bool:
        if is_collection_path(entry.path):
            return True
        for doc in docs:
            if doc.collection == "models":
                stored = doc.fields.get("extra.collections") or []
                if sorted(stored) != self.collections_of(doc._id.split(":", 1)[1]):
                    return False
        return True

    def parse_file(self, entry: TreeEntry, body: bytes, *, source_url: str,
                   seen_at: str) -> Iterable[Any]:
        item = parser.parse_document(body, path=entry.path, blob_sha=entry.sha,
                                     source_url=source_url, seen_at=seen_at)
        if isinstance(item, CollectionItem):
            self.members[item._id] = item.members
            if not is_collection_path(entry.path):
                logger.warning("Collection %s outside a collections/ folder (%s): its members "
                               "are not linked back this crawl", item.hub_id, entry.path)
        elif isinstance(item, ModelItem):
            item.extra["collections"] = self.collections_of(item.hub_id)
        self.count(f"documents/{item.extra.get('doc_type', '?')}")
        return [item]
