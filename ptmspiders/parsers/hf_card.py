"""Model cards (``README.md``) -> the ``card`` object the documentation studies read.

A card "states" a fact when its YAML front matter carries the key, or when a section whose
heading names it has real content: the Hub's card template ships headings such as
``## Evaluation`` filled with ``[More Information Needed]``, and those do not count.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_ATX_RE = re.compile(r"^\s{0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$")
_SETEXT_RE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_PLACEHOLDER_RE = re.compile(
    r"\[more information needed\]|<!--.*?-->|\{\{.*?\}\}|\s|[-*_>|#`]", re.IGNORECASE | re.DOTALL
)

# Heading patterns (lower-cased text) and front matter keys that state each fact.
STATES: dict[str, tuple[re.Pattern[str], tuple[str, ...]]] = {
    "license": (re.compile(r"licen[cs]"), ("license", "license_name", "license_link")),
    "datasets": (re.compile(r"dataset|training data|data sources?"), ("datasets",)),
    "limitations": (re.compile(r"limitation|bias|risk|out-of-scope|out of scope"), ()),
    "evaluation": (re.compile(r"evaluat|result|benchmark|metric|performance"),
                   ("model-index",)),
}


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(YAML text or ``None``, body): front matter is a ``---`` block on the first line."""
    if not text.startswith("---"):
        return None, text
    lines = text.splitlines(keepends=True)
    if lines[0].rstrip() != "---":
        return None, text
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1:])
    return None, text


def headings(body: str) -> list[tuple[int, str, int]]:
    """(level, text, line index) of every ATX or setext heading outside fenced code."""
    found: list[tuple[int, str, int]] = []
    fence: str | None = None
    lines = body.splitlines()
    for i, line in enumerate(lines):
        m = _FENCE_RE.match(line)
        if m:
            marker = m.group(1)[0]
            if fence is None:
                fence = marker
            elif fence == marker:
                fence = None
            continue
        if fence is not None:
            continue
        m = _ATX_RE.match(line)
        if m and (m.group(2) or "").strip():
            found.append((len(m.group(1)), m.group(2).strip(), i))
            continue
        s = _SETEXT_RE.match(line)
        if s and i > 0 and lines[i - 1].strip() and not _ATX_RE.match(lines[i - 1]) \
                and not (found and found[-1][2] == i - 1):
            found.append((1 if s.group(1)[0] == "=" else 2, lines[i - 1].strip(), i - 1))
    return found


def _section_has_content(lines: list[str], heads: list[tuple[int, str, int]], k: int) -> bool:
    level, _, start = heads[k]
    end = len(lines)
    for lvl, _, idx in heads[k + 1:]:
        if lvl <= level:
            end = idx
            break
    sub_heads = {idx for _, _, idx in heads[k + 1:] if idx < end}
    text = "\n".join(line for j, line in enumerate(lines[start + 1:end], start + 1)
                     if j not in sub_heads and not _SETEXT_RE.match(line))
    return bool(_PLACEHOLDER_RE.sub("", text))


def parse_card(text: str | bytes | None) -> dict[str, Any]:
    """The ``card`` object of a model; ``None`` text means the repository has no card."""
    if text is None:
        return {"present": False, "has_model_index": False, "length": 0,
                "front_matter_keys": [], "sections": [],
                **{f"states_{fact}": False for fact in STATES}}
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    raw_meta, body = split_front_matter(text)
    meta: dict[str, Any] = {}
    error: str | None = None
    if raw_meta is not None:
        try:
            loaded = yaml.safe_load(raw_meta)
        except yaml.YAMLError as exc:
            error = f"invalid_yaml: {str(exc).splitlines()[0]}"
        else:
            if isinstance(loaded, dict):
                meta = {str(k): v for k, v in loaded.items()}
            elif loaded is not None:
                error = f"front_matter_not_mapping: {type(loaded).__name__}"
    heads = headings(body)
    lines = body.splitlines()
    card: dict[str, Any] = {
        "present": True,
        "has_model_index": bool(meta.get("model-index")),
        "length": len(text),
        "front_matter_keys": list(meta),
        "sections": [h for _, h, _ in heads],
    }
    for fact, (pattern, keys) in STATES.items():
        stated = any(meta.get(key) not in (None, "", [], {}) for key in keys)
        if not stated:
            stated = any(pattern.search(h.lower()) and _section_has_content(lines, heads, k)
                         for k, (_, h, _) in enumerate(heads))
        card[f"states_{fact}"] = stated
    if error:
        card["front_matter_error"] = error
    return card
