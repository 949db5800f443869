"""Hub-given paths, made safe before anything is written under ``dest``."""

from __future__ import annotations

import posixpath
import unicodedata

MAX_PATH_BYTES = 4000
MAX_PART_BYTES = 255
# Control characters (C0, DEL, C1), surrogates, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def safe_relpath(path: object) -> str | None:
    """``path`` as a clean relative POSIX path, or ``None`` when it must be refused.

    Refused: not a string, empty, absolute (``/x``, ``C:x``, ``\\\\server``), any ``..`` or
    ``.`` segment, a segment of only dots and spaces (Windows trims ``.. `` to ``..``), a
    backslash (read as a separator on Windows and by some archivers), NUL or another control
    character (C0, C1, line and paragraph separators), a lone surrogate (a name that was not
    UTF-8), a segment over 255 bytes, or a name that is not in Unicode NFC (two spellings of
    one name would be two files on Linux and one on macOS). Nothing is "repaired": a repaired
    path could collide with a real one."""
    if not isinstance(path, str) or not path or len(path.encode("utf-8", "surrogatepass"))\
            > MAX_PATH_BYTES:
        return None
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in path) or "\\" in path:
        return None
    if unicodedata.normalize("NFC", path) != path:
        return None
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return None
    parts = path.split("/")
    for part in parts:
        if not part.strip(". "):
            return None
        if len(part.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES:
            return None
    clean = posixpath.normpath(path)
    return clean if clean == path else None


def safe_segment(name: object) -> str | None:
    """One path segment (an owner, a model name, a revision), or ``None``."""
    clean = safe_relpath(name)
    return clean if clean is not None and "/" not in clean else None
