"""Blobs in an S3-compatible object store: ``PTM_PACKAGES_DIR=s3://bucket/prefix``.

Workers on several machines share one bucket the way they would share one folder. The layout
under ``prefix`` is the folder's:

- ``blobs/sha256/<2 hex>/<sha256>``: every verified file once;
- ``blobs/git-sha1/<2 hex>/<git blob id>``: a small object holding the SHA-256 of a verified
  small git file;
- ``<hub>/<owner>/<name>/<revision>.manifest.json``: each package's tree (an object store has
  no hard links), ``{"files": {path: {"blob", "sha256", "size"}}, ...}``.

Bytes still arrive in a local ``staging`` folder first (``blobs/tmp/<sha256>.part``, so a cut
transfer resumes with a Range request as on disk); a file is uploaded (boto3's managed,
multipart transfer) only after its hash matched, so an object under ``blobs/sha256/`` is always
verified, and a PUT is atomic: no reader ever sees half a blob. Credentials and the endpoint come
from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
instance roles; ``AWS_ENDPOINT_URL`` for MinIO, Ceph, R2, ...); nothing here logs them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ptmspiders.args import ArgumentError
from ptmspiders.packages.blobs import CHUNK, HEX40, HEX64, BlobStore, S3Location, release
from ptmspiders.packages.layout import UnsafePath
from ptmspiders.packages.paths import safe_relpath
from ptmspiders.packages.plan import FileSpec

logger = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = "ptm-package-manifest/1"
ABSENT_TTL = 60.0  # seconds a blob found missing is believed missing without asking again
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
S3Error = (BotoCoreError, ClientError)


def _quietly(call: Callable[[], object]) -> None:
    """A look-up made ahead of time: a failure is left for the real call to meet."""
    with contextlib.suppress(*S3Error):
        call()


def _code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and _code(exc) in _MISSING


def _io_error(what: str, exc: BaseException) -> OSError:
    """A storage failure as the OSError the crawl already records per file (a file fails,
    not the run; its verified partial file stays in staging for the next run)."""
    return OSError(errno.EIO, f"{what}: {_code(exc)}")


def make_client(max_connections: int = 32) -> Any:
    """An S3 client from the standard AWS configuration chain (thread-safe)."""
    for name in ("boto3", "botocore", "s3transfer"):
        # Their DEBUG lines carry request headers (the access key id, signatures): a crawl
        # run with LOG_LEVEL=DEBUG must not copy them into its log.
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.INFO)
    session = boto3.session.Session()
    return session.client("s3", config=Config(
        max_pool_connections=max_connections, connect_timeout=10, read_timeout=60,
        retries={"mode": "standard", "max_attempts": 5}))


class S3BlobStore(BlobStore):
    """The blob store in a bucket; ``dest`` (and ``tmp``) is the local staging folder."""

    def __init__(self, url: str, staging: Path | str, client: Any | None = None) -> None:
        super().__init__(staging)
        self.where = S3Location.parse(url)
        self.location = str(self.where)
        self.client = client if client is not None else make_client()
        self.transfer = TransferConfig(max_concurrency=4)
        # Blobs never change once verified: what one HEAD found is kept for the run. What
        # was missing is believed for ABSENT_TTL seconds (another worker may upload it).
        self._present: dict[str, int] = {}
        self._git: dict[str, str] = {}
        self._absent: dict[str, float] = {}  # sha256 or "git-<oid>" -> when seen missing
        self._lock = threading.Lock()
        # Two packages of one worker storing one blob at once upload it once: the second
        # waits, then finds it (striped by the first byte of the hash: bounded memory).
        self._stripes = [threading.Lock() for _ in range(256)]
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.where.bucket)
        except S3Error as exc:
            raise ArgumentError(f"{self.location}: the bucket cannot be used "
                                f"({_code(exc)})") from None

    def key(self, relpath: str) -> str:
        return self.where.key(relpath)

    def path(self, sha256: str) -> Path:
        raise TypeError("a blob in an object store has no local path; use blob_file()")

    # -- blobs -------------------------------------------------------------------------------
    def _head(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.where.bucket, Key=key)
                       ["ContentLength"])
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def _seen_absent(self, key: str) -> bool:
        when = self._absent.get(key)
        return when is not None and time.monotonic() - when < ABSENT_TTL

    def _note_absent(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._absent) >= 100_000:
                self._absent = {k: t for k, t in self._absent.items()
                                if now - t < ABSENT_TTL}
            self._absent[key] = now

    def has(self, sha256: str, size: int | None = None) -> bool:
        if not HEX64.fullmatch(sha256):
            return False
        known = self._present.get(sha256)
        if known is None:
            if self._seen_absent(sha256):
                return False
            known = self._head(self.key(self.relpath(sha256)))
            if known is None:
                self._note_absent(sha256)
                return False
            with self._lock:
                self._present[sha256] = known
        return size is None or known == size

    def warm(self, specs: Iterable[FileSpec]) -> None:
        """Ask the bucket about a package's files at once (HEADs and index reads in
        parallel), so that planning it then answers from memory instead of sending one
        request after another from the crawl's event loop."""
        calls: list[Callable[[], object]] = []
        for spec in specs:
            if spec.sha256:
                calls.append(functools.partial(self.has, spec.sha256))
            elif spec.git_oid:
                calls.append(functools.partial(self.sha256_of_git, spec.git_oid))
        if len(calls) > 1:
            for _ in self._pool().map(_quietly, calls):
                pass
        elif calls:
            _quietly(calls[0])

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=16,
                                                    thread_name_prefix="ptm-s3")
            return self._executor

    def _upload(self, source: Path | bytes, sha256: str, size: int) -> None:
        key = self.key(self.relpath(sha256))
        extra = {"ContentType": "application/octet-stream", "Metadata": {"sha256": sha256}}
        try:
            if isinstance(source, bytes):
                self.client.put_object(Bucket=self.where.bucket, Key=key, Body=source, **extra)
            else:
                self.client.upload_file(str(source), self.where.bucket, key,
                                        ExtraArgs=extra, Config=self.transfer)
            stored = self._head(key)
        except S3Error as exc:
            raise _io_error("upload failed", exc) from None
        if stored != size:  # what the store kept is not what was verified
            raise OSError(errno.EIO, f"upload of {sha256} stored {stored} bytes, not {size}")
        with self._lock:
            self._present[sha256] = size

    def commit(self, tmp: Path, sha256: str) -> None:
        """Upload a verified file (unless the bucket has it already), then drop the local
        copy. A failed upload leaves ``tmp`` where it is: a ``.part`` is resumed (here: found
        complete and uploaded) by the next run."""
        if not HEX64.fullmatch(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        size = tmp.stat().st_size
        with self._stripes[int(sha256[:2], 16)]:
            if not self.has(sha256, size):
                self._upload(tmp, sha256, size)
        tmp.unlink(missing_ok=True)
        release(tmp)

    def put_bytes(self, data: bytes, sha256: str) -> None:
        if not HEX64.fullmatch(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        with self._stripes[int(sha256[:2], 16)]:
            if not self.has(sha256, len(data)):
                self._upload(data, sha256, len(data))

    # -- git blob id -> sha256 index ---------------------------------------------------------
    def _git_key(self, oid: str) -> str:
        return self.key(f"blobs/git-sha1/{oid[:2]}/{oid}")

    def sha256_of_git(self, oid: str | None) -> str | None:
        if not oid or not HEX40.fullmatch(oid):
            return None
        sha = self._git.get(oid)
        if sha is None:
            if self._seen_absent(f"git-{oid}"):
                return None
            try:
                body = self.client.get_object(Bucket=self.where.bucket,
                                              Key=self._git_key(oid))["Body"].read(200)
            except ClientError as exc:
                if _missing(exc):
                    self._note_absent(f"git-{oid}")
                    return None
                raise
            sha = body.decode("ascii", "replace").strip()
        if not HEX64.fullmatch(sha) or not self.has(sha):
            return None
        self._git[oid] = sha
        return sha

    def note_git(self, oid: str, sha256: str) -> None:
        """Known at once in this process; written to the bucket in the background (the
        crawl calls this from its event loop). Written before the process exits, except
        after a kill: then the next run fetches that small file once more to learn it."""
        if not HEX40.fullmatch(oid) or not HEX64.fullmatch(sha256):
            return
        self._git[oid] = sha256
        future = self._pool().submit(self._put_git, oid, sha256)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _put_git(self, oid: str, sha256: str) -> None:
        try:
            self.client.put_object(Bucket=self.where.bucket, Key=self._git_key(oid),
                                   Body=sha256.encode(), ContentType="text/plain")
        except S3Error as exc:  # only an index: the next run fetches the file to learn it
            logger.warning("Cannot record git blob %s in %s: %s", oid, self.location,
                           _code(exc))

    def flush(self) -> None:
        """Wait for the index writes still in flight."""
        with self._lock:
            pending = list(self._pending)
        wait(pending)

    def hash_blob(self, blob: str) -> tuple[str, int] | None:
        """Stream the object and hash it (``ptm verify``); ``None`` when it is missing."""
        if safe_relpath(blob) is None:
            return None
        try:
            body = self.client.get_object(Bucket=self.where.bucket, Key=self.key(blob))["Body"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        sha, size = hashlib.sha256(), 0
        for chunk in body.iter_chunks(CHUNK):
            sha.update(chunk)
            size += len(chunk)
        return sha.hexdigest(), size

    # -- package trees: one manifest object per package --------------------------------------
    def place(self, root: Path, relpath: str, blob: str,
              checked: set[Path] | None = None) -> None:
        if safe_relpath(relpath) is None:
            raise UnsafePath(relpath)

    @contextlib.contextmanager
    def blob_file(self, blob: str) -> Iterator[Path]:
        """A temporary local copy (in staging) of the blob, removed after the block."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        local = self.tmp / f"read.{uuid.uuid4().hex}.new"
        try:
            self.client.download_file(self.where.bucket, self.key(blob), str(local),
                                      Config=self.transfer)
        except S3Error as exc:
            local.unlink(missing_ok=True)
            raise _io_error("download failed", exc) from None
        try:
            yield local
        finally:
            local.unlink(missing_ok=True)

    def manifest_key(self, package_path: str) -> str:
        """The manifest of the package whose record says ``path: package_path``."""
        return self.key(package_path + MANIFEST_SUFFIX)

    def finish_package(self, root: Path, package_id: str,
                       records: Sequence[dict[str, Any]]) -> None:
        """Write the package's manifest: every stored file's path -> blob, SHA-256, size.
        Rewritten whole on each run (a PUT replaces it atomically)."""
        path = root.relative_to(self.dest).as_posix()
        files = {r["path"]: {"blob": r["blob"], "sha256": r.get("sha256"), "size": r.get("size")}
                 for r in records if r["status"] in ("downloaded", "present") and r.get("blob")}
        body = json.dumps({"format": MANIFEST_FORMAT, "package": package_id, "path": path,
                           "files": dict(sorted(files.items()))},
                          ensure_ascii=False, indent=1).encode()
        self.client.put_object(Bucket=self.where.bucket, Key=self.manifest_key(path),
                               Body=body, ContentType="application/json")

    def manifest(self, package_path: str) -> dict[str, Any] | None:
        try:
            body = self.client.get_object(Bucket=self.where.bucket,
                                          Key=self.manifest_key(package_path))["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("files"), dict) else None

    def unplaced(self, package_path: str, files: Sequence[tuple[str, str]]) -> list[str]:
        """The paths of ``files`` ((path, blob) pairs) the package's manifest does not map to
        their blob (all of them when the manifest is missing or unreadable)."""
        doc = self.manifest(package_path)
        listed: dict[str, Any] = doc["files"] if doc is not None else {}
        return [path for path, blob in files
                if not isinstance(listed.get(path), dict) or listed[path].get("blob") != blob]
