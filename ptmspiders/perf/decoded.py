"""A list page decoded once: the retry middleware's check hands its result to the spider.

The retry middleware decodes a JSON answer to tell a malformed one from a good one
(:func:`ptmspiders.middlewares.retry.malformed_reason`); the spider then decodes the same
bytes again. With ``PTM_PERF_DECODE_ONCE`` the middleware keeps what it decoded here, keyed by
the body object, and the spider's :func:`ptmspiders.hub_answers.load_json` of that very object
takes it instead of decoding again. Bytes cannot be weakly referenced, so the key is the
object's ``id()`` with the object itself kept beside it (an ``id`` reused by another object
never matches), and at most a few entries live at once.
"""

from __future__ import annotations

from typing import Any

_KEPT: dict[int, tuple[bytes, Any]] = {}
_KEPT_MAX = 4
MISSING = object()


def keep(body: bytes, data: Any) -> None:
    """Hand ``data``, decoded from ``body``, to the next :func:`take` of the same object."""
    if len(_KEPT) >= _KEPT_MAX:  # never taken (an error path): let them go
        _KEPT.clear()
    _KEPT[id(body)] = (body, data)


def take(body: bytes) -> Any:
    """What :func:`keep` kept for this very object, once; :data:`MISSING` if nothing."""
    kept = _KEPT.pop(id(body), None)
    return kept[1] if kept is not None and kept[0] is body else MISSING
