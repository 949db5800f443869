"""The content-addressed blob store under ``dest/blobs``.

- ``sha256/<2 hex>/<sha256>``: every verified file once, named by its SHA-256; written to
  ``tmp/`` first and renamed in only after its hash matched the hub's.
- ``tmp/<key>.part``: a transfer in progress, named by the hash it must reach, so a rerun after
  a kill resumes it with an HTTP Range request instead of starting again.
- ``git-sha1/<2 hex>/<oid>``: the SHA-256 of a verified small (non-LFS) file, keyed by its git
  blob id, the only hash the Hugging Face tree gives for such files: a rerun knows the file is
  present without fetching it.

:class:`BlobStore` keeps blobs on a file system (local or shared); its subclass
:class:`ptmspiders.packages.s3.S3BlobStore` keeps them in an S3-compatible bucket with the same
layout, while ``tmp/`` stays on local disk. :func:`open_blobs` picks one from the destination.
The crawl talks to either through the same methods: ``has``, ``part_path``, ``commit``,
``put_bytes``, the git index, ``place``/``blob_file``/``finish_package`` for package trees.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import random
import re
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptmspiders.packages.layout import link_file
from ptmspiders.packages.paths import safe_relpath
from ptmspiders.packages.plan import FileSpec

logger = logging.getLogger(__name__)

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX40 = re.compile(r"[0-9a-f]{40}")
S3_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,254}")
CHUNK = 1 << 20


def git_blob_header(size: int) -> bytes:
    return b"blob %d\0" % size


def git_blob_sha1(data: bytes) -> str:
    """git's object id of a blob: ``sha1("blob <size>\\0" + bytes)``."""
    h = hashlib.sha1(git_blob_header(len(data)), usedforsecurity=False)
    h.update(data)
    return h.hexdigest()


def hash_file(path: Path, *, git: bool = False) -> tuple[str, str | None, int]:
    """(sha256, git blob sha1 or None, size) of a file on disk, read in 1 MiB chunks."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    g = hashlib.sha1(git_blob_header(size), usedforsecurity=False) if git else None
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            if g is not None:
                g.update(chunk)
    return sha.hexdigest(), g.hexdigest() if g is not None else None, size


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket/some/prefix`` -> (bucket, prefix); ValueError if unusable."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if not S3_BUCKET.fullmatch(bucket) or (prefix and safe_relpath(prefix) is None):
            raise ValueError(f"not an object store location: {url!r} "
                             "(expected s3://bucket/prefix)")
        return cls(bucket, prefix)

    def key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


# Partial files are claimed with POSIX record locks, one byte per key in ``blobs/parts.lock``:
# held per process (two stores of one process share them), gone when the process dies, and
# one descriptor for any number of claims. Two keys on one byte only make one writer use a
# file of its own.
_part_locks: dict[Path, int] = {}  # lock file -> its descriptor in this process
_claims: dict[Path, tuple[int, int]] = {}  # part path -> (descriptor, byte)
_claims_lock = threading.Lock()


def _claim(part: Path, lock: Path, key: str) -> bool:
    """Claim ``part`` for this process; False when another process holds it."""
    with _claims_lock:
        if part in _claims:
            return True
        fd = _part_locks.get(lock)
        if fd is None:
            fd = _part_locks[lock] = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        byte = int(hashlib.sha256(key.encode()).hexdigest()[:10], 16)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
        except OSError:  # EAGAIN/EACCES: held by another process
            return False
        _claims[part] = (fd, byte)
        return True


def release(part: Path) -> None:
    """Give up the claim on ``part`` (after its commit; a failed transfer keeps it until the
    process ends, which costs one lock record, no descriptor)."""
    with _claims_lock:
        claim = _claims.pop(part, None)
        if claim is not None:
            fcntl.lockf(claim[0], fcntl.LOCK_UN, 1, claim[1])


def check_location(location: str | None) -> str | None:
    """``location`` if it can name a blob store (an ``s3://`` URL is parsed), else
    ValueError: a typo is refused before the crawl starts."""
    if location is not None and location.startswith("s3://"):
        S3Location.parse(location)
    return location


def open_blobs(location: str, staging: Path | str | None = None) -> BlobStore:
    """The blob store at ``location``: a folder, or ``s3://bucket/prefix`` (then partial
    transfers stay in the local folder ``staging``). Sends nothing: :meth:`BlobStore.check`
    does. Raises ``ValueError`` for a malformed ``s3://`` location."""
    if location.startswith("s3://"):
        from ptmspiders.config import default
        from ptmspiders.packages.s3 import S3BlobStore

        return S3BlobStore(location, staging or default("PTM_PACKAGES_STAGING_DIR"))
    return BlobStore(location)


def link_in(tmp: Path, final: Path) -> None:
    """Give the verified file ``tmp`` its blob name ``final``, then drop ``tmp``. link(2)
    creates the name only if it is free: of two writers of one blob, the first wins and every
    hard link of every package points at that one inode. The blob's folder is made only when
    missing (a stat per blob saved: most blobs land in a folder that exists)."""
    with contextlib.suppress(FileExistsError):
        try:
            os.link(tmp, final)
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(tmp, final)
    tmp.unlink(missing_ok=True)


class BlobStore:
    """Blobs and package folders of hard links under ``dest`` (a local or shared folder)."""

    def __init__(self, dest: Path | str) -> None:
        self.dest = Path(dest)
        self.root = self.dest / "blobs"
        self.tmp = self.root / "tmp"
        self.location = str(self.dest)  # what logs and reports call this store
        self._tmp_lock: int | None = None

    def check(self) -> None:
        """Raise ValueError (one line) when the store cannot be used; a folder is made when
        the first blob is written."""

    def warm(self, specs: Iterable[FileSpec]) -> None:
        """Look ahead at what a package's plan will ask (:meth:`has`, :meth:`sha256_of_git`),
        in a worker thread. A folder needs nothing: a ``stat`` is cheap."""

    def flush(self) -> None:
        """Wait for writes still in flight (none on a file system)."""

    def relpath(self, sha256: str) -> str:
        """Where the blob lives, relative to ``dest`` (as the package records say)."""
        return f"blobs/sha256/{sha256[:2]}/{sha256}"

    def path(self, sha256: str) -> Path:
        if not HEX64.fullmatch(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.dest / self.relpath(sha256)

    def has(self, sha256: str, size: int | None = None) -> bool:
        try:
            st = self.path(sha256).stat()
        except (OSError, ValueError):
            return False
        return size is None or st.st_size == size

    def part_path(self, key: str) -> Path:
        """The partial transfer of the file expected to hash to ``key``, claimed by this
        process until it is committed (or the process ends). When another crawl sharing
        ``dest`` is writing that file right now, a file of this process's own instead: two
        writers appending to one file would interleave their bytes, and each would still
        see its own stream hash right."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        part = self.tmp / f"{key}.part"
        if _claim(part, self.root / "parts.lock", key):
            return part
        return self.tmp / f"{key}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part"

    def clean_tmp(self) -> int:
        """Remove what a killed run left in ``tmp`` that no run can resume (files being
        renamed, archives, unpacked members), and partial files of blobs now complete.
        Resumable partial files (``<sha256>.part``, ``git-<oid>.part``) stay.

        Workers of one distributed crawl may share ``dest`` (on one host, or a shared file
        system): each crawl holds a shared lock on ``blobs/tmp.lock`` from here on, and
        only a crawl that finds no other holding it cleans (another's files are in use)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        if not self._lock_tmp():
            logger.info("Another crawl is using %s: its leftovers stay", self.tmp)
            return 0
        removed = 0
        try:
            for entry in self.tmp.iterdir():
                key = entry.name.removesuffix(".part")
                resumable = entry.name.endswith(".part") and (
                    HEX64.fullmatch(key) or HEX40.fullmatch(key.removeprefix("git-")))
                if resumable and not (HEX64.fullmatch(key) and self.has(key)):
                    continue
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed += 1
        finally:
            self._share_tmp()
        return removed

    def _lock_tmp(self) -> bool:
        """Take ``blobs/tmp.lock`` exclusively if no other crawl holds it (True), else
        shared (False). The lock lives as long as this store (the process, in a crawl)."""
        if self._tmp_lock is None:
            fd = os.open(self.root / "tmp.lock", os.O_RDWR | os.O_CREAT, 0o644)
            self._tmp_lock = fd
            weakref.finalize(self, os.close, fd)
        try:
            fcntl.flock(self._tmp_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._tmp_lock, fcntl.LOCK_SH)
            return False
        return True

    def _share_tmp(self) -> None:
        if self._tmp_lock is not None:
            fcntl.flock(self._tmp_lock, fcntl.LOCK_SH)

    def commit(self, tmp: Path, sha256: str) -> Path | None:
        """Move a verified file into place (atomically; a blob already there wins)."""
        final = self.path(sha256)
        os.chmod(tmp, 0o444)  # blobs are shared by hard links: nobody edits one in place
        link_in(tmp, final)
        release(tmp)
        return final

    def put_bytes(self, data: bytes, sha256: str) -> Path | None:
        """Store a verified small file held in memory: written to tmp (read-only from the
        start), then linked in as :meth:`commit` does (a blob already there wins). As few
        system calls as it takes: each lets the crawl's other threads take the interpreter,
        and a crawl makes thousands (no fsync either, like a streamed blob)."""
        final = self.path(sha256)
        # Unique without a uuid (a getrandom call): O_EXCL refuses a name already taken.
        tmp = self.tmp / f"{sha256}.{os.getpid()}-{random.getrandbits(64):016x}.new"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o444)
        except FileNotFoundError:
            self.tmp.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o444)
        try:
            with memoryview(data) as view:
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        link_in(tmp, final)
        return final

    # -- git blob id -> sha256 index --------------------------------------------------------
    def _git_path(self, oid: str) -> Path:
        if not HEX40.fullmatch(oid):
            raise ValueError(f"not a git blob id: {oid!r}")
        return self.root / "git-sha1" / oid[:2] / oid

    def sha256_of_git(self, oid: str | None) -> str | None:
        """The SHA-256 of a verified file known by its git blob id, if its blob is present."""
        if not oid:
            return None
        try:
            sha = self._git_path(oid).read_text().strip()
        except (OSError, ValueError):
            return None
        return sha if HEX64.fullmatch(sha) and self.has(sha) else None

    def note_git(self, oid: str, sha256: str) -> None:
        with contextlib.suppress(ValueError):
            path = self._git_path(oid)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{oid}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(sha256)
            os.replace(tmp, path)

    # -- package trees -------------------------------------------------------------------
    def place(self, root: Path, relpath: str, blob: str,
              checked: set[Path] | None = None) -> None:
        """Put the file ``relpath`` of the package at ``root`` in place: a hard link to the
        blob (``blob``: its path relative to ``dest``). Raises UnsafePath or OSError.
        ``checked``: one set per package, the folders made and checked so far."""
        link_file(root, relpath, self.dest / blob, checked)

    @contextlib.contextmanager
    def blob_file(self, blob: str) -> Iterator[Path]:
        """A local file holding the blob's bytes, for as long as the block runs (the
        scanner reads it)."""
        yield self.dest / blob

    def finish_package(self, root: Path, package_id: str,
                       records: Sequence[dict[str, Any]]) -> None:
        """Called once all files of a package are placed. A folder of hard links needs
        nothing more; an object store writes the package's manifest here."""

    # -- checks (``ptm verify``) -------------------------------------------------------------
    def hash_blob(self, blob: str) -> tuple[str, int] | None:
        """(SHA-256, size) of the bytes stored at ``blob`` (relative to ``dest``), or
        ``None`` when there is no such blob."""
        path = self.dest / blob
        if safe_relpath(blob) is None or not path.is_file():
            return None
        sha, _, size = hash_file(path)
        return sha, size

    def unplaced(self, package_path: str, files: Sequence[tuple[str, str]]) -> list[str]:
        """The paths of ``files`` ((path, blob) pairs) in the package folder that are not the
        blob's hard link (a copy without ``cp -l`` splits them), among blobs still present."""
        root = self.dest / package_path
        out = []
        for path, blob in files:
            try:
                same = os.path.samefile(root / path, self.dest / blob)
            except OSError:
                same = False
            if not same and (self.dest / blob).is_file():
                out.append(path)
        return out
