"""Documents cut to a size bound (``PTM_MAX_DOC_BYTES``) instead of growing without one.

Hub text sets a document's size: a front matter, a card's headings, a ``cardData`` blob. Past the
bound, :func:`fit` cuts the largest fields first, each only as far as needed: a string keeps its
start, a list its first elements, an object its keys with their values cut (in the free-form
``raw`` and ``extra`` whole keys may go). Identity fields are never cut. What was cut is recorded
in the document, as ``extra.truncated: [{"field": "raw.summary", "bytes": 123456}, ...]``, so a
study can tell a cut value from a short one. Sizes are those of the document as JSON text (what
SQLite stores; a MongoDB document takes about as much as BSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

Doc = dict[str, Any]

DEFAULT_MAX_DOC_BYTES = 1_000_000
MIN_MAX_DOC_BYTES = 16_384
# What no store can hold (MongoDB refuses documents over 16 MiB; a margin for BSON's overhead):
# a document whose identity alone is larger is dropped, one between the two bounds is kept.
HARD_MAX_DOC_BYTES = 16 * 1024 * 1024 - 65_536
# Never cut: what identifies the document and its crawl.
KEEP = frozenset({"_id", "hub", "hub_id", "name", "model", "sha", "crawl"})
# Free-form objects, where a whole key may go; in the others (card, risk, ...) keys stay.
FREE = frozenset({"raw", "extra"})
MARKER = "truncated"  # extra.truncated
MAX_MARKS = 16  # more cuts than this are summed per top-level field
MAX_PATH = 120  # characters of a recorded field path
_RESERVE = 4096  # bytes left for the marker itself
# Values smaller than this are never cut outside ``raw`` and ``extra``: a date or a short name
# cut short would be invalid, and cutting them gains little against a bound of 16 KB or more.
MIN_CUT = 1024


@dataclass(frozen=True, slots=True)
class Cut:
    field: str  # dotted path of the value that was cut or removed
    bytes: int  # how many bytes of the encoded document went with it


def size_of(value: Any) -> int:
    """Bytes of ``value`` as JSON, encoded as the SQLite store encodes documents."""
    return len(orjson.dumps(value, default=str))


def fit(doc: Doc, size: int, limit: int) -> tuple[Doc, list[Cut]]:
    """A copy of ``doc`` (``size`` bytes as JSON) cut to fit ``limit`` bytes, with the cuts
    recorded in ``extra.truncated`` when the document has an ``extra`` object. When its
    identity fields alone exceed ``limit`` (a 1 MB model id), everything else is cut as far as
    it goes and the copy stays over the bound. ``doc`` and its values are not changed."""
    budget = limit - _RESERVE
    for _ in range(3):
        cuts: list[Cut] = []
        new, _ = _cut_dict(doc, size, budget, "", cuts)
        if isinstance(new.get("extra"), dict):
            new["extra"] = {**new["extra"], MARKER: marks(cuts)}
        over = size_of(new) - limit
        if over <= 0:
            break
        budget = max(budget - over - _RESERVE, 0)  # a marker or rounding: cut harder
    return new, cuts


def marks(cuts: list[Cut]) -> list[dict[str, Any]]:
    """The ``extra.truncated`` entries: one per cut, or per top-level field when many."""
    if len(cuts) > MAX_MARKS:
        summed: dict[str, int] = {}
        for cut in cuts:
            top = cut.field.split(".", 1)[0]
            summed[top] = summed.get(top, 0) + cut.bytes
        cuts = [Cut(name, n) for name, n in summed.items()]
    return [{"field": cut.field[:MAX_PATH], "bytes": cut.bytes} for cut in cuts]


def fields_cut(cuts: list[Cut]) -> list[str]:
    """The top-level fields that lost something, in order, once each."""
    return list(dict.fromkeys(cut.field.split(".", 1)[0] for cut in cuts))


def _cut(value: Any, size: int, target: int, path: str, free: bool,
         cuts: list[Cut]) -> tuple[Any, int]:
    """``value`` (``size`` bytes) cut to about ``target`` bytes, and its new size; a number or
    a boolean stays as it is."""
    if isinstance(value, dict):
        return _cut_dict(value, size, target, path, cuts, free=free)
    if isinstance(value, str):
        new: Any = _cut_str(value, size, target)
    elif isinstance(value, list):
        new = _cut_list(value, target)
    else:
        return value, size
    new_size = size_of(new)
    if new_size < size:
        cuts.append(Cut(path, size - new_size))
    return new, new_size


def _cut_dict(value: Doc, size: int, target: int, path: str, cuts: list[Cut], *,
              free: bool = False) -> tuple[Doc, int]:
    sizes = {key: size_of(v) for key, v in value.items()}
    new = dict(value)
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        excess = size - target
        if excess <= 0 or (sizes[key] < MIN_CUT and not free):
            break
        if not path and key in KEEP:
            continue
        child = f"{path}.{key}" if path else key
        if free and sizes[key] <= excess:
            entry = sizes[key] + size_of(str(key)) + 2  # the value, its key, ":" and ","
            del new[key]
            cuts.append(Cut(child, entry))
            size -= entry
            continue
        new[key], child_size = _cut(value[key], sizes[key], sizes[key] - excess, child,
                                    free or (not path and key in FREE), cuts)
        size -= sizes[key] - child_size
    return new, size


def _cut_str(value: str, size: int, target: int) -> str:
    keep = len(value) * max(0, target - 2) // max(1, size - 2)
    cut = value[:keep]
    while keep and size_of(cut) > target:  # escapes and multi-byte characters take more
        keep = keep * 9 // 10
        cut = value[:keep]
    return cut


def _cut_list(value: list[Any], target: int) -> list[Any]:
    used = 2  # []
    for i, element in enumerate(value):
        used += size_of(element) + (1 if i else 0)
        if used > target:
            return value[:i]
    return value
