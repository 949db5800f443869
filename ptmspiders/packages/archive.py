"""Archives (GitHub tarballs, Kaggle model archives) unpacked into the blob store, path-safely.

Nothing is extracted to a path the archive chooses: each regular member is streamed into the
blob store (hashed on the way) and only linked into the package folder later, under a name
that passed :func:`ptmspiders.packages.paths.safe_relpath` and the folder check of
:mod:`ptmspiders.packages.layout`. Links (symbolic or hard), devices, FIFOs and members with
unsafe names are refused and recorded; ``..``, absolute paths and links out of the package
can therefore never be written (the guarantees of ``tarfile``'s ``filter="data"``, without
extracting anything).

An archive is also bounded: more members than ``max_members`` or more regular-file bytes than
``max_total_bytes`` (counted as the members come, before any is stored) refuse the whole
archive, so a tar bomb or a million-member archive ends the unpacking instead of filling the
disk or the record.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptmspiders.packages.blobs import CHUNK, BlobStore, git_blob_header
from ptmspiders.packages.paths import safe_relpath

GITHUB_HUBS = ("pytorch_hub", "modelhub", "modelzoo")
# Why a whole archive was refused by a bound (not a failure a rerun could fix).
TOO_LARGE = "archive_too_large"
TOO_MANY_MEMBERS = "archive_too_many_members"
REFUSED = frozenset({TOO_LARGE, TOO_MANY_MEMBERS})


class ArchiveRefused(Exception):
    """An archive beyond a bound; ``reason`` is :data:`TOO_LARGE` or :data:`TOO_MANY_MEMBERS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def github_target(model: dict[str, Any], *, latest: bool = False) -> tuple[str, str] | None:
    """(``owner/repo``, ref) of the repository a model links: its recorded commit, else the
    ref the catalogue pinned (PyTorch Hub's ``owner/repo:ref``, modelhub's branch), else the
    default branch (``HEAD``); with ``latest``, always the default branch."""
    repos = [r for r in model.get("github_repos") or [] if isinstance(r, str)
             and _REPO.fullmatch(r) and ".." not in r]
    if not repos:
        return None
    extra = model.get("extra") if isinstance(model.get("extra"), dict) else {}
    assert isinstance(extra, dict)
    ref: Any = None if latest else (model.get("latest_commit_sha") or extra.get("pinned_ref")
                                    or extra.get("branch"))
    if not isinstance(ref, str) or not ref or any(c in ref for c in " ?#\\") \
            or ref.startswith("/") or ".." in ref:
        ref = "HEAD"
    return repos[0], ref


@dataclass
class Member:
    """What unpacking found for one archive member."""

    path: str  # the name with the top folder stripped (whole if that part hid the danger)
    size: int
    status: str  # stored | mismatch | refused | unwanted
    reason: str | None = None
    sha256: str | None = None
    git_oid: str | None = None


@dataclass
class Unpacked:
    members: list[Member] = field(default_factory=list)
    commit: str | None = None  # GitHub tarballs name their commit in a pax global header


def strip_top(name: str, strip: int) -> str:
    """``name`` without its ``strip`` leading folders."""
    parts = name.split("/")
    return "/".join(parts[strip:]) if len(parts) > strip else ""


def unpack(archive: Path, blobs: BlobStore, *, wanted: Callable[[str], str | bool],
           strip: int = 1, max_member_bytes: int | None = None,
           max_total_bytes: int | None = None, max_members: int | None = None) -> Unpacked:
    """Stream every wanted regular member of a tar (any compression) into ``blobs``.

    ``wanted(path)``: ``False`` to only list the member, a git blob id that the member must
    hash to before it is stored (else ``mismatch``, nothing stored), or ``True`` to store it
    unchecked (the hub published no hash). ``strip`` removes the leading folders GitHub and
    Kaggle wrap their archives in. A member whose whole name is unsafe (``../x``, ``/x``,
    ``top\\..\\x``) is refused even when stripping would leave a safe name, and a file
    above the stripped folders is refused, not renamed.

    Raises :class:`ArchiveRefused` at the member that goes beyond ``max_members`` (every
    member counts: folders, links, unwanted ones) or brings the regular files' sizes above
    ``max_total_bytes``: nothing of that member is stored, and the members stored before it
    (within the bound) are left to the blob store."""
    out = Unpacked()
    members = total = 0
    with tarfile.open(archive, mode="r:*") as tar:
        commit = tar.pax_headers.get("comment")
        out.commit = commit if isinstance(commit, str) and len(commit) == 40 else None
        for info in tar:
            members += 1
            if max_members is not None and members > max_members:
                raise ArchiveRefused(TOO_MANY_MEMBERS, f"more than {max_members} members")
            if info.isreg():
                total += info.size
                if max_total_bytes is not None and total > max_total_bytes:
                    raise ArchiveRefused(TOO_LARGE, f"more than {max_total_bytes} bytes")
            if info.isdir() or info.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
                continue
            # ``tar -C dir .`` (Kaggle's and tfhub.dev's model archives) names members ``./x``:
            # that one leading ``./`` means ``x``.
            name = info.name[2:] if info.name.startswith("./") else info.name
            path = strip_top(name, strip)
            if safe_relpath(name) is None:  # checked whole, before the top folder goes
                # Named as stripped while that still shows what is wrong, else whole.
                shown = path if path and safe_relpath(path) is None else info.name
                out.members.append(Member(shown, info.size, "refused", reason="unsafe_path"))
                continue
            if not path:
                out.members.append(Member(name, info.size, "refused", reason="above_strip"))
                continue
            if info.issparse():  # tarfile would make up its holes; no hub archive has them
                out.members.append(Member(path, info.size, "refused", reason="sparse"))
                continue
            if not info.isreg():
                kind = "link" if info.issym() or info.islnk() else "special_file"
                out.members.append(Member(path, info.size, "refused", reason=kind))
                continue
            expect = wanted(path)
            if expect is False:
                out.members.append(Member(path, info.size, "unwanted"))
                continue
            if max_member_bytes is not None and info.size > max_member_bytes:
                out.members.append(Member(path, info.size, "unwanted", reason="max_file_bytes"))
                continue
            src = tar.extractfile(info)
            if src is None:
                out.members.append(Member(path, info.size, "refused", reason="special_file"))
                continue
            sha, git = hashlib.sha256(), hashlib.sha1(git_blob_header(info.size),
                                                      usedforsecurity=False)
            blobs.tmp.mkdir(parents=True, exist_ok=True)
            tmp = blobs.tmp / f"unpack.{uuid.uuid4().hex}.new"
            try:
                with src, tmp.open("wb") as f:
                    while chunk := src.read(CHUNK):
                        f.write(chunk)
                        sha.update(chunk)
                        git.update(chunk)
            except BaseException:  # a truncated member: leave no partial copy behind
                tmp.unlink(missing_ok=True)
                raise
            digest, oid = sha.hexdigest(), git.hexdigest()
            if isinstance(expect, str) and oid != expect:
                tmp.unlink(missing_ok=True)
                out.members.append(Member(path, info.size, "mismatch", reason="hash_mismatch",
                                          sha256=digest, git_oid=oid))
                continue
            blobs.commit(tmp, digest)
            if isinstance(expect, str):
                blobs.note_git(oid, digest)
            out.members.append(Member(path, info.size, "stored", sha256=digest, git_oid=oid))
    return out


def md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def published_md5(digests: dict[str, str]) -> str | None:
    """The MD5 a storage host published for an object, as hex: Google Cloud Storage's
    ``x-goog-hash: crc32c=..., md5=<base64>`` (Kaggle's archives), or ``Content-MD5``."""
    import base64
    import binascii

    values = [v.strip() for v in digests.get("x-goog-hash", "").split(",")]
    b64 = next((v[4:] for v in values if v.startswith("md5=")), None) or \
        digests.get("content-md5")
    if not b64:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


@dataclass(frozen=True)
class KaggleInstance:
    framework: str
    slug: str
    version: int

    @property
    def prefix(self) -> str:
        """Where the instance's files go inside the package folder."""
        return f"{self.framework}/{self.slug}/{self.version}"


def kaggle_instances(model: dict[str, Any]) -> list[KaggleInstance]:
    """The instance versions a stored Kaggle model lists (``extra.instances``)."""
    extra = model.get("extra") if isinstance(model.get("extra"), dict) else {}
    assert isinstance(extra, dict)
    out = []
    for inst in extra.get("instances") or []:
        if not isinstance(inst, dict):
            continue
        fw, slug, ver = inst.get("framework"), inst.get("slug"), inst.get("version_number")
        if (isinstance(fw, str) and isinstance(slug, str) and isinstance(ver, int)
                and not isinstance(ver, bool) and ver > 0
                and all(_SEGMENT.fullmatch(x) for x in (fw, slug))):
            out.append(KaggleInstance(fw, slug, ver))
    return out


_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
