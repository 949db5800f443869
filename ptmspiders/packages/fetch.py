"""One file from an HTTP origin into the blob store: streamed, hashed on the way, resumed.

Scrapy's downloader holds a whole body in memory, so file bytes take this path instead (run in
a worker thread by the spider): urllib3 reads 1 MiB at a time into ``blobs/tmp/<key>.part``
while SHA-256 (and, for small git files, the git blob SHA-1) are updated; the file is renamed
into the store only once size and hash match what the hub published. A file of at most 1 MiB
is received in memory instead and written to the store once verified.

- A cut transfer is resumed with ``Range: bytes=<have>-`` (also across runs: the partial
  file's name is the hash it must reach); the bytes already on disk are re-hashed locally.
- A server that ignores the Range (200) or answers a different range restarts the file.
- A hash mismatch deletes the partial file and fetches once more; a second mismatch is
  ``failed`` with ``reason: hash_mismatch``.
- Redirects are followed by hand, and the credential is attached only while the URL's origin
  is the hub's own: a CDN or any other host never sees it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from ptmspiders.middlewares.auth import origin
from ptmspiders.packages.blobs import CHUNK, BlobStore, git_blob_header

logger = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)
# Files up to this size are received in memory and stored in one write (no partial file).
IN_MEMORY_MAX = CHUNK


@dataclass(frozen=True)
class Expect:
    """What the hub says the file is: any of SHA-256, git blob id, size."""

    sha256: str | None = None
    git_oid: str | None = None
    size: int | None = None

    @property
    def key(self) -> str:
        return self.sha256 or (f"git-{self.git_oid}" if self.git_oid else "")


@dataclass
class Fetched:
    status: str  # downloaded | failed | cancelled
    sha256: str | None = None
    size: int = 0
    reason: str | None = None
    requests: int = 0
    resumed: int = 0  # Range requests that continued a partial file
    transferred: int = 0  # bytes received over the network
    # The last answer's integrity headers (e.g. Google Cloud Storage's x-goog-hash).
    digests: dict[str, str] = field(default_factory=dict)


class Cancelled(Exception):
    """The crawl is stopping: the partial file stays for the next run."""


class _Mismatch(Exception):
    pass


class Streamer:
    """Thread-safe (one urllib3 pool shared by the worker threads)."""

    def __init__(self, blobs: BlobStore, *, user_agent: str, timeout: float = 60.0,
                 credentials: dict[str, str] | None = None, max_resumes: int = 5,
                 max_redirects: int = 5, retry_wait: float = 1.0,
                 progress: Callable[[int], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.blobs = blobs
        self.user_agent = user_agent
        # origin -> Authorization header value; only ever sent to that exact origin.
        self.credentials = dict(credentials or {})
        self.max_resumes = max_resumes
        self.max_redirects = max_redirects
        self.retry_wait = retry_wait
        self.progress = progress or (lambda n: None)
        self.stop = stop or threading.Event()
        self._active: set[urllib3.BaseHTTPResponse] = set()  # bodies being read, for abort()
        self._active_lock = threading.Lock()
        self.http = urllib3.PoolManager(
            num_pools=32, maxsize=16, retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 30.0), read=timeout))

    def fetch(self, url: str, expect: Expect, auth_origin: str | None = None) -> Fetched:
        """Download ``url`` into the store, verified against ``expect``. The credential of
        ``auth_origin`` (the hub whose file this is) goes only to that origin; without it,
        no request carries one."""
        result = Fetched("failed")
        # A file that fits in one read is held in memory and stored in one write: no partial
        # file to claim, append to and rename (resuming it across runs would save nothing).
        part: Path | list[bytes] = [] \
            if expect.size is not None and expect.size <= IN_MEMORY_MAX else \
            self.blobs.part_path(expect.key or hashlib.sha256(url.encode()).hexdigest())
        for attempt in (1, 2):
            try:
                sha, size = self._transfer(url, part, expect, result, auth_origin)
            except Cancelled:
                result.status, result.reason = "cancelled", "cancelled"
                return result
            except _Mismatch:
                _discard(part)
                result.reason = "hash_mismatch"
                logger.warning("Hash mismatch on %s (attempt %d of 2)", url, attempt)
                continue
            except _HttpFailure as exc:
                result.reason = exc.reason
                return result
            if isinstance(part, list):
                self.blobs.put_bytes(b"".join(part), sha)
            else:
                self.blobs.commit(part, sha)
            if expect.git_oid:
                self.blobs.note_git(expect.git_oid, sha)
            result.status, result.sha256, result.size, result.reason = \
                "downloaded", sha, size, None
            return result
        return result

    def fetch_to(self, url: str, path: Path, auth_origin: str | None = None) -> Fetched:
        """Download ``url`` to ``path`` with no published hash to check (an archive whose
        members are checked one by one after): streamed, resumed, never verified here."""
        result = Fetched("failed")
        try:
            sha, size = self._transfer(url, path, Expect(), result, auth_origin)
        except Cancelled:
            result.status, result.reason = "cancelled", "cancelled"
            return result
        except _HttpFailure as exc:
            result.reason = exc.reason
            return result
        except _Mismatch:
            result.reason = "range_mismatch"
            return result
        result.status, result.sha256, result.size = "downloaded", sha, size
        return result

    # -- one attempt: as many Range requests as the transfer needs ------------------------
    def _transfer(self, url: str, part: Path | list[bytes], expect: Expect, result: Fetched,
                  auth_origin: str | None) -> tuple[str, int]:
        """``part``: the partial file, or the chunks held in memory of a small file."""
        state = _State(expect)
        if isinstance(part, list):
            part.clear()
        elif part.exists():
            state.rehash(part)
        failures = 0
        while True:
            if self.stop.is_set():
                raise Cancelled
            if expect.size is not None and state.have > expect.size:
                raise _Mismatch
            if expect.size is not None and state.have == expect.size and state.have > 0:
                break  # complete on disk (a run killed before the rename)
            try:
                if self._request(url, part, expect, state, result, auth_origin):
                    break
                continue  # restarted from byte 0
            except (Urllib3Error, ConnectionError, TimeoutError) as exc:
                logger.info("Transfer of %s cut at %d bytes (%s); resuming", url, state.have,
                            exc)
            failures += 1
            if failures > self.max_resumes:
                raise _HttpFailure("transfer_failed")
            if self.stop.wait(self.retry_wait * failures):  # a stop ends the wait at once
                raise Cancelled
        if expect.size is not None and state.have != expect.size:
            raise _Mismatch
        actual = state.sha.hexdigest()
        if expect.sha256 and actual != expect.sha256:
            raise _Mismatch
        if expect.git_oid and state.git is not None and state.git.hexdigest() != expect.git_oid:
            raise _Mismatch
        return actual, state.have

    def _headers(self, url: str, have: int, auth_origin: str | None) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        here = origin(url)
        cred = self.credentials.get(here) if here == auth_origin else None
        if cred is not None:
            headers["Authorization"] = cred
        if have:
            headers["Range"] = f"bytes={have}-"
        return headers

    def _request(self, url: str, part: Path | list[bytes], expect: Expect, state: _State,
                 result: Fetched, auth_origin: str | None) -> bool:
        """One GET (after redirects): True when the body ended, False when the file must
        start again from byte 0. Raises on a cut transfer (the caller resumes)."""
        target = url
        for _ in range(self.max_redirects + 1):
            if urlsplit(target).scheme not in ("http", "https"):
                raise _HttpFailure("bad_redirect")  # file:, ftp:, ... never followed
            headers = self._headers(target, state.have, auth_origin)
            resp = self.http.request("GET", target, headers=headers, redirect=False,
                                     preload_content=False)
            result.requests += 1
            if resp.status in REDIRECTS and resp.headers.get("Location"):
                resp.drain_conn()
                resp.release_conn()
                target = urljoin(target, resp.headers["Location"])
                continue
            break
        else:
            raise _HttpFailure("too_many_redirects")
        with self._active_lock:
            self._active.add(resp)
        if self.stop.is_set():  # abort() ran while this request was being sent
            resp.shutdown()
        for name in ("x-goog-hash", "content-md5"):
            if resp.headers.get(name):
                result.digests[name] = resp.headers[name]
        try:
            if resp.status == 416 and state.have:
                # Nothing left to send, yet the size is not reached: the partial is wrong.
                raise _Mismatch
            if resp.status == 206 and state.have:
                if _range_start(resp.headers.get("Content-Range")) != state.have:
                    state.reset(part)
                    return False
                result.resumed += 1
            elif resp.status == 200:
                if state.have:  # the server ignored the Range: start again from byte 0
                    state.reset(part)
            elif resp.status >= 500 or resp.status in (408, 429):
                raise urllib3.exceptions.ProtocolError(f"HTTP {resp.status}")
            else:
                raise _HttpFailure(f"http_{resp.status}")
            if isinstance(part, list):
                self._body(resp, part.append, expect, state, result)
            else:
                with part.open("ab") as f:
                    self._body(resp, f.write, expect, state, result)
            return True
        finally:
            with self._active_lock:
                self._active.discard(resp)
            resp.release_conn()

    def _body(self, resp: urllib3.BaseHTTPResponse, write: Callable[[bytes], object],
              expect: Expect, state: _State, result: Fetched) -> None:
        # read1: whatever arrived (up to 1 MiB) is written before the next read, so a cut
        # transfer loses no received byte and resumes exactly where it stopped.
        while chunk := resp.read1(CHUNK):
            if self.stop.is_set():
                raise Cancelled
            write(chunk)
            state.update(chunk)
            result.transferred += len(chunk)
            self.progress(len(chunk))
            if expect.size is not None and state.have > expect.size:
                raise _Mismatch

    def abort(self) -> None:
        """Stop every transfer now (from any thread): a body being read is cut at once
        instead of after its read timeout; the partial files stay for the next run."""
        self.stop.set()
        with self._active_lock:
            active = list(self._active)
        for resp in active:
            resp.shutdown()


class _State:
    """The hashes and length of the bytes on disk so far."""

    def __init__(self, expect: Expect) -> None:
        self.expect = expect
        self.reset(None)

    def reset(self, part: Path | list[bytes] | None) -> None:
        if part is not None:
            _discard(part)
        e = self.expect
        self.sha = hashlib.sha256()
        self.git = (hashlib.sha1(git_blob_header(e.size), usedforsecurity=False)
                    if e.git_oid and e.size is not None else None)
        self.have = 0

    def update(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        if self.git is not None:
            self.git.update(chunk)
        self.have += len(chunk)

    def rehash(self, part: Path) -> None:
        with part.open("rb") as f:
            while chunk := f.read(CHUNK):
                self.update(chunk)


class _HttpFailure(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _discard(part: Path | list[bytes]) -> None:
    """Drop what a transfer received so far (a partial file, or chunks in memory)."""
    if isinstance(part, list):
        part.clear()
    else:
        part.unlink(missing_ok=True)


def _range_start(value: str | None) -> int | None:
    """``bytes 100-199/200`` -> 100."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None
