"""Rate-limit response headers -> numbers, as pure functions (no Scrapy, no clock).

Three dialects reach us: the IETF draft the Hugging Face Hub speaks (``RateLimit:
"api";r=12;t=55`` with ``RateLimit-Policy: "fixed window";"api";q=500;w=300``), the draft's
older ``limit=, remaining=, reset=`` variant, and GitHub's ``X-RateLimit-Limit/Remaining/Reset``
(reset as epoch seconds). ``Retry-After`` is seconds or an HTTP-date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

_PARAM_RE = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')


@dataclass(frozen=True)
class RateLimitState:
    """What one ``RateLimit`` field says: ``remaining`` requests, window ends in ``reset`` s."""

    name: str | None
    remaining: int | None
    reset: float | None
    limit: int | None = None


@dataclass(frozen=True)
class RateLimitPolicy:
    name: str | None
    quota: int
    window: float | None


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        number = float(raw.strip().strip('"'))
    except ValueError:
        return None
    return number if number >= 0 else None


def _members(text: str) -> list[tuple[str | None, dict[str, str]]]:
    """Split a structured-field list into (quoted name or None, parameters) members.

    ``"fixed window";"api";q=500;w=300`` is one member whose leading quoted strings are
    ``fixed window`` and ``api``; the name is the last leading quoted string.
    """
    members = []
    for chunk in _split_top(text, ","):
        name: str | None = None
        params: dict[str, str] = {}
        for part in _split_top(chunk, ";"):
            part = part.strip()
            if not part:
                continue
            if part.startswith('"') and part.endswith('"') and len(part) >= 2:
                name = part[1:-1]
                continue
            m = _PARAM_RE.fullmatch(part)
            if m:
                params[m.group(1).lower()] = m.group(2).strip('"')
            elif "=" not in part:
                name = part  # a bare token name
        members.append((name, params))
    return members


def _split_top(text: str, sep: str) -> list[str]:
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


def parse_ratelimit(value: str | bytes | None) -> list[RateLimitState]:
    """``RateLimit`` (draft-ietf-httpapi-ratelimit-headers), either dialect.

    ``"api";r=0;t=55`` -> remaining 0, reset 55 s; ``limit=100, remaining=5, reset=30`` (the
    older draft, one comma-separated dictionary) -> one state with all three.
    """
    text = _text(value).strip()
    if not text:
        return []
    members = _members(text)
    flat: dict[str, str] = {}
    for name, params in members:
        if name is None:
            flat.update(params)
    if any(k in flat for k in ("remaining", "reset", "limit")):
        remaining = _number(flat.get("remaining"))
        limit = _number(flat.get("limit"))
        return [RateLimitState(None, None if remaining is None else int(remaining),
                               _number(flat.get("reset")),
                               None if limit is None else int(limit))]
    states = []
    for name, params in members:
        if "r" not in params and "t" not in params:
            continue
        remaining = _number(params.get("r"))
        states.append(RateLimitState(name, None if remaining is None else int(remaining),
                                     _number(params.get("t"))))
    return states


def parse_ratelimit_policy(value: str | bytes | None) -> list[RateLimitPolicy]:
    """``RateLimit-Policy``: ``"fixed window";"api";q=500;w=300`` -> api: 500 per 300 s.

    Also the older ``100;w=60`` form (quota as the bare first token).
    """
    text = _text(value).strip()
    if not text:
        return []
    policies = []
    for chunk in _split_top(text, ","):
        first = chunk.split(";", 1)[0].strip()
        name, params = _members(chunk)[0]
        quota = _number(params.get("q"))
        if quota is None and re.fullmatch(r"\d+", first):
            quota = float(first)
            name = None
        if quota is None:
            continue
        policies.append(RateLimitPolicy(name, int(quota), _number(params.get("w"))))
    return policies


def parse_retry_after(value: str | bytes | None, now_epoch: float) -> float | None:
    """``Retry-After`` in seconds from now: delta-seconds or an HTTP-date (RFC 9110)."""
    text = _text(value).strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_epoch)


@dataclass(frozen=True)
class GithubRateLimit:
    limit: int | None
    remaining: int | None
    reset_in: float | None  # seconds from now
    resource: str | None


def parse_github_ratelimit(headers: dict[str, str], now_epoch: float) -> GithubRateLimit | None:
    """GitHub's ``X-RateLimit-*`` (lower-cased header names -> values); ``None`` if absent."""
    limit = _number(headers.get("x-ratelimit-limit"))
    remaining = _number(headers.get("x-ratelimit-remaining"))
    reset_epoch = _number(headers.get("x-ratelimit-reset"))
    if limit is None and remaining is None and reset_epoch is None:
        return None
    return GithubRateLimit(
        None if limit is None else int(limit),
        None if remaining is None else int(remaining),
        None if reset_epoch is None else max(0.0, reset_epoch - now_epoch),
        headers.get("x-ratelimit-resource") or None,
    )
