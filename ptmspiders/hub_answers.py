"""Decoding hub answers: JSON bodies and ``Link`` headers, with errors that say what went wrong.

A hub under load answers with HTML error pages, truncated bodies or JSON of another shape; each
becomes a :class:`BadResponse` with a short machine-readable ``reason`` that the retry logic and
the ``ptm/bad_response/<reason>`` stats use.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ptmspiders.perf import decoded


class BadResponse(ValueError):
    """A hub answer that cannot be used; ``reason`` is a short stats-friendly word."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def load_json(body: bytes, expect: type | tuple[type, ...] | None = None, *,
              keep: bool = False) -> Any:
    """Decode a JSON body, classifying the failure when it is not one.

    ``keep``: the caller does not use or change the result; the next call for the same body
    object receives it instead of decoding again (:mod:`ptmspiders.perf.decoded`).
    """
    data = decoded.take(body)
    if data is decoded.MISSING:
        data = _decode(body)
    if expect is not None and not isinstance(data, expect):
        kinds = (expect,) if isinstance(expect, type) else expect
        names = "/".join(t.__name__ for t in kinds)
        raise BadResponse("wrong_shape", f"expected {names}, got {type(data).__name__}")
    if keep:
        decoded.keep(body, data)
    return data


class UndecodableEntry:
    """An entry of a JSON array that could not be decoded alone (``reason``: why), in place of
    the entry. Parsers reject it like any entry of the wrong shape; the array's other entries
    are kept."""

    __slots__ = ("reason", "size")

    def __init__(self, reason: str, size: int) -> None:
        self.reason = reason
        self.size = size

    def __repr__(self) -> str:
        return f"<undecodable entry: {self.reason}, {self.size} bytes>"


# orjson's message for nesting deeper than its limit (1024): the whole document fails.
_TOO_DEEP = "depth limit exceeded"
ENTRY_TOO_DEEP = "entry_too_deep"
# The tokens that matter for splitting a container: strings (skipped whole, brackets inside
# them are text) and the structural characters.
_TOKEN_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.DOTALL)
_KEY_RE = re.compile(rb'\s*("[^"\\]*(?:\\.[^"\\]*)*")\s*:', re.DOTALL)


def _split(body: bytes, start: int) -> tuple[list[tuple[int, int]], int] | None:
    """The spans of the elements (an object's ``"key": value`` members) of the array or object
    that opens at ``body[start]``, and where it closes; ``None`` if it never does. A flat
    scan, without recursion."""
    spans: list[tuple[int, int]] = []
    depth = 0
    first = start + 1
    for m in _TOKEN_RE.finditer(body, start):
        char = body[m.start()]
        if char == 0x22:  # '"': a string, skipped whole
            continue
        if char in (0x5B, 0x7B):  # '[' or '{'
            depth += 1
        elif char in (0x5D, 0x7D):  # ']' or '}'
            depth -= 1
            if depth == 0:
                if spans or body[first:m.start()].strip():  # "[]" has no element
                    spans.append((first, m.start()))
                return spans, m.start()
        elif depth == 1:  # ',' between two elements
            spans.append((first, m.start()))
            first = m.end()
    return None


def _entries(body: bytes, start: int, end: int) -> list[Any] | None:
    """The array ``body[start:end]`` entry by entry, an entry nested too deep replaced by an
    :class:`UndecodableEntry`; ``None`` if any other entry, or the array, is broken."""
    split = _split(body, start)
    if split is None or body[split[1] + 1:end].strip() or body[split[1]] != 0x5D:
        return None
    entries: list[Any] = []
    for a, b in split[0]:
        try:
            entries.append(orjson.loads(body[a:b]))
        except orjson.JSONDecodeError as exc:
            if exc.msg != _TOO_DEEP:
                return None
            entries.append(UndecodableEntry(ENTRY_TOO_DEEP, b - a))
    return entries


def _decode_entries(body: bytes) -> Any | None:
    """A document that failed on nesting depth, decoded so that an entry nested too deep costs
    only itself: a top-level array entry by entry, or a top-level object member by member with
    the array members entry by entry (a page ``{"models": [...], "nextPageToken": ...}``).
    ``None`` when anything else is broken or too deep (the page is then as unusable as orjson
    said). It runs only on this error path, never for a well-formed page."""
    if body[:1] == b"[":
        return _entries(body, 0, len(body))
    split = _split(body, 0)
    if split is None or body[split[1] + 1:].strip() or body[split[1]] != 0x7D:
        return None
    data: dict[str, Any] = {}
    for a, b in split[0]:
        key = _KEY_RE.match(body, a)
        if key is None:
            return None
        try:
            name = orjson.loads(key.group(1))
            data[name] = orjson.loads(body[key.end():b])
        except orjson.JSONDecodeError as exc:
            value = body[key.end():b].lstrip()
            if exc.msg != _TOO_DEEP or value[:1] != b"[":
                return None
            entries = _entries(body, b - len(value), b)
            if entries is None:
                return None
            data[name] = entries
    return data


def _decode(body: bytes) -> Any:
    stripped = body.lstrip()
    if not stripped:
        raise BadResponse("empty_body")
    if stripped[:1] == b"<":
        raise BadResponse("html_instead_of_json", stripped[:60].decode("utf-8", "replace"))
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if exc.msg == _TOO_DEEP:
            tolerant = _decode_entries(stripped)
            if tolerant is not None:
                return tolerant
        opened = stripped[:1] in (b"{", b"[")
        closed = body.rstrip()[-1:] in (b"}", b"]")
        raise BadResponse("truncated_json" if opened and not closed else "invalid_json",
                          str(exc)) from None
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
