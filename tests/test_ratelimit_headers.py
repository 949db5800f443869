"""Rate-limit header parsing: the IETF draft (both dialects), Retry-After, GitHub's headers."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from ptmspiders.ratelimit_headers import (
    RateLimitPolicy,
    RateLimitState,
    parse_github_ratelimit,
    parse_ratelimit,
    parse_ratelimit_policy,
    parse_retry_after,
)


def test_hub_ratelimit_example_from_the_docs() -> None:
    # The real pair quoted in HUBS.md (hub-docs rate-limits.md).
    assert parse_ratelimit('"api";r=0;t=55') == [RateLimitState("api", 0, 55.0)]
    assert parse_ratelimit_policy('"fixed window";"api";q=500;w=300') == [
        RateLimitPolicy("api", 500, 300.0)]


def test_several_buckets_and_bytes() -> None:
    states = parse_ratelimit(b'"api";r=12;t=40, "resolvers";r=2999;t=40')
    assert [(s.name, s.remaining, s.reset) for s in states] == [
        ("api", 12, 40.0), ("resolvers", 2999, 40.0)]


def test_older_draft_dialect() -> None:
    assert parse_ratelimit("limit=100, remaining=5, reset=30") == [
        RateLimitState(None, 5, 30.0, 100)]
    assert parse_ratelimit_policy("100;w=60") == [RateLimitPolicy(None, 100, 60.0)]


@pytest.mark.parametrize("value", [None, "", "garbage", '"api";x=1'])
def test_unusable_ratelimit_is_empty(value: str | None) -> None:
    assert parse_ratelimit(value) == []
    assert parse_ratelimit_policy(value) == []


def test_negative_or_bad_numbers_are_unknown() -> None:
    assert parse_ratelimit('"api";r=-3;t=abc') == [RateLimitState("api", None, None)]


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now) == 120.0
    later = datetime(2025, 3, 1, 12, 1, 30, tzinfo=UTC)
    assert parse_retry_after(format_datetime(later, usegmt=True), now) == 90.0
    earlier = datetime(2025, 3, 1, 11, 0, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(earlier, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_github_headers() -> None:
    now = 1_700_000_000.0
    gh = parse_github_ratelimit({"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0",
                                 "x-ratelimit-reset": "1700000042",
                                 "x-ratelimit-resource": "core"}, now)
    assert gh is not None
    assert (gh.limit, gh.remaining, gh.reset_in, gh.resource) == (60, 0, 42.0, "core")
    assert parse_github_ratelimit({"content-type": "application/json"}, now) is None
