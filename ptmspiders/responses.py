"""Decoding hub answers: JSON bodies and ``Link`` headers, with errors that say what went wrong.

A hub under load answers with HTML error pages, truncated bodies or JSON of another shape; each
becomes a :class:`BadResponse` with a short machine-readable ``reason`` that the retry logic and
the ``ptm/bad_response/<reason>`` stats use.
"""

from __future__ import annotations

import re
from typing import Any

import orjson


class BadResponse(ValueError):
    """A hub answer that cannot be used; ``reason`` is a short stats-friendly word."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def load_json(body: bytes, expect: type | tuple[type, ...] | None = None) -> Any:
    """Decode a JSON body, classifying the failure when it is not one."""
    stripped = body.lstrip()
    if not stripped:
        raise BadResponse("empty_body")
    if stripped[:1] == b"<":
        raise BadResponse("html_instead_of_json", stripped[:60].decode("utf-8", "replace"))
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        opened = stripped[:1] in (b"{", b"[")
        closed = body.rstrip()[-1:] in (b"}", b"]")
        raise BadResponse("truncated_json" if opened and not closed else "invalid_json",
                          str(exc)) from None
    if expect is not None and not isinstance(data, expect):
        kinds = (expect,) if isinstance(expect, type) else expect
        names = "/".join(t.__name__ for t in kinds)
        raise BadResponse("wrong_shape", f"expected {names}, got {type(data).__name__}")
    return data


_LINK_RE = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+=(?:"[^"]*"|[^;,]*)\s*)*)')
_PARAM_RE = re.compile(r';\s*([^;=\s]+)\s*=\s*(?:"([^"]*)"|([^;,\s]*))')


def parse_link_header(value: str | bytes | None) -> dict[str, str]:
    """``rel`` -> URL from an RFC 8288 ``Link`` header (the Hub's and GitHub's paging)."""
    if not value:
        return {}
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    links: dict[str, str] = {}
    for m in _LINK_RE.finditer(text):
        url, params = m.group(1), m.group(2)
        for pm in _PARAM_RE.finditer(params):
            if pm.group(1).lower() == "rel":
                for rel in (pm.group(2) or pm.group(3) or "").split():
                    links.setdefault(rel.lower(), url)
    return links
