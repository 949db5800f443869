"""Each package as a folder of hard links into the blob store:
``dest/<hub>/<owner>/<name>/<revision>/<path>``.

A researcher opens the folder like any checkout; a blob shared by many repositories is stored
once. Every path has passed :func:`ptmspiders.packages.paths.safe_relpath`, and the final
location is checked again to lie inside the package folder (no symlink planted in ``dest``
can redirect a link elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

from ptmspiders.packages.paths import safe_relpath, safe_segment


class UnsafePath(ValueError):
    pass


def package_dir(dest: Path, hub: str, owner: str | None, name: str, revision: str) -> Path:
    parts = [safe_segment(hub), safe_segment(owner or "_"), safe_segment(name),
             safe_segment(revision)]
    if any(p is None for p in parts):
        raise UnsafePath(f"unsafe package location: {hub}/{owner}/{name}/{revision}")
    return dest.joinpath(*(p for p in parts if p is not None))


def link_file(root: Path, relpath: str, blob: Path, checked: set[Path] | None = None) -> Path:
    """Hard-link ``blob`` at ``root/relpath`` (replacing a stale link). Raises UnsafePath.

    ``checked``: folders of this package already made and found inside ``root`` (shared by
    the calls for one package), so that a package of many files walks each folder once."""
    clean = safe_relpath(relpath)
    if clean is None:
        raise UnsafePath(relpath)
    target = root / clean
    if checked is None or target.parent not in checked:
        real_root = os.path.realpath(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.commonpath([real_root, os.path.realpath(target.parent)]) != real_root:
            raise UnsafePath(relpath)
        if checked is not None:
            checked.add(target.parent)
    try:
        os.link(blob, target)  # a name not taken yet: the usual case
        return target
    except FileExistsError:
        pass
    try:
        if os.path.samefile(target, blob):
            return target
    except OSError:
        pass
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    os.link(blob, tmp)
    os.replace(tmp, target)
    return target
