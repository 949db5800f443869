"""Model cards (``README.md``) -> the ``card`` object the documentation studies read.

A card "states" a fact when its YAML front matter carries the key, or when a section whose
heading names it has real content: the Hub's card template ships headings such as
``## Evaluation`` filled with ``[More Information Needed]``, and those do not count.

Cards are hub text anyone can write: every step here is linear in the card's length (a card
with 30,000 empty ``## Evaluation`` headings once took 12 s), and the front matter goes through
the bounded YAML loader (:mod:`ptmspiders.parsers.safe_yaml`).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ptmspiders.parsers.safe_yaml import YamlRefused, error_line, load_yaml, split_front_matter

_FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
# An ATX heading's opening hashes. The rest of the line is read with string methods: the one
# regular expression for the whole line backtracked cubically on long runs of spaces.
_ATX_OPEN_RE = re.compile(r"\s{0,3}(#+)")
_SETEXT_RE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
# What is not content in a section: whitespace and Markdown punctuation; "<!--", "{{" and
# "[more information needed]" start the placeholders that _has_content skips.
_CONTENT_RE = re.compile(r"[^\s\-*_>|#`]")
_NEEDED = "[more information needed]"

# Heading patterns (lower-cased text) and front matter keys that state each fact.
STATES: dict[str, tuple[re.Pattern[str], tuple[str, ...]]] = {
    "license": (re.compile(r"licen[cs]"), ("license", "license_name", "license_link")),
    "datasets": (re.compile(r"dataset|training data|data sources?"), ("datasets",)),
    "limitations": (re.compile(r"limitation|bias|risk|out-of-scope|out of scope"), ()),
    "evaluation": (re.compile(r"evaluat|result|benchmark|metric|performance"),
                   ("model-index",)),
}


def _atx(line: str) -> tuple[int, str] | None:
    """(level, text) of a line that has the shape of an ATX heading (text ``""`` when it has
    none, as a bare ``##``), else ``None``; closing hashes and spaces are not text."""
    m = _ATX_OPEN_RE.match(line)
    if m is None:
        return None
    hashes = len(m.group(1))
    rest = line[m.end():]
    if not rest or rest.isspace():
        return min(hashes, 6), ""
    if hashes > 6 or not rest[0].isspace():
        return None
    return hashes, rest.strip().rstrip("#").rstrip()


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
        atx = _atx(line)
        if atx is not None and atx[1]:
            found.append((atx[0], atx[1], i))
            continue
        s = _SETEXT_RE.match(line)
        if s and i > 0 and lines[i - 1].strip() and _atx(lines[i - 1]) is None \
                and not (found and found[-1][2] == i - 1):
            found.append((1 if s.group(1)[0] == "=" else 2, lines[i - 1].strip(), i - 1))
    return found


def _has_content(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` has anything but whitespace, Markdown punctuation, HTML
    comments, ``{{...}}`` templates and ``[More Information Needed]``. One pass: each
    placeholder's end is found once, and an unclosed one is content."""
    pos = start
    while True:
        m = _CONTENT_RE.search(text, pos, end)
        if m is None:
            return False
        at = m.start()
        if text.startswith("<!--", at, end):
            close = text.find("-->", at + 4, end)
            if close < 0:
                return True
            pos = close + 3
        elif text.startswith("{{", at, end):
            close = text.find("}}", at + 2, end)
            if close < 0:
                return True
            pos = close + 2
        elif text[at:min(at + len(_NEEDED), end)].lower() == _NEEDED:
            pos = at + len(_NEEDED)
        else:
            return True


class _Sections:
    """Whether each heading's section has content, in time linear in the body: a section runs
    to the next heading of the same or a higher level, so the sections of one level do not
    overlap, and all of them together cover the body at most six times."""

    def __init__(self, lines: list[str], heads: list[tuple[int, str, int]]) -> None:
        self.heads = heads
        # Each section ends at the next heading of its level or above (a stack of open ones).
        self.ends = [len(lines)] * len(heads)
        open_: list[int] = []
        for k, (level, _, idx) in enumerate(heads):
            while open_ and heads[open_[-1]][0] >= level:
                self.ends[open_.pop()] = idx
            open_.append(k)
        # The body without heading lines and ---/=== lines, and where each line starts in it.
        head_lines = {idx for _, _, idx in heads}
        kept: list[str] = []
        self.offsets = [0] * (len(lines) + 1)
        offset = 0
        for j, line in enumerate(lines):
            self.offsets[j] = offset
            if j not in head_lines and not _SETEXT_RE.match(line):
                kept.append(line)
                offset += len(line) + 1
        self.offsets[len(lines)] = offset
        self.text = "\n".join(kept)
        self.known: dict[int, bool] = {}

    def has_content(self, k: int) -> bool:
        found = self.known.get(k)
        if found is None:
            start = self.offsets[self.heads[k][2] + 1]
            found = self.known[k] = _has_content(self.text, start, self.offsets[self.ends[k]])
        return found


def parse_card(text: str | bytes | None) -> dict[str, Any]:
    """The ``card`` object of a model; ``None`` text means the repository has no card."""
    if text is None:
        return {"present": False, "has_model_index": False, "length": 0,
                "front_matter_keys": [], "sections": [],
                **{f"states_{fact}": False for fact in STATES}}
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    raw_meta, body = split_front_matter(text)
    meta: dict[str, Any] = {}
    error: str | None = None
    if raw_meta is not None:
        try:
            loaded = load_yaml(raw_meta)
        except YamlRefused as exc:
            error = str(exc)
        except yaml.YAMLError as exc:
            error = f"invalid_yaml: {error_line(exc)}"
        else:
            if isinstance(loaded, dict):
                meta = {str(k): v for k, v in loaded.items()}
            elif loaded is not None:
                error = f"front_matter_not_mapping: {type(loaded).__name__}"
    heads = headings(body)
    sections = _Sections(body.splitlines(), heads)
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
            stated = any(pattern.search(h.lower()) and sections.has_content(k)
                         for k, (_, h, _) in enumerate(heads))
        card[f"states_{fact}"] = stated
    if error:
        card["front_matter_error"] = error
    return card
