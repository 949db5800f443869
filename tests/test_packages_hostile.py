"""Hostile input for the packages crawl's path sanitiser and tar reader: path spellings that
could escape or alias a file, and tar members that could escape, alias or exhaust the disk."""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import tarfile
from pathlib import Path

import pytest

from ptmspiders.packages.archive import Member, unpack
from ptmspiders.packages.blobs import BlobStore, git_blob_sha1
from ptmspiders.packages.paths import safe_relpath

MiB = 1 << 20
HUGE_DECLARED = 10 * (1 << 30)

# -- paths ---------------------------------------------------------------------------------------

KEPT = [
    "a", "a/b/c.txt",
    "\uff0e\uff0e/x",  # full-width dots are a name, not a parent
    "\u2025/x",  # the two-dot leader too
    ".hidden", "a..b/..c/d..",  # dots inside a name are harmless
    "caf\u00e9/\u6a21\u578b.bin",
    "x" * 255, "\u00e9" * 127,  # 254 bytes
]

REFUSED = [
    # main's sanitiser refuses what another would repair: a repaired path could collide
    "a//b", "./a", "a/./b/", "a\\b\\c", "", ".", "./",
    "//", "/etc/passwd", "//host/share/x", "\\\\host\\share\\x", "\\x",
    "C:\\Windows\\x", "c:x",
    "..", "../x", "..\\..\\x", "./a/../../b", "a/../b", "a/b/..",
    "...", "a/.. /b", "a/. ./b", "   ",  # Windows trims trailing dots and spaces: ".."
    "a\x00b", "a\nb", "a\rb", "a\x7fb",
    "a\x85b", "a\u2028b", "a\u2029b",  # C1 next line, line and paragraph separators
    "bad\udcff.bin",  # not UTF-8 (tarfile's surrogateescape)
    "x" * 256, "\u00e9" * 128,  # 128 characters, 256 bytes
    "/".join(["d" * 200] * 21),  # 4220 bytes
]


@pytest.mark.parametrize("path", KEPT)
def test_hostile_lookalikes_are_kept(path: str) -> None:
    assert safe_relpath(path) == path
    joined = posixpath.normpath(posixpath.join("/dest", path))
    assert joined.startswith("/dest/") and joined == "/dest/" + path


@pytest.mark.parametrize("path", REFUSED)
def test_hostile_paths_are_refused(path: str) -> None:
    assert safe_relpath(path) is None


@pytest.mark.parametrize("value", [None, 1, b"a", ["a"]])
def test_not_a_string_is_refused(value: object) -> None:
    assert safe_relpath(value) is None


# -- tar members ---------------------------------------------------------------------------------

TOP = "evil-repo-0000000"
GOOD = {"ok.txt": b"fine\n", "sub/good.bin": b"\x00\x01good"}
BAD = b"pwned\n"


def _info(name: str, size: int = 0, type_: bytes = tarfile.REGTYPE,
          linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname, info.mtime = size, type_, linkname, 1_700_000_000
    return info


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT,
         ) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def hostile_tarball(*, huge: bool = True) -> bytes:
    """Every kind of member a path-safe reader must refuse around two good files, under one
    top folder like a GitHub tarball; with ``huge``, a last member declares 10 GiB it lacks."""
    e: list[tuple[tarfile.TarInfo, bytes | None]] = [(_info(f"{TOP}/", type_=tarfile.DIRTYPE),
                                                      None)]
    e += [(_info(f"{TOP}/{p}", len(c)), c) for p, c in GOOD.items()]
    e += [
        (_info("../escape.txt", len(BAD)), BAD),
        (_info(f"{TOP}/../../escape2.txt", len(BAD)), BAD),
        (_info("/tmp/absolute.txt", len(BAD)), BAD),
        (_info(f"{TOP}\\..\\..\\win.txt", len(BAD)), BAD),
        (_info(f"{TOP}/nul\x00na\u00efve.txt", len(BAD)), BAD),
        (_info(f"{TOP}/link", type_=tarfile.SYMTYPE, linkname="../../../../etc/passwd"), None),
        (_info(f"{TOP}/abslink", type_=tarfile.SYMTYPE, linkname="/etc/shadow"), None),
        (_info(f"{TOP}/hard", type_=tarfile.LNKTYPE, linkname="/etc/passwd"), None),
        (_info(f"{TOP}/hard2", type_=tarfile.LNKTYPE, linkname="../outside"), None),
        (_info(f"{TOP}/dev", type_=tarfile.CHRTYPE), None),
        (_info(f"{TOP}/blk", type_=tarfile.BLKTYPE), None),
        (_info(f"{TOP}/fifo", type_=tarfile.FIFOTYPE), None),
        (_info(f"{TOP}/ok.txt", len(BAD)), BAD),  # a second ok.txt
    ]
    raw = _tar(e)
    if huge:  # a header declaring HUGE_DECLARED bytes, then the end of the archive
        end = raw.rstrip(b"\0")
        end += b"\0" * (-len(end) % tarfile.BLOCKSIZE)
        raw = end + _info(f"{TOP}/huge.bin", HUGE_DECLARED).tobuf(tarfile.PAX_FORMAT) \
            + b"\0" * (2 * tarfile.BLOCKSIZE)
    return gzip.compress(raw, mtime=0)


REFUSALS = {  # stripped of the top folder; whole when the stripped name would look safe
    "../escape.txt": "unsafe_path",
    "../../escape2.txt": "unsafe_path",
    "/tmp/absolute.txt": "unsafe_path",
    f"{TOP}\\..\\..\\win.txt": "unsafe_path",
    "nul\x00na\u00efve.txt": "unsafe_path",
    "link": "link", "abslink": "link", "hard": "link", "hard2": "link",
    "dev": "special_file", "blk": "special_file", "fifo": "special_file",
}


def _unpack(tmp_path: Path, data: bytes, **kw: object) -> tuple[list[Member], BlobStore]:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data)
    blobs = BlobStore(tmp_path / "dest")
    return unpack(archive, blobs, **kw).members, blobs  # type: ignore[arg-type]


def _stored(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "dest" / "blobs" / "sha256").rglob("*")
                  if p.is_file())


def test_hostile_tarball_refuses_every_bad_member(tmp_path: Path) -> None:
    members, _ = _unpack(tmp_path, hostile_tarball(huge=False), wanted=lambda p: True)
    refused = {m.path: m.reason for m in members if m.status == "refused"}
    assert refused == REFUSALS
    stored = [(m.path, m.sha256) for m in members if m.status == "stored"]
    # Both ok.txt are stored as blobs (by content); the crawl keeps the first of a name
    # (tests/test_packages_crawl.py covers that), so the duplicate cannot replace it.
    assert stored == [("ok.txt", hashlib.sha256(GOOD["ok.txt"]).hexdigest()),
                      ("sub/good.bin", hashlib.sha256(GOOD["sub/good.bin"]).hexdigest()),
                      ("ok.txt", hashlib.sha256(BAD).hexdigest())]
    assert _stored(tmp_path) == sorted(hashlib.sha256(c).hexdigest()
                                       for c in [*GOOD.values(), BAD])
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                     if p.is_file() or p.is_symlink())
    assert all(w == "a.tar.gz" or w.startswith("dest/blobs/") for w in written), written


def test_huge_declared_member_is_refused_before_reading(tmp_path: Path) -> None:
    """A member declaring 10 GiB is not read when over the file bound; either way the archive
    that lacks those bytes fails as a tar error (the crawl records ``bad_archive``) and leaves
    nothing behind but the blobs of the members before it."""
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(hostile_tarball())
    before = sorted(hashlib.sha256(c).hexdigest() for c in [*GOOD.values(), BAD])
    seen: list[str] = []

    def wanted(path: str) -> bool:
        seen.append(path)
        return True

    for bound in (MiB, None):
        blobs = BlobStore(tmp_path / f"dest-{bound}")
        with pytest.raises(tarfile.ReadError):
            unpack(archive, blobs, wanted=wanted, max_member_bytes=bound)
        assert seen[-1] == "huge.bin"
        assert sorted(p.name for p in blobs.root.rglob("*") if p.is_file()
                      and "sha256" in p.parts) == before
        assert not [p for p in blobs.tmp.rglob("*") if p.is_file()]


def test_bomb_refused_by_declared_size(tmp_path: Path) -> None:
    size = 64 * MiB
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info("top/small.txt", 3), io.BytesIO(b"hi\n"))
        tar.addfile(_info("top/zeros.bin", size), io.BytesIO(bytes(size)))
    assert len(buf.getvalue()) < MiB
    members, _ = _unpack(tmp_path, buf.getvalue(), wanted=lambda p: True,
                         max_member_bytes=MiB)
    assert [(m.path, m.status, m.reason) for m in members] == [
        ("small.txt", "stored", None), ("zeros.bin", "unwanted", "max_file_bytes")]
    assert _stored(tmp_path) == [hashlib.sha256(b"hi\n").hexdigest()]


def test_stored_members_pass_tarfiles_data_filter(tmp_path: Path) -> None:
    """Cross-check with the standard library: every member we store, tarfile's ``data``
    filter accepts too; every link and parent reference it refuses, we refuse."""
    data = hostile_tarball(huge=False)
    members, _ = _unpack(tmp_path, data, wanted=lambda p: True)
    stored = {m.path for m in members if m.status == "stored"}
    refused = {m.path for m in members if m.status == "refused"}
    dest = tmp_path / "x"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar:
            if info.isdir():
                continue
            name = info.name.removeprefix(f"{TOP}/")
            if name in stored:
                assert tarfile.data_filter(info, str(dest)) is not None
            if info.issym() or info.islnk() or info.name.startswith(".."):
                with pytest.raises(tarfile.FilterError):
                    tarfile.data_filter(info, str(dest))
                assert name in refused
    assert stored == set(GOOD)


def test_dot_slash_member_names_are_read(tmp_path: Path) -> None:
    """Model archives made with ``tar -C model .`` name members ``./saved_model.pb``."""
    data = gzip.compress(_tar([(_info("./", type_=tarfile.DIRTYPE), None),
                               (_info("./saved_model.pb", 2), b"pb"),
                               (_info("./variables/v.index", 2), b"ix")]), mtime=0)
    members, _ = _unpack(tmp_path, data, wanted=lambda p: True, strip=0)
    assert [(m.path, m.status) for m in members] == [
        ("saved_model.pb", "stored"), ("variables/v.index", "stored")]


def test_member_above_the_stripped_folder_is_refused(tmp_path: Path) -> None:
    data = _tar([(_info("top.txt", 1), b"1"), (_info("d/in.txt", 1), b"2")])
    members, _ = _unpack(tmp_path, data, wanted=lambda p: True)
    assert [(m.path, m.status, m.reason) for m in members] == [
        ("top.txt", "refused", "above_strip"), ("in.txt", "stored", None)]


def test_sparse_member(tmp_path: Path) -> None:
    data = _tar([(_info("top/plain.txt", 2), b"ok"),
                 (_info("top/holes.bin", 0, type_=tarfile.GNUTYPE_SPARSE), None)],
                fmt=tarfile.GNU_FORMAT)
    members, _ = _unpack(tmp_path, data, wanted=lambda p: True)
    assert [(m.path, m.status, m.reason) for m in members] == [
        ("plain.txt", "stored", None), ("holes.bin", "refused", "sparse")]


def test_git_id_is_checked_on_hostile_archives_too(tmp_path: Path) -> None:
    members, _ = _unpack(tmp_path, hostile_tarball(huge=False),
                         wanted=lambda p: git_blob_sha1(GOOD["ok.txt"]) if p == "ok.txt" else False)
    assert [(m.path, m.status) for m in members if m.path == "ok.txt"] == [
        ("ok.txt", "stored"), ("ok.txt", "mismatch")]
