"""YAML from hubs (front matter of catalogue files and model cards), loaded within bounds.

PyYAML's safe loaders build no arbitrary objects, but nothing bounds what they build: an alias
(``*a``) repeats its anchor's whole node, so ten aliases per level over nine levels ("billion
laughs") make ~300 bytes of YAML into a billion-element document once anything walks or encodes
it; an alias inside its own anchor makes a structure that contains itself; deep nesting overflows
the recursion of whoever walks the result. :func:`load_yaml` reads the events first and refuses,
before anything is built, a text longer than :data:`MAX_CHARS`, more than :data:`MAX_ALIASES`
aliases, an alias that would make the document (written out in full) longer than
:data:`MAX_CHARS`, a self-containing alias or nesting deeper than :data:`MAX_DEPTH`. The result
holds JSON-encodable scalars where it matters for a store: integers beyond 64 bits stay text.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from frontmatter.default_handlers import YAMLHandler
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from ptmspiders.hub_answers import BadResponse

MAX_CHARS = 1_000_000  # the text, and the document with every alias written out
MAX_ALIASES = 100
MAX_DEPTH = 64  # collections inside collections; orjson refuses documents beyond 255
_MAX_INT_CHARS = 100  # longer integer literals stay text (Python refuses >4,300 digits)
_INT64 = range(-(2**63), 2**63)  # what BSON and orjson both hold


class YamlRefused(BadResponse):
    """YAML that is well-formed but beyond the bounds; ``reason`` says which
    (``yaml_too_large``, ``yaml_aliases``, ``yaml_expands``, ``yaml_recursive``,
    ``yaml_too_deep``)."""


def _construct_int(loader: SafeConstructor, node: yaml.ScalarNode) -> int | str:
    text = str(node.value)
    if len(text) > _MAX_INT_CHARS:
        return text
    value = SafeConstructor.construct_yaml_int(loader, node)
    return value if value in _INT64 else text


class BoundedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when present), with integers beyond 64 bits kept as text."""


BoundedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def check_yaml(text: str) -> None:
    """Raise :class:`YamlRefused` when loading ``text`` would go beyond the module's bounds,
    or ``yaml.YAMLError`` when it is not YAML; one pass over the parser's events, nothing built.

    The expanded size counts each scalar's characters plus one, two per collection, and for an
    alias the expanded size of its anchor's node, so it grows with the real output."""
    if len(text) > MAX_CHARS:
        raise YamlRefused("yaml_too_large", f"{len(text)} characters, at most {MAX_CHARS}")
    anchors: dict[str, int] = {}  # anchor -> expanded size of its node
    open_: list[tuple[str | None, int]] = []  # open collections: (anchor, expanded at start)
    expanded = aliases = 0
    for event in yaml.parse(text, Loader=BoundedLoader):
        if isinstance(event, ScalarEvent):
            size = len(event.value) + 1
            expanded += size
            if event.anchor is not None:
                anchors[event.anchor] = size
        elif isinstance(event, SequenceStartEvent | MappingStartEvent):
            if len(open_) >= MAX_DEPTH:
                raise YamlRefused("yaml_too_deep", f"collections nested beyond {MAX_DEPTH}")
            open_.append((event.anchor, expanded))
            expanded += 2
        elif isinstance(event, SequenceEndEvent | MappingEndEvent):
            anchor, start = open_.pop()
            if anchor is not None:
                anchors[anchor] = expanded - start
        elif isinstance(event, AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise YamlRefused("yaml_aliases", f"more than {MAX_ALIASES} aliases")
            if any(anchor == event.anchor for anchor, _ in open_):
                raise YamlRefused("yaml_recursive", f"alias *{event.anchor} inside its anchor")
            expanded += anchors.get(event.anchor or "", 0)  # undefined: the loader says so
            if expanded > MAX_CHARS:
                raise YamlRefused("yaml_expands", f"aliases expand it beyond {MAX_CHARS} "
                                                  f"characters ({len(text)} written)")


def load_yaml(text: str) -> Any:
    """``text`` as Python data, after :func:`check_yaml` (which raises what it raises)."""
    check_yaml(text)
    return yaml.load(text, Loader=BoundedLoader)  # a SafeLoader subclass: no objects


def error_line(exc: yaml.YAMLError) -> str:
    """The first line of a YAML error, for a log line or a stored reason."""
    return str(exc).split("\n")[0]


class BoundedYAMLHandler(YAMLHandler):
    """python-frontmatter's YAML handler with this module's bounds: ``load`` is
    :func:`load_yaml`. The block opens with a first line ``---`` and ends at the next line that
    is ``---`` or ``...`` (YAML's document markers; spaces around allowed, so ``\r\n`` ends
    work too); ``----`` is no delimiter.

    Use :func:`split_front_matter`, not ``frontmatter.parse``/``loads``: those strip the whole
    text and the body (three extra copies of a card), drop front matter that is not a mapping
    without a word, and on a YAML error raise without the body, which the card parser still
    reads. With this handler even they stay within the bounds."""

    FM_BOUNDARY = re.compile(r"^[^\S\n]*+(?:---|\.\.\.)[^\S\n]*+(?:\n|\Z)", re.MULTILINE)
    _OPEN = re.compile(r"[^\S\n]*+---[^\S\n]*+(?:\n|\Z)")

    def detect(self, text: str) -> bool:
        return self._OPEN.match(text) is not None

    def load(self, fm: str, **kwargs: object) -> Any:
        return load_yaml(fm)


FRONT_MATTER = BoundedYAMLHandler()


def starts_front_matter(text: str) -> bool:
    """Whether the first line of ``text`` opens a front matter block (``---``)."""
    return FRONT_MATTER.detect(text)


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(front matter, body) of a Markdown document whose first line is ``---``, split by
    :data:`FRONT_MATTER` (the body after the closing line, as written). ``(None, text)`` when
    there is no block or it never ends. Callers remove a BOM and normalise a lone ``\r``."""
    if not FRONT_MATTER.detect(text):
        return None, text
    try:
        return FRONT_MATTER.split(text)
    except ValueError:  # no closing line: fewer than three parts
        return None, text
