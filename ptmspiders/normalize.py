"""Pure normalisation functions shared by every hub: dates, licenses, GitHub repos, papers.

Hubs write the same fact many ways (``Apache 2.0``, ``apache-2.0``, ``Apache License 2.0``;
``https://github.com/Owner/Repo.git``, ``github.com/owner/repo/blob/main/x.py``). Studies that
join hubs need one spelling, so every document passes through these before it is stored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

# The pure string functions below see the same few thousand spellings millions of times in a
# sweep (licenses, libraries, popular GitHub repos and papers): bounded caches make them cheap.
_cached = functools.lru_cache(maxsize=16384)

_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def iso_utc(value: Any) -> str | None:
    """ISO 8601 UTC with a ``Z``; ``None`` for anything that is not a recognisable date.

    Epoch numbers are accepted as seconds (or milliseconds when too large for seconds).
    Millisecond precision is kept when the hub gives it, so unchanged values compare equal.
    """
    if isinstance(value, str):  # first: every model has two dates, in the Hub's own form
        return _iso_text(value.strip())
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        if seconds > 1e11:
            seconds /= 1000.0
        try:
            dt = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return _fmt(dt, with_ms=seconds != int(seconds))
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return _fmt(dt.astimezone(UTC), with_ms=dt.microsecond != 0)
    return None


def _iso_text(text: str) -> str | None:
    if len(text) == 24 and text[23] == "Z" and text[10] == "T" and text[19] == ".":
        return text  # already canonical (the Hub's own format): the hot path
    m = _ISO_RE.match(text)
    if not m:
        return None
    year, month, day, hh, mm, ss, frac, tz = m.groups()
    try:
        dt = datetime(
            int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0),
            int((frac or "0")[:6].ljust(6, "0")), tzinfo=UTC,
        )
    except ValueError:
        return None
    if tz and tz.upper() != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        dt = datetime.fromtimestamp(dt.timestamp() - offset * 60, tz=UTC)
    return _fmt(dt, with_ms=frac is not None)


def _fmt(dt: datetime, *, with_ms: bool) -> str:
    if with_ms:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


# Spellings seen on the hubs mapped to lower-case SPDX ids. Keys are compared after
# lower-casing and squeezing spaces, underscores and the word "license".
_LICENSE_ALIASES: dict[str, str] = {
    "apache2": "apache-2.0",
    "apache2.0": "apache-2.0",
    "apache-2": "apache-2.0",
    "apache-2.0": "apache-2.0",
    "apacheversion2.0": "apache-2.0",
    "asl2.0": "apache-2.0",
    "mit": "mit",
    "themit": "mit",
    "expat": "mit",
    "bsd": "bsd",
    "bsd-2-clause": "bsd-2-clause",
    "bsd2-clause": "bsd-2-clause",
    "simplifiedbsd": "bsd-2-clause",
    "bsd-3-clause": "bsd-3-clause",
    "bsd3-clause": "bsd-3-clause",
    "newbsd": "bsd-3-clause",
    "bsd-3": "bsd-3-clause",
    "gpl": "gpl",
    "gpl-2.0": "gpl-2.0",
    "gplv2": "gpl-2.0",
    "gpl-3.0": "gpl-3.0",
    "gplv3": "gpl-3.0",
    "gpl3": "gpl-3.0",
    "agpl-3.0": "agpl-3.0",
    "agplv3": "agpl-3.0",
    "lgpl-2.1": "lgpl-2.1",
    "lgpl-3.0": "lgpl-3.0",
    "lgplv3": "lgpl-3.0",
    "mpl-2.0": "mpl-2.0",
    "mozillapublic2.0": "mpl-2.0",
    "cc0": "cc0-1.0",
    "cc0-1.0": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0",
    "ccby4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "ccby-sa4.0": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0",
    "ccby-nc4.0": "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "cc-by-nc-nd-4.0": "cc-by-nc-nd-4.0",
    "cc-by-3.0": "cc-by-3.0",
    "cc-by-sa-3.0": "cc-by-sa-3.0",
    "unlicense": "unlicense",
    "wtfpl": "wtfpl",
    "isc": "isc",
    "zlib": "zlib",
    "openrail": "openrail",
    "openrail++": "openrail++",
    "creativeml-openrail-m": "creativeml-openrail-m",
    "bigscience-openrail-m": "bigscience-openrail-m",
    "bigscience-bloom-rail-1.0": "bigscience-bloom-rail-1.0",
    "llama2": "llama2",
    "llama3": "llama3",
    "llama3.1": "llama3.1",
    "llama3.2": "llama3.2",
    "llama3.3": "llama3.3",
    "gemma": "gemma",
    "other": "other",
    "unknown": "unknown",
}

_SPDX_LIKE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


def _license_key(text: str) -> str:
    key = text.strip().lower()
    key = re.sub(r"\blicen[cs]e\b", "", key)
    key = key.replace("version", "").replace("_", "-")
    key = re.sub(r"\s+", "", key)
    return key.strip("-,;")


def normalize_license(value: Any) -> str | None:
    """Lower-case SPDX-style id when recognisable, else the hub's own string (trimmed)."""
    if value is None:
        return None
    if isinstance(value, list):
        parts = [p for p in (normalize_license(v) for v in value) if p]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else " OR ".join(dict.fromkeys(parts))
    return _license_text(value if isinstance(value, str) else str(value))


@_cached
def _license_text(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    key = _license_key(text)
    if key in _LICENSE_ALIASES:
        return _LICENSE_ALIASES[key]
    compact = key.replace("-", "")
    for alias, spdx in _LICENSE_ALIASES.items():
        if alias.replace("-", "") == compact:
            return spdx
    if _SPDX_LIKE.match(text.lower()) and text.lower() == text:
        return text
    return text


_GITHUB_RE = re.compile(
    r"""(?:https?://|git\+https?://|git://|ssh://git@|git@)?(?:www\.)?github\.com[/:]
        ([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9_.-]+)""",
    re.IGNORECASE | re.VERBOSE,
)
_BARE_REPO_RE = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9_.-]+)$")
_NOT_REPOS = {"orgs", "sponsors", "topics", "features", "marketplace", "settings", "about"}


def github_repo(value: Any, *, allow_bare: bool = False) -> str | None:
    """``owner/repo`` (lower-case) from any GitHub URL; ``None`` when it names no repository.

    ``allow_bare`` accepts a plain ``owner/repo`` (catalogue fields such as ``github-id``).
    """
    if not isinstance(value, str):
        return None
    return _github_repo_text(value, allow_bare)


@_cached
def _github_repo_text(value: str, allow_bare: bool) -> str | None:
    text = value.strip().strip("<>()[]\"'")
    m = _GITHUB_RE.search(text)
    if m is None:
        if not allow_bare:
            return None
        m = _BARE_REPO_RE.match(text)
        if m is None:
            return None
    owner, repo = m.group(1), m.group(2)
    if repo.lower().endswith(".git"):
        repo = repo[:-4]
    repo = repo.rstrip(".")
    if not repo or owner.lower() in _NOT_REPOS:
        return None
    return f"{owner}/{repo}".lower()


def github_repos(values: Iterable[Any], *, allow_bare: bool = False) -> list[str]:
    return dedupe([github_repo(v, allow_bare=allow_bare) for v in values])


_ARXIV_URL_RE = re.compile(
    r"arxiv\.org/(?:abs|pdf|html)/((?:\d{4}\.\d{4,5})|(?:[a-z-]+(?:\.[A-Z]{2})?/\d{7}))(?:v\d+)?",
    re.IGNORECASE,
)
_ARXIV_ID_RE = re.compile(r"^(?:arxiv:)?\s*((?:\d{4}\.\d{4,5})|(?:[a-z-]+/\d{7}))(?:v\d+)?$", re.I)
_DOI_RE = re.compile(r"(?:doi:\s*|doi\.org/)?(10\.\d{4,9}/[^\s\"<>]+)", re.IGNORECASE)


def paper_id(value: Any) -> str | None:
    """``arxiv:<id>`` or ``doi:<doi>`` (lower-case) from a tag, an id or a URL."""
    if not isinstance(value, str):
        return None
    return _paper_text(value)


@_cached
def _paper_text(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    m = _ARXIV_URL_RE.search(text)
    if m:
        return f"arxiv:{m.group(1)}"
    m = _ARXIV_ID_RE.match(text)
    if m:
        return f"arxiv:{m.group(1)}"
    lowered = text.lower()
    if lowered.startswith(("doi:", "https://doi.org/", "http://doi.org/", "https://dx.doi.org/"))\
            or lowered.startswith("10."):
        m = _DOI_RE.search(text)
        if m:
            return "doi:" + m.group(1).rstrip(".,;)").lower()
    return None


def papers(values: Iterable[Any]) -> list[str]:
    return dedupe([paper_id(v) for v in values])


# ``arxiv:`` and ``doi:10`` in any case, ``doi:`` as written. A compiled match in ``filter``
# tests a model's dozen tags without a Python step per tag: this ran for every model of a
# sweep and cost more than the rest of the tag handling.
_PAPER_TAG = re.compile(r"(?i:arxiv:|doi:10)|doi:").match


def papers_from_tags(tags: Iterable[str]) -> list[str]:
    """Paper ids from hub tags such as ``arxiv:1810.04805`` or ``doi:10.57967/hf/0003``."""
    if isinstance(tags, list):
        # Most models have no paper tag: one lower-cased string of the tags says so in C,
        # where the match above costs a call per tag. ASCII only: the match's IGNORECASE
        # also takes the dotless and the dotted capital i (U+0131, U+0130) for "i", and
        # lower() does not turn either into a plain "i".
        text = "\n".join(tags)
        if text.isascii():
            text = text.lower()
            if "arxiv:" not in text and "doi:" not in text:
                return []
    found = list(filter(_PAPER_TAG, tags))
    return papers(found) if found else []


def dedupe(values: Iterable[Any]) -> list[Any]:
    """Order-preserving de-duplication that drops ``None`` and empty strings."""
    if values.__class__ is list:
        if len(values) < 2:  # most of a model's lists (hot path)
            return [] if not values or values[0] is None or values[0] == "" else [values[0]]
        # Most longer lists (tags) have nothing to drop: a set and two scans in C say so
        # faster than the dict below (0.54 against 0.67 us for a model's dozen tags).
        if len(set(values)) == len(values) and None not in values and "" not in values:
            return values[:]
    # Dedupe first, then drop the two unwanted keys: no per-value generator step (hot path).
    unique = dict.fromkeys(values)
    unique.pop(None, None)
    unique.pop("", None)
    return list(unique)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, tuple | set):
        return list(value)
    return [value]


def as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value >= 0 and value == value:
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        if text.isdigit():
            return int(text)
    return None


_LIBRARY_ALIASES = {
    "tf": "tensorflow",
    "tensorflow2": "tensorflow",
    "tf2": "tensorflow",
    "tf1": "tensorflow",
    "torch": "pytorch",
    "tensorflow.js": "tfjs",
    "tensorflowjs": "tfjs",
    "tf.js": "tfjs",
    "tf-lite": "tflite",
    "tensorflow lite": "tflite",
    "tensorflow-lite": "tflite",
    "lite": "tflite",
    "scikit-learn": "sklearn",
    "mx-net": "mxnet",
    "apache mxnet": "mxnet",
    "caffe 2": "caffe2",
    "paddle": "paddlepaddle",
}


def normalize_library(value: Any) -> str | None:
    """Lower-case library/framework name with common aliases folded (``tf`` -> tensorflow)."""
    if not isinstance(value, str):
        return None
    return _library_text(value)


@_cached
def _library_text(value: str) -> str | None:
    key = value.strip().lower()
    if not key:
        return None
    return _LIBRARY_ALIASES.get(key, key)
