"""Text from the hubs made safe for the people who read our output.

A model id, owner or tag is whatever a hub's user typed. Printed raw to a terminal, an ANSI
escape in it can rewrite the screen or the window title; opened in a spreadsheet, a CSV cell
that starts with ``=`` can run a formula (``=cmd|' /C calc'!A0``). Every table for people goes
through :func:`escape_controls` and every CSV file through :func:`write_csv`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# C0 controls, DEL, C1 controls (ESC and CSI start terminal sequences), and the Unicode
# bidirectional controls, which reorder what a terminal shows ("Trojan Source").
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# JSON text escapes C0 controls itself; these others pass through json.dumps untouched.
_JSON_UNESCAPED = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# OWASP's CSV injection guidance: cells that a spreadsheet reads as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as an escape (ESC as ``\\x1b``), so it
    prints as what it is and never acts on the terminal."""
    return _CONTROLS.sub(_visible, text)


def escape_json_controls(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with DEL, C1 and bidi controls
    as ``\\uXXXX`` escapes: still the same JSON, but inert on a terminal."""
    return _JSON_UNESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def neutralise_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will show as text: a string starting with ``=``, ``+``,
    ``-``, ``@``, tab or CR gets a leading ``'`` (OWASP). Numbers stay numbers (``-5`` is not
    a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV file (RFC 4180 quoting by :mod:`csv`) with every cell neutralised."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([neutralise_cell(h) for h in header])
        writer.writerows([neutralise_cell(v) for v in row] for row in rows)
