"""modelhub.ai: ``models.json`` of ``modelhub-ai/modelhub``, then each model's config.json
from its own repository (raw reads, outside the REST quota).

The index's blob sha decides the incremental skip; a config changed in a model's own
repository without an index change is picked up by ``-a full=1``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from scrapy.http import Response

from ptmspiders.github import TreeEntry, raw_url
from ptmspiders.hub_answers import BadResponse
from ptmspiders.items import ModelItem
from ptmspiders.parsers import modelhub as parser
from ptmspiders.spiders.base import URL_TOO_LONG, count_url_too_long, url_too_long
from ptmspiders.spiders.github_catalogue import RUN_META, GithubCatalogueSpider

logger = logging.getLogger(__name__)


class ModelhubSpider(GithubCatalogueSpider):
    name = "modelhub"
    hub = parser.HUB
    setting_prefix = "PTM_MODELHUB"

    def is_catalogue_file(self, path: str) -> bool:
        return path == parser.INDEX

    def file_expect(self, path: str) -> str | None:
        return "list"

    def parse_file(self, entry: TreeEntry, body: bytes, *, source_url: str,
                   seen_at: str) -> Iterable[Any]:
        models, rejects = parser.parse_index(body)
        for label, reason in rejects:
            self.reject(entry.path, label, reason)
        self.count("index_entries", len(models))
        for model in models:
            url = raw_url(self.raw_base, model.repo, parser.CONFIG_PATH)
            meta = {"ptm_model": model, "ptm_entry": entry, "ptm_index_url": source_url}
            if url_too_long(self.settings, url):  # UrlLengthMiddleware would drop it silently
                count_url_too_long(self.crawler.stats, url, what="model config")
                yield self.model_item(meta, None, URL_TOO_LONG, url)
                continue
            # Each model's own repository: no blob sha known, so a malformed config is
            # retried before parse_config records it (config_errors/<reason>).
            yield self.json_request(
                url, expect="object", callback=self.parse_config, errback=self.errback_config,
                dont_filter=True, meta={**meta, "handle_httpstatus_list": [404],
                                        RUN_META: self.run})

    def parse_config(self, response: Response) -> Iterator[ModelItem]:
        if self.stale(response.request):
            return
        config: dict[str, Any] | None = None
        error: str | None = None
        if response.status == 404:
            error = "not_found"
        else:
            try:
                config = parser.parse_config(response.body)
            except BadResponse as exc:
                error = exc.reason
        yield self.model_item(response.meta, config, error, response.url)

    def errback_config(self, failure: Any) -> Iterator[ModelItem]:
        request = failure.request
        if self.stale(request):
            return
        yield self.model_item(request.meta, None, "request_failed", request.url)

    def model_item(self, meta: dict[str, Any], config: dict[str, Any] | None,
                   error: str | None, url: str) -> ModelItem:
        model: parser.IndexEntry = meta["ptm_model"]
        entry: TreeEntry = meta["ptm_entry"]
        if error is not None:
            self.count(f"config_errors/{error}")
            logger.warning("modelhub %s: config %.200s unusable (%s); stored from the index only",
                           model.name, url, error)
        item = parser.parse_model(model, config, config_error=error, index_path=entry.path,
                                  blob_sha=entry.sha, source_url=meta["ptm_index_url"],
                                  config_url=url, seen_at=self.seen_at())
        return self.stamp(item, entry)
