"""The published JSON Schemas (``ptmspiders/schema/<name>.schema.json``), generated from the
document classes in ``ptmspiders/items.py``: ``python -m ptmspiders.schema`` writes them, and
``tests/test_items.py`` fails when a checked-in file differs from what it would write.

The generated form is kept plain for the readers of the files (``export.py``, ``query.py``):
nested shapes inlined, a nullable type as ``["string", "null"]``, every field required (every
stored document has every field, null or empty when the hub has no value).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ptmspiders.items import DOCUMENTS, Document, adapter

FOLDER = Path(__file__).parent
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Keys pydantic writes that say nothing about a stored document.
_DROPPED = frozenset({"title", "default", "additionalProperties"})


def json_schema(cls: type[Document]) -> dict[str, Any]:
    """The published schema of one document class."""
    generated = adapter(cls).json_schema()
    defs = generated.pop("$defs", {})
    body = _tidy(generated, defs)
    return {
        "$schema": DIALECT,
        "$id": f"https://github.com/ptmspiders/ptmspiders/schema/{cls.schema_name}.schema.json",
        "title": cls.schema_title,
        "description": cls.schema_description,
        "type": "object",
        "required": list(body["properties"]),
        "properties": body["properties"],
    }


def _tidy(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_tidy(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        node = {**defs[node["$ref"].rsplit("/", 1)[-1]],
                **{k: v for k, v in node.items() if k != "$ref"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED and not (key == "additionalProperties" and value is not True):
            continue
        if key == "properties":
            out[key] = {name: _tidy(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _tidy(value, defs)
    return _nullable(out)


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` as X with ``"type": [X's type, "null"]`` where X has one type."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return node
    other = options[0] if options[1] == {"type": "null"} else options[1]
    if not isinstance(other.get("type"), str):
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**other, **rest, "type": [other["type"], "null"]}


def schema_text(cls: type[Document]) -> str:
    return json.dumps(json_schema(cls), indent=2, ensure_ascii=False) + "\n"


def path(name: str) -> Path:
    return FOLDER / f"{name}.schema.json"


def write() -> list[Path]:
    """Write every document's schema file; the paths that changed."""
    changed = []
    for name, cls in DOCUMENTS.items():
        target = path(name)
        text = schema_text(cls)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            changed.append(target)
    return changed
