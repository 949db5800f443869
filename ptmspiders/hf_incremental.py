"""Incremental recrawls: which listed models deserve their per-model requests, and what an
unchanged model keeps from the enrichment an earlier crawl stored.

The Hub's list call gives every model's ``sha``; card, files and commits only change with it.
So a recrawl spends detail requests on new and changed repositories only, and re-emits the
others with their stored enrichment carried over, so a list-only pass never erases it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ptmspiders.items import ModelItem

# Hugging Face fields that only per-model requests (``HfModelsSpider.enrich``) fill completely.
# The list gives a thin version of some (``card.present``, file names): for an unchanged model
# the stored value wins. Enrichment that adds a field adds its name here.
HF_CARRIED_FIELDS: tuple[str, ...] = ("card", "files", "risk", "enrichment")


def needs_refresh(listed_sha: str | None, stored: Mapping[str, Any] | None) -> bool:
    """New to the store, without a known sha, or at another commit than the one stored."""
    if stored is None or listed_sha is None:
        return True
    return stored.get("latest_commit_sha") != listed_sha


def carry_over(item: ModelItem, stored: Mapping[str, Any] | None,
               fields: Iterable[str] = HF_CARRIED_FIELDS) -> ModelItem:
    """Fill ``fields`` of a freshly listed, unchanged model from its stored document."""
    if not stored:
        return item
    for name in fields:
        setattr(item, name, carried_value(getattr(item, name, None), stored.get(name)))
    return item


def carried_value(new: Any, old: Any) -> Any:
    """Stored enrichment beats the list's thinner view of the same commit.

    Objects merge (stored keys win, keys only the list has are kept); lists keep the richer of
    the two (more filled-in values); other values keep the new one unless it is unknown.
    """
    if old is None:
        return new
    if isinstance(new, dict) and isinstance(old, dict):
        return {**new, **old}
    if isinstance(new, list) and isinstance(old, list):
        return old if _richness(old) > _richness(new) else new
    return old if new is None else new


def _richness(values: list[Any]) -> int:
    score = 0
    for v in values:
        if isinstance(v, dict):
            score += 1 + sum(1 for x in v.values() if x not in (None, [], {}))
        elif v is not None:
            score += 1
    return score


def stored_fields(fields: Iterable[str] = HF_CARRIED_FIELDS) -> list[str]:
    """What the one per-page store lookup fetches: the sha and the carried fields."""
    return ["latest_commit_sha", *fields]

