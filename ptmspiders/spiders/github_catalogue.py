"""Base of the hubs whose catalogue is files in a GitHub repository.

One ``git/trees`` call lists the repository; the subclass picks its catalogue files; each file
is read from the raw host and turned into items by a pure parser. Every document records the
file's path and git blob sha (``extra.path``, ``extra.blob_sha``), so the next crawl skips files
whose sha did not change: one batched store lookup per tree, not one per file.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from pydantic import Field
from scrapy import Request
from scrapy.http import Response

from ptmspiders.args import RESTRICTS, Names, SpiderParams
from ptmspiders.config import ptm_settings
from ptmspiders.github import RepoRef, TreeEntry, git_blob_sha, parse_tree, raw_url, trees_url
from ptmspiders.hub_answers import BadResponse
from ptmspiders.spiders.base import PtmSpider
from ptmspiders.stores import crawler_store

logger = logging.getLogger(__name__)

TREE_PRIORITY = 10
RUN_META = "ptm_run"  # which run scheduled a request (a JOBDIR queue outlives its run)


@dataclass(frozen=True, slots=True)
class StoredDoc:
    """What the store holds of one document that came from a catalogue file."""

    collection: str
    _id: str
    blob_sha: str | None
    fields: dict[str, Any]


def at_or_below(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or lies in the folder ``prefix`` (as ``-a paths`` means)."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


class CatalogueParams(SpiderParams):
    """Arguments of the GitHub-hosted catalogues."""

    paths: Names = Field(
        default_factory=list, json_schema_extra=RESTRICTS,
        description="comma-separated: only the catalogue files at or below these paths")


class GithubCatalogueSpider(PtmSpider[CatalogueParams]):
    """Subclasses set ``setting_prefix`` (``<prefix>_REPO`` / ``<prefix>_REF`` settings, in
    ptmspiders/config.py), :meth:`is_catalogue_file` and :meth:`parse_file`."""

    setting_prefix: ClassVar[str]
    # The store collections this hub writes: where the incremental lookup searches.
    collections: ClassVar[tuple[str, ...]] = ("models",)
    # Further stored fields a subclass needs to decide whether a file is unchanged.
    lookup_fields: ClassVar[tuple[str, ...]] = ()

    repo: RepoRef

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored: dict[str, list[StoredDoc]] = {}  # catalogue path -> stored documents
        self.run = uuid.uuid4().hex

    async def start(self) -> AsyncIterator[Request]:
        prefix, config = self.setting_prefix, ptm_settings(self.crawler)
        self.repo = RepoRef.parse(config.value(f"{prefix}_REPO"), config.value(f"{prefix}_REF"))
        self.api_url = config.github_api_url
        self.raw_base = config.github_raw_url
        # dont_filter on the tree and every file read: with JOBDIR, a restarted crawl reads
        # the tree again and the store (blob shas) decides what is left to read, not the
        # dupefilter, which would drop them all and with them files changed at the same URL.
        yield self.json_request(trees_url(self.api_url, self.repo), expect="object",
                                callback=self.parse_tree, errback=self.errback_tree,
                                priority=TREE_PRIORITY, dont_filter=True,
                                meta={RUN_META: self.run},
                                headers={"Accept": "application/vnd.github+json",
                                         "X-GitHub-Api-Version": "2022-11-28"})

    # -- what subclasses provide -------------------------------------------------------------
    def is_catalogue_file(self, path: str) -> bool:
        raise NotImplementedError

    def file_expect(self, path: str) -> str | None:
        """``ptm_expect`` of a catalogue file that must be JSON (``"list"``, ``"object"``):
        malformed reads are then retried. ``None`` (the default) for other formats."""
        return None

    def parse_file(self, entry: TreeEntry, body: bytes, *, source_url: str,
                   seen_at: str) -> Iterable[Any]:
        """Items (and follow-up requests) of one catalogue file; raise
        :class:`BadResponse` when the whole file is unusable."""
        raise NotImplementedError

    # -- the tree ----------------------------------------------------------------------------
    def stale(self, request: Request | None) -> bool:
        """A request queued by an earlier run in this JOBDIR (a graceful stop keeps Scrapy's
        queue): this run reads the tree again and schedules its own, so the old one is
        ignored (each file is read once, tfhub's collections still come first)."""
        if request is None or request.meta.get(RUN_META, self.run) == self.run:
            return False
        self.count("stale_requests")
        logger.debug("Ignored %s, queued by an earlier run", request.url)
        return True

    def errback_tree(self, failure: Any) -> None:
        if not self.stale(getattr(failure, "request", None)):
            self.errback_listing(failure)

    def parse_tree(self, response: Response) -> Iterator[Request]:
        if self.stale(response.request):
            return
        try:
            tree = parse_tree(response.body)
        except BadResponse as exc:
            self.bad_response(response, exc, what="git tree")
            self.mark_incomplete(f"tree_{exc.reason}")
            return
        if tree.truncated:
            # GitHub cut the listing: what is missing must not be taken as removed.
            self.mark_incomplete("tree_truncated")
        files = [e for e in tree.blobs() if self.is_catalogue_file(e.path) and self.wanted(e.path)]
        self.count("catalogue_files", len(files))
        unmatched = [p for p in self.args.paths if not any(at_or_below(e.path, p) for e in files)]
        if unmatched:  # a typo in -a paths was a crawl of nothing, exit 0 and not a word
            self.count("paths_unmatched", len(unmatched))
            logger.warning("-a paths: no catalogue file at or below %s in %s@%s",
                           ", ".join(unmatched), self.repo.full_name, self.repo.ref)
        logger.info("%s@%s (tree %s): %d catalogue files of %d entries", self.repo.full_name,
                    self.repo.ref, tree.sha[:12], len(files), len(tree.entries))
        self.stored = self.stored_by_path()
        yield from self.schedule(files, self.stored)

    def wanted(self, path: str) -> bool:
        paths = self.args.paths
        return not paths or any(at_or_below(path, p) for p in paths)

    def schedule(self, files: list[TreeEntry],
                 stored: dict[str, list[StoredDoc]]) -> Iterator[Request]:
        """Requests for the catalogue files that changed since the last crawl."""
        for entry in files:
            if not self.skip_unchanged(entry, stored):
                yield self.file_request(entry)

    def file_request(self, entry: TreeEntry, **kwargs: Any) -> Request:
        meta: dict[str, Any] = {"ptm_path": entry.path, RUN_META: self.run}
        expect = self.file_expect(entry.path)
        if expect is not None:
            # The raw host serves text/plain: the body decides. One malformed as committed
            # (same blob sha) is not retried; parse_file_response logs and counts it.
            meta.update(ptm_expect=expect, ptm_git_blob=entry.sha)
        return Request(raw_url(self.raw_base, self.repo, entry.path),
                       callback=self.parse_file_response, errback=self.errback_file,
                       cb_kwargs={"entry": entry}, meta=meta, dont_filter=True, **kwargs)

    # -- incremental -------------------------------------------------------------------------
    def stored_by_path(self) -> dict[str, list[StoredDoc]]:
        """Every stored document of this hub by catalogue path: one projected lookup per
        collection. Empty without a store."""
        if not ptm_settings(self.crawler).store_enabled:
            return {}
        store = crawler_store(self.crawler)
        fields = ["extra.path", "extra.blob_sha", *self.lookup_fields]
        by_path: dict[str, list[StoredDoc]] = {}
        for collection in self.collections:
            ids = store.ids(collection, {"hub": self.hub})
            for _id, doc in store.get_many(collection, ids, fields=fields).items():
                path = doc.get("extra.path")
                if isinstance(path, str):
                    sha = doc.get("extra.blob_sha")
                    by_path.setdefault(path, []).append(StoredDoc(
                        collection, _id, sha if isinstance(sha, str) else None, doc))
        return by_path

    def skip_unchanged(self, entry: TreeEntry, stored: dict[str, list[StoredDoc]]) -> bool:
        docs = stored.get(entry.path)
        if self.args.full or not docs or any(d.blob_sha != entry.sha for d in docs) \
                or not self.still_current(entry, docs):
            return False
        for doc in docs:
            self.note_unchanged(doc.collection, doc._id)
        self.count("unchanged_files")
        self.count("unchanged_documents", len(docs))
        return True

    def still_current(self, entry: TreeEntry, docs: Sequence[StoredDoc]) -> bool:
        """Hook: an unchanged file whose documents must still be rebuilt (say, because
        another file they link to changed) returns False."""
        return True

    # -- one file ----------------------------------------------------------------------------
    def parse_file_response(self, response: Response, entry: TreeEntry) -> Iterator[Any]:
        if self.stale(response.request):
            return
        actual = git_blob_sha(response.body)
        if actual != entry.sha:
            # The branch moved between the tree call and this read: record what was parsed.
            self.count("blob_sha_mismatch")
            logger.warning("%s: raw content has blob sha %s, the tree said %s", entry.path,
                           actual, entry.sha)
            entry = replace(entry, sha=actual)
        try:
            results = list(self.parse_file(entry, response.body, source_url=response.url,
                                           seen_at=self.seen_at()))
        except BadResponse as exc:
            self.skip_file(entry.path, exc.reason, exc.detail)
            self.keep_stored(entry.path)
            return
        except Exception:
            # A parser bug on one odd file must not stop the others (nor, for tfhub, the
            # files scheduled after the collections): logged with its traceback and counted.
            logger.exception("Parser error on catalogue file %s", entry.path)
            self.skip_file(entry.path, "parser_error")
            self.keep_stored(entry.path)
            return
        self.count("files_parsed")
        for result in results:
            if not isinstance(result, Request):
                self.stamp(result, entry)
            yield result

    def keep_stored(self, path: str) -> None:
        """The hub still lists the file: what an earlier crawl stored from it is not removed."""
        for doc in self.stored.get(path, ()):
            self.note_unchanged(doc.collection, doc._id)

    @staticmethod
    def stamp(item: Any, entry: TreeEntry) -> Any:
        extra = getattr(item, "extra", None)
        if isinstance(extra, dict):
            extra["path"] = entry.path
            extra["blob_sha"] = entry.sha
        return item

    def skip_file(self, path: str, reason: str, detail: str = "") -> None:
        """A catalogue file that yields no document: logged with its path and counted."""
        self.count("skipped")
        self.count(f"skipped/{reason}")
        logger.warning("Skipped catalogue file %s: %s%s", path, reason,
                       f" ({detail})" if detail else "")

    def reject(self, path: str, label: str, reason: str) -> None:
        """One unusable entry inside an otherwise usable catalogue file."""
        self.count("rejected")
        self.count(f"rejected/{reason}")
        logger.warning("Skipped an entry of %s: %s (%s)", path, reason, label)

    def errback_file(self, failure: Any) -> None:
        """A listed catalogue file that could not be read: its documents were not seen."""
        request = getattr(failure, "request", None)
        if self.stale(request):
            return
        path = request.meta.get("ptm_path", "?") if request is not None else "?"
        self.count("failed/raw")
        logger.error("Catalogue file %s could not be read: %s", path, failure.getErrorMessage())
        self.mark_incomplete("raw_failed")
