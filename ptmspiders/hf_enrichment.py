"""What the Hub's list lacks, fetched only for models whose ``sha`` changed: the model card, the
file tree with security scans, and the commits with their signature status.

Each model walks a chain of steps (``card`` -> ``files`` -> ``commits``), the item riding in
``cb_kwargs``; a step that fails records a gap in ``enrichment.gaps`` and the chain goes on, so
the item is always yielded. ``enrichment.steps`` lists the steps done for the model's sha (a
step that failed for a passing reason is left out, so the next crawl retries it). Settings:
``PTM_HF_CARDS``, ``PTM_HF_FILES``, ``PTM_HF_COMMITS`` (switches), ``PTM_HF_SIGNATURE_METHOD``
(git|html|api), ``PTM_HF_GNUPGHOME``, ``PTM_HF_GIT_CONCURRENCY``, ``PTM_HF_GIT_TIMEOUT``,
``PTM_HF_COMMITS_MAX``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from scrapy import Request, Spider, signals
from scrapy.http import Response

from ptmspiders.config import PtmSettings, ptm_settings
from ptmspiders.context import crawl_context
from ptmspiders.hub_answers import BadResponse, parse_link_header
from ptmspiders.items import CommitItem, ModelItem
from ptmspiders.middlewares.auth import origin
from ptmspiders.origins import REFUSED_REASON, RefusedLink, follow, next_link
from ptmspiders.parsers import hf_repo
from ptmspiders.parsers.hf_card import parse_card
from ptmspiders.signatures import (
    GitConfig,
    GitSignatureReader,
    SignatureError,
    parse_commits_html,
)
from ptmspiders.spiders.base import URL_TOO_LONG, count_url_too_long, url_too_long

logger = logging.getLogger(__name__)

# The git probe's redirects are answered here rather than followed by Scrapy: one to another
# origin is refused (the clone would follow it with the token), one on the hub is followed.
REDIRECTS = (301, 302, 303, 307, 308)
MAX_GIT_REDIRECTS = 5
GIT_REFS = "/info/refs?service=git-upload-pack"
# Gaps that another try will not fill: the step counts as done (no retry every crawl).
LASTING_GAPS = frozenset({"http_401", "http_403", "http_404", "repo_not_found",
                          URL_TOO_LONG})
# What the next page of a step keeps of its request's meta (the rest is per-request state of
# the downloader middlewares: retries, waits, slots, redirects).
PAGE_META = frozenset({"handle_httpstatus_list", "ptm_enrich_step", "ptm_expect",
                       "dont_redirect"})


@dataclass(frozen=True)
class EnrichSettings:
    cards: bool
    files: bool
    commits: bool
    method: str
    commits_max: int
    git: GitConfig
    git_concurrency: int

    @classmethod
    def from_settings(cls, s: PtmSettings, env: dict[str, str] | None = None) -> EnrichSettings:
        env = dict(os.environ) if env is None else env
        token = env.get("HF_TOKEN")
        scheme_host = origin(s.hf_endpoint)
        scheme, _, hostport = scheme_host.partition("://")
        if hostport.endswith((":443", ":80")):
            hostport = hostport.rsplit(":", 1)[0]
        return cls(
            cards=s.hf_cards,
            files=s.hf_files,
            commits=s.hf_commits,
            method=s.hf_signature_method,
            commits_max=s.hf_commits_max,
            git=GitConfig(timeout=s.hf_git_timeout, gnupghome=s.hf_gnupghome or None,
                          auth_header=f"Bearer {token}" if token else None,
                          auth_origin=f"{scheme}://{hostport}" if token else None,
                          max_commits=s.hf_commits_max),
            git_concurrency=s.hf_git_concurrency,
        )


def next_page(response: Response, url: str) -> Request:
    """The same step's request for the next page (``url``: checked by
    :func:`ptmspiders.origins.follow`): its own retry budget and rate-limit bookkeeping, not
    what the page before used up."""
    assert response.request is not None
    meta = {k: v for k, v in response.request.meta.items() if k in PAGE_META}
    return response.request.replace(url=url, meta=meta)


def record_gap(item: ModelItem, what: str, reason: str) -> None:
    """Record in ``enrichment.gaps`` what the model's document lacks and why (the record is
    created for a model that no enrichment step ran for)."""
    if item.enrichment is None:
        item.enrichment = {"sha": item.latest_commit_sha, "steps": [], "gaps": {}}
    item.enrichment.setdefault("gaps", {})[what] = reason


def enricher(spider: Spider) -> HfEnricher:
    """The crawl's one enricher (in its context), built on first use."""
    context = crawl_context(spider.crawler)
    if context.enricher is None:
        context.enricher = HfEnricher(spider, EnrichSettings.from_settings(context.settings))
    return context.enricher


class HfEnricher:
    def __init__(self, spider: Spider, config: EnrichSettings) -> None:
        self.spider = spider
        self.config = config
        self.reader = GitSignatureReader(config.git, config.git_concurrency)
        # the throwaway keyring (and any GnuPG daemon in it) goes when the crawl ends
        spider.crawler.signals.connect(self.close, signal=signals.spider_closed, weak=False)

    def close(self) -> None:
        self.reader.close()

    @property
    def endpoint(self) -> str:
        return ptm_settings(self.spider.crawler).hf_endpoint

    def count(self, key: str) -> None:
        stats = self.spider.crawler.stats
        if stats is not None:
            stats.inc_value(f"ptm/enrich/{key}")

    def steps(self) -> list[str]:
        return [step for step, on in (("card", self.config.cards), ("files", self.config.files),
                                      ("commits", self.config.commits)) if on]

    def lacks(self, stored: dict[str, Any] | None) -> bool:
        """A stored model whose enrichment misses a step switched on now (or one that failed
        for a passing reason): refetch it even though its sha is unchanged."""
        wanted = set(self.steps())
        if stored is None or not wanted:
            return False
        done = stored.get("enrichment")
        return not isinstance(done, dict) or bool(wanted - set(done.get("steps") or []))

    def start(self, item: ModelItem) -> Iterator[Any]:
        """Requests of the first step; the chain ends in the commits, then the item (typed
        ``Any`` so the spider's ``Iterator[Request | ModelItem]`` hooks can pass it on)."""
        steps = self.steps()
        if not steps:  # a plain sweep: the item as listed, no enrichment record either
            yield item
            return
        item.enrichment = {"sha": item.latest_commit_sha, "steps": [], "gaps": {}}
        if "card" in steps and item.card.get("present") is False:  # no README.md listed
            item.card = {**parse_card(None), **item.card}
            steps.remove("card")
            item.enrichment["steps"].append("card")
        yield from self.next(item, steps, {"files": [], "commits": []})

    # The chain ------------------------------------------------------------------------------
    def next(self, item: ModelItem, steps: list[str], state: dict[str, Any],
             ) -> Iterator[Request | ModelItem | CommitItem]:
        if not steps:
            yield from self.finish(item, state)
            return
        step, rest = steps[0], steps[1:]
        rev = item.latest_commit_sha or "main"
        # dont_filter: the item rides in cb_kwargs, so a request the dupefilter dropped (a
        # JOBDIR restart refetching a list page) would lose the model.
        kwargs: dict[str, Any] = {"cb_kwargs": {"item": item, "steps": rest, "state": state},
                                  "errback": self.on_error, "dont_filter": True}
        meta: dict[str, Any] = {"handle_httpstatus_list": [401, 403, 404],
                                "ptm_enrich_step": step}
        if step == "card":
            request = Request(hf_repo.readme_url(self.endpoint, item.hub_id, rev),
                              callback=self.on_card, meta=meta, **kwargs)
        elif step == "files":
            request = Request(hf_repo.tree_url(self.endpoint, item.hub_id, rev),
                              callback=self.on_tree, meta={**meta, "ptm_expect": "list"},
                              **kwargs)
        elif self.config.method == "api":
            request = Request(hf_repo.commits_url(self.endpoint, item.hub_id, rev),
                              callback=self.on_commits_api, meta={**meta, "ptm_expect": "list"},
                              **kwargs)
        elif self.config.method == "html":
            request = Request(self.commits_page_url(item.hub_id, rev),
                              callback=self.on_commits_html, meta=meta, **kwargs)
        else:  # git: probe the smart-HTTP refs first, so a gated or missing repo costs no clone
            meta = {**meta, "dont_redirect": True,
                    "handle_httpstatus_list": [*meta["handle_httpstatus_list"], *REDIRECTS]}
            request = Request(f"{self.git_url(item.hub_id)}{GIT_REFS}",
                              callback=self.on_git_refs, meta=meta, **kwargs)
        if url_too_long(self.spider.settings, request.url):
            # Scrapy's UrlLengthMiddleware would drop it, and the item riding on it, silently.
            count_url_too_long(self.spider.crawler.stats, request.url, what=f"{step} request")
            self.gap(item, step, URL_TOO_LONG)
            yield from self.next(item, rest, state)
            return
        yield request

    def git_url(self, repo_id: str) -> str:
        return f"{self.endpoint}/{quote(repo_id, safe='/')}.git"

    def commits_page_url(self, repo_id: str, rev: str) -> str:
        return f"{self.endpoint}/{quote(repo_id, safe='/')}/commits/{quote(rev, safe='')}"

    def done(self, item: ModelItem, step: str) -> None:
        assert item.enrichment is not None
        item.enrichment["steps"].append(step)
        self.count(f"{step}/ok")

    def gap(self, item: ModelItem, step: str, reason: str) -> None:
        record_gap(item, step, reason)
        assert item.enrichment is not None
        if reason in LASTING_GAPS:
            item.enrichment["steps"].append(step)
        self.count(f"{step}/failed/{reason}")
        logger.warning("No %s for %.200s: %s", step, item.hub_id, reason)  # ids can be 1 MB

    def on_error(self, failure: Any) -> Iterator[Request | ModelItem | CommitItem]:
        request = failure.request
        step = request.meta.get("ptm_enrich_step", "unknown")
        kwargs = request.cb_kwargs
        # A redirect off the Hub's origin was refused (logged and counted) before it was sent.
        reason = REFUSED_REASON if isinstance(failure.value, RefusedLink) else "request_failed"
        if step == "commits":
            kwargs["state"]["commits"] = []  # a partial history would read as the whole one
        elif step == "files":
            kwargs["state"]["files"] = []
            kwargs["item"].risk = hf_repo.file_risk(kwargs["item"].files)
        self.gap(kwargs["item"], step, reason)
        logger.debug("%s failed for good: %s", request.url, failure.getErrorMessage())
        yield from self.next(kwargs["item"], kwargs["steps"], kwargs["state"])

    def follow(self, response: Response, link: str) -> str:
        """A next page's URL on the Hub's origin, or :class:`RefusedLink` (counted)."""
        return follow(response, link, self.spider.crawler.stats, what="next link")

    def _http_gap(self, response: Response, item: ModelItem, step: str) -> bool:
        if response.status in (401, 403):
            self.gap(item, step, f"http_{response.status}")
            return True
        return False

    # Steps ------------------------------------------------------------------------------------
    def on_card(self, response: Response, item: ModelItem, steps: list[str],
                state: dict[str, Any]) -> Iterator[Request | ModelItem | CommitItem]:
        if not self._http_gap(response, item, "card"):
            card = parse_card(None if response.status == 404 else response.body)
            error = card.get("front_matter_error")
            if error:  # the card is kept without its front matter: counted, e.g. yaml_expands
                self.count(f"card/front_matter/{error.partition(':')[0]}")
                logger.info("Front matter of %s's card not read: %s", item.hub_id, error)
            card["has_model_index"] = bool(item.card.get("has_model_index")) or bool(
                card["has_model_index"])
            item.card = card
            self.done(item, "card")
        yield from self.next(item, steps, state)

    def on_tree(self, response: Response, item: ModelItem, steps: list[str],
                state: dict[str, Any]) -> Iterator[Request | ModelItem | CommitItem]:
        if self._http_gap(response, item, "files"):
            item.risk = hf_repo.file_risk(item.files)
            yield from self.next(item, steps, state)
            return
        if response.status == 404:
            self.gap(item, "files", "http_404")
            yield from self.next(item, steps, state)
            return
        try:
            state["files"].extend(hf_repo.parse_tree_page(response.body))
        except BadResponse as exc:
            self.gap(item, "files", exc.reason)
            item.risk = hf_repo.file_risk(item.files)  # from the list's file names
            yield from self.next(item, steps, state)
            return
        link = parse_link_header(response.headers.get("Link")).get("next")
        if link:
            try:
                next_url = self.follow(response, link)
            except RefusedLink:  # the rest of the tree is unseen: no partial file list
                state["files"] = []
                self.gap(item, "files", REFUSED_REASON)
                item.risk = hf_repo.file_risk(item.files)
                yield from self.next(item, steps, state)
                return
            yield next_page(response, next_url)
            return
        item.files = state.pop("files")
        state["files"] = []
        item.risk = hf_repo.file_risk(item.files)
        self.done(item, "files")
        yield from self.next(item, steps, state)

    def on_commits_api(self, response: Response, item: ModelItem, steps: list[str],
                       state: dict[str, Any]) -> Iterator[Request | ModelItem | CommitItem]:
        yield from self._commit_page(response, item, steps, state, "api")

    def on_commits_html(self, response: Response, item: ModelItem, steps: list[str],
                        state: dict[str, Any]) -> Iterator[Request | ModelItem | CommitItem]:
        yield from self._commit_page(response, item, steps, state, "html")

    def _commit_page(self, response: Response, item: ModelItem, steps: list[str],
                     state: dict[str, Any], method: str,
                     ) -> Iterator[Request | ModelItem | CommitItem]:
        if self._http_gap(response, item, "commits") or response.status == 404:
            if response.status == 404:
                self.gap(item, "commits", "http_404")
            state["commits"] = []
            yield from self.next(item, steps, state)
            return
        try:
            if method == "api":
                page = [{**c, "signature": "unknown", "signed": None, "signer": None,
                         "signing_key": None, "signature_code": None}
                        for c in hf_repo.parse_commits_page(response.body)]
                next_url = parse_link_header(response.headers.get("Link")).get("next")
            else:
                page, next_url = parse_commits_html(response.body, response.url)
        except BadResponse as exc:
            self.gap(item, "commits", exc.reason)
            state["commits"] = []
            yield from self.next(item, steps, state)
            return
        commits = state["commits"]
        commits.extend(page)
        limit = self.config.commits_max
        if limit and len(commits) >= limit:
            del commits[limit:]
            next_url = None
        if next_url and page:
            try:
                next_url = self.follow(response, next_url)
            except RefusedLink:  # a partial history would read as the whole one
                self.gap(item, "commits", REFUSED_REASON)
                state["commits"] = []
                yield from self.next(item, steps, state)
                return
            yield next_page(response, next_url)
            return
        state["method"] = method
        self.done(item, "commits")
        yield from self.next(item, steps, state)

    async def on_git_refs(self, response: Response, item: ModelItem, steps: list[str],
                          state: dict[str, Any],
                          ) -> AsyncIterator[Request | ModelItem | CommitItem]:
        if response.status in REDIRECTS:
            follow = self.git_redirect(response, item)
            if follow is not None:
                yield follow
                return
        elif self._http_gap(response, item, "commits") or response.status == 404:
            if response.status == 404:
                self.gap(item, "commits", "http_404")
        else:
            try:
                state["commits"] = await self.reader.commits(
                    response.url.removesuffix(GIT_REFS), item.latest_commit_sha)
                state["method"] = "git"
                self.done(item, "commits")
            except SignatureError as exc:
                self.gap(item, "commits", exc.reason)
        for out in self.next(item, steps, state):
            yield out

    def git_redirect(self, response: Response, item: ModelItem) -> Request | None:
        """The probe answered with a redirect: the same request to its target when that is a
        repository's refs on the hub itself (a renamed repository), else a gap."""
        location = response.headers.get("Location")
        hops = int(response.meta.get("ptm_git_redirects", 0)) + 1
        target, reason = "", "redirect_refused"
        if location:
            try:
                target = next_link(self.endpoint, response.url, location.decode("latin-1"))
            except RefusedLink as exc:
                target, reason = exc.url, "redirect_cross_origin"
            else:
                if target.endswith(GIT_REFS) and hops <= MAX_GIT_REDIRECTS:
                    follow = next_page(response, target)
                    follow.meta["ptm_git_redirects"] = hops
                    return follow
        self.gap(item, "commits", reason)
        logger.info("Refused the redirect of %s to %s", response.url, target or "nowhere")
        return None

    def finish(self, item: ModelItem, state: dict[str, Any],
               ) -> Iterator[ModelItem | CommitItem]:
        method = state.get("method", self.config.method)
        crawl = {"first_seen": item.crawl.get("last_seen"), "last_seen": item.crawl.get(
            "last_seen"), "source_url": item.url}
        for c in state["commits"]:
            yield CommitItem(
                _id=f"{item._id}@{c['sha']}", hub=item.hub, model=item._id, sha=c["sha"],
                date=c.get("date"), authors=list(c.get("authors") or []), title=c.get("title"),
                signature=c["signature"], signed=c.get("signed"), signer=c.get("signer"),
                signing_key=c.get("signing_key"), signature_code=c.get("signature_code"),
                signature_method=method, crawl=dict(crawl))
        yield item
