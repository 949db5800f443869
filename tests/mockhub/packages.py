"""Model packages on the mock: the files themselves, as the hubs serve them.

- ``GET /api/models/{repo}/tree/{rev}``: the package's files (``oid``, ``size``, ``lfs``);
  ``/api/models/{repo}/revision/{rev}``: its ``sha`` (the latest commit).
- ``GET|HEAD /{repo}/resolve/{rev}/{path}``: small files inline (Range honoured); LFS files
  answer ``302`` to the CDN with ``X-Linked-Etag``, ``X-Linked-Size``, ``X-Repo-Commit``.
- ``GET|HEAD /cdn/{sha256}``: the CDN (Range honoured), on whichever mock ``attach_cdn`` names
  (``MockHub(host="127.0.0.2")`` in tests: another origin); the hub itself by default.
- ``GET /media/{owner}/{repo}/{ref}/{path}``: GitHub's LFS media host (ONNX Zoo weights).
- ``GET /repos/{owner}/{repo}/commits/{ref}`` (``application/vnd.github.sha``): the commit;
  trees and tarballs answer for that commit too.
- ``GET /repos/{owner}/{repo}/tarball/{ref}``: ``302`` to ``/codeload/...`` (on the CDN when
  one is attached), a tar.gz of the files ``hub.github`` serves, plus planted members.
- ``GET /api/v1/models/{owner}/{model}/{framework}/{instance}/{version}/download``: Kaggle's
  ``302`` to ``/gcs/...``, Cloud Storage serving the archive with ``x-goog-hash``.
- ``GET /tfhub/{handle}?tf-hub-format=compressed`` (tfhub.dev, the ``tensorflow_hub``
  protocol): ``302`` to ``/tfhub-archives/{handle}.tar.gz`` (on the CDN when one is
  attached), a SavedModel-shaped tar.gz (:func:`tfhub_archive`, or
  ``hub.packages.tfhub_archives[handle]``) served without any hash header.

Hostile cases come from :func:`hostile_repos`: a pickle that imports ``os.system`` (built by
hand, never loaded), bytes that do not match their hash, path-traversal names, one blob in
three repositories, and a transfer cut in the middle. Big files are generated as they are
sent (:class:`Generated`), never stored.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.mockhub.server import MockHub, MockRequest, MockResponse

BLOCK = 1 << 20
# A pickle that would run os.system("echo pwned") if loaded (protocol 0: GLOBAL, TUPLE,
# REDUCE). Written by hand; nothing here or in the crawler ever unpickles it.
EVIL_PICKLE = b"cos\nsystem\n(S'echo pwned'\ntR."


@dataclass
class Generated:
    """``size`` deterministic bytes from ``seed``, produced block by block."""

    seed: int
    size: int
    _sha: str | None = None

    def block(self) -> bytes:
        unit = hashlib.sha256(self.seed.to_bytes(8, "big")).digest()
        return (unit * (BLOCK // len(unit) + 1))[:BLOCK]

    def iter(self, start: int = 0) -> Iterator[bytes]:
        block = self.block()
        pos = start
        while pos < self.size:
            off = pos % BLOCK
            n = min(BLOCK - off, self.size - pos)
            yield block[off:off + n]
            pos += n

    @property
    def sha256(self) -> str:
        if self._sha is None:
            h = hashlib.sha256()
            for chunk in self.iter():
                h.update(chunk)
            self._sha = h.hexdigest()
        return self._sha


@dataclass
class PkgFile:
    path: str
    content: bytes | Generated
    lfs: bool = False
    corrupt: bool = False  # the bytes served differ from the published hash
    cut: bool = False  # the first full transfer stops half-way (connection closed)
    stall: threading.Event | None = None  # the first transfer stops half-way until set

    @property
    def size(self) -> int:
        return self.content.size if isinstance(self.content, Generated) else len(self.content)

    @property
    def sha256(self) -> str:
        if isinstance(self.content, Generated):
            return self.content.sha256
        return hashlib.sha256(self.content).hexdigest()

    def chunks(self, start: int = 0) -> Iterator[bytes]:
        if isinstance(self.content, Generated):
            source = self.content.iter(start)
        else:
            source = iter([self.content[start:]] if start < self.size else [])
        for chunk in source:
            yield bytes(b ^ 0xFF for b in chunk[:1]) + chunk[1:] if self.corrupt else chunk

    def pointer(self) -> bytes:
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                f"size {self.size}\n").encode()

    def git_oid(self) -> str:
        data = self.pointer() if self.lfs else self.content
        assert isinstance(data, bytes)
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class PackageRepos:
    repos: dict[str, tuple[str, list[PkgFile]]] = field(default_factory=dict)
    # Tree entries added as they are, e.g. hostile paths.
    extra_entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    media: dict[str, PkgFile] = field(default_factory=dict)  # "owner/repo/ref/path" -> file
    tree_links: dict[str, str] = field(default_factory=dict)  # repo -> Link rel="next" URL
    cdn_url: str | None = None
    github: Any = None  # the hub's GithubRepos: what tarballs are made of
    # (owner, repo, ref) -> extra tar members, "{top}" in a name standing for the top folder.
    tar_extra: dict[tuple[str, str, str], list[tuple[tarfile.TarInfo, bytes | None]]] = field(
        default_factory=dict)
    # "owner/model/framework/instance/version" -> (tar.gz bytes, served corrupt?)
    kaggle_archives: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    # Kaggle archives whose transfer stops half-way until the event is set.
    kaggle_stall: dict[str, threading.Event] = field(default_factory=dict)
    # tfhub handle -> the tar.gz tfhub.dev's redirect target serves (default: tfhub_archive)
    tfhub_archives: dict[str, bytes] = field(default_factory=dict)
    cut_done: set[str] = field(default_factory=set)
    by_sha: dict[str, PkgFile] = field(default_factory=dict)  # the CDN's objects
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, repo_id: str, revision: str, files: list[PkgFile]) -> None:
        self.repos[repo_id] = (revision, files)
        with self.lock:
            for f in files:
                if f.lfs:
                    self.by_sha[f.sha256] = f

    def blob(self, sha: str) -> PkgFile | None:
        found = self.by_sha.get(sha)
        if found is not None:
            return found
        return next((f for f in self.media.values() if f.sha256 == sha), None)

    def model_docs(self) -> list[dict[str, Any]]:
        """``models`` documents for the repositories, as hf_models would store them."""
        docs = []
        for n, (repo_id, (revision, _)) in enumerate(sorted(self.repos.items())):
            owner, _, name = repo_id.rpartition("/")
            docs.append({"_id": f"huggingface:{repo_id}", "hub": "huggingface",
                         "hub_id": repo_id, "name": name, "owner": owner or None,
                         "latest_commit_sha": revision, "downloads": 1000 - n, "likes": n,
                         "files": [], "crawl": {"first_seen": "2026-01-01T00:00:00.000Z",
                                                "last_seen": "2026-01-01T00:00:00.000Z",
                                                "source_url": None}})
        return docs


def attach_cdn(hub: MockHub, cdn: MockHub) -> None:
    """Serve the hub's LFS blobs from ``cdn`` (another origin): resolve redirects there."""
    cdn.packages = hub.packages  # type: ignore[attr-defined]
    hub.packages.cdn_url = cdn.url  # type: ignore[attr-defined]


def _range(req: MockRequest, size: int) -> int | None:
    value = req.headers.get("range")
    m = re.fullmatch(r"bytes=(\d+)-", value or "")
    return int(m.group(1)) if m else None


def serve(hub: MockHub, req: MockRequest, f: PkgFile, key: str,
          headers: list[tuple[str, str]] | None = None) -> MockResponse:
    """The file's bytes: Range honoured, the first transfer of a cut file stopped half-way."""
    start = _range(req, f.size)
    headers = [*(headers or []), ("Accept-Ranges", "bytes"), ("ETag", f'"{f.sha256}"')]
    if start is not None and start >= f.size:
        return MockResponse(status=416, headers=[("Content-Range", f"bytes */{f.size}")])
    status = 200
    if start:
        status = 206
        headers.append(("Content-Range", f"bytes {start}-{f.size - 1}/{f.size}"))
    resp = MockResponse(status=status, headers=headers, content_type="application/octet-stream")
    resp.declared_length = f.size - (start or 0)  # type: ignore[attr-defined]
    chunks = f.chunks(start or 0)
    first = False
    store: PackageRepos = hub.packages  # type: ignore[attr-defined]
    if (f.cut or f.stall is not None) and not start and req.method == "GET":
        with store.lock:
            first = key not in store.cut_done
            store.cut_done.add(key)
    if first:
        chunks = _half(chunks, f.size, f.stall)
        resp.close = True  # type: ignore[attr-defined]
    resp.chunks = chunks  # type: ignore[attr-defined]
    return resp


def _half(chunks: Iterator[bytes], size: int, stall: threading.Event | None
          ) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        room = size // 2 - sent
        if room <= 0:
            break
        yield chunk[:room]
        sent += min(room, len(chunk))
    if stall is not None:
        stall.wait(60)


def commit_of(owner: str, repo: str, ref: str) -> str:
    """The (made-up) commit a planted ref points to."""
    return hashlib.sha1(f"{owner}/{repo}@{ref}".encode()).hexdigest()


def ref_of(store: PackageRepos, owner: str, repo: str, sha: str) -> str | None:
    if store.github is None:
        return None
    for o, r, ref in store.github.overrides:
        if (o, r) == (owner, repo) and commit_of(o, r, ref) == sha:
            return str(ref)
    return None


def tarball(store: PackageRepos, owner: str, repo: str, ref: str) -> bytes | None:
    """GitHub's ``legacy.tar.gz``: ``<owner>-<repo>-<short sha>/`` around the files, the
    commit in a pax global header; plus the members a test planted (hostile ones)."""
    files = store.github.files(owner, repo, ref) if store.github is not None else {}
    if not files:
        return None
    commit = commit_of(owner, repo, ref)
    top = f"{owner}-{repo}-{commit[:7]}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": commit}) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in store.tar_extra.get((owner, repo, ref), []):
            info = copy.copy(info)
            info.name = info.name.replace("{top}", top)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def make_archive(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar.gz of the given members, in order (names as given: hostile ones too)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def kaggle(hub: MockHub, req: MockRequest, store: PackageRepos, key: str) -> MockResponse:
    creds = getattr(getattr(hub, "kaggle", None), "credentials", None)
    if creds is not None:
        expected = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        if req.headers.get("authorization") != expected:
            return MockResponse.json({"code": 401, "message": "Unauthenticated"}, status=401)
    if key not in store.kaggle_archives:
        return MockResponse.json({"code": 404, "message": "Not found"}, status=404)
    base = store.cdn_url or hub.base_url(req)
    return MockResponse(status=302, content_type="text/html", headers=[
        ("Location", f"{base}/gcs/kaggle-models/{key}.tar.gz?X-Goog-Algorithm=GOOG4-RSA-SHA256"
                     "&X-Goog-Signature=mock")])


def gcs(store: PackageRepos, key: str) -> MockResponse:
    """Google Cloud Storage: the object, with its MD5 in ``x-goog-hash`` (a corrupt archive
    is served with the MD5 of the bytes it should have had)."""
    if key not in store.kaggle_archives:
        return MockResponse.text("NoSuchKey", status=404)
    body, corrupt = store.kaggle_archives[key]
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    if corrupt:
        body = body[:-1] + bytes([body[-1] ^ 0xFF])
    resp = MockResponse(body=body, content_type="application/octet-stream",
                        headers=[("x-goog-hash", f"crc32c=AAAAAA==, md5={md5}")])
    stall = store.kaggle_stall.get(key)
    if stall is not None:  # half the archive, then nothing until the test lets go
        resp.chunks = _half(iter([body]), len(body), stall)  # type: ignore[attr-defined]
        resp.close = True  # type: ignore[attr-defined]
    return resp


def tfhub_files(handle: str) -> dict[str, bytes]:
    """The SavedModel files of a tfhub handle's archive, with bytes that depend on it."""
    seed = hashlib.sha256(handle.encode()).digest()
    return {"saved_model.pb": b"PB" + seed, "variables/variables.index": b"IX" + seed[:8],
            "variables/variables.data-00000-of-00001": seed * 64}


def tfhub_archive(handle: str) -> bytes:
    """A model archive as tfhub.dev's Kaggle redirect serves it: ``tar -cz -C model .``."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for path, data in tfhub_files(handle).items():
        info = tarfile.TarInfo(f"./{path}")
        info.size, info.mtime = len(data), 1_700_000_000
        members.append((info, data))
    return make_archive(members)


def tfhub(hub: MockHub, req: MockRequest, store: PackageRepos, handle: str) -> MockResponse:
    """tfhub.dev: ``?tf-hub-format=compressed`` redirects to the archive; without it, a page."""
    if req.arg("tf-hub-format") != "compressed":
        return MockResponse.text("<html>a model page</html>", content_type="text/html")
    base = store.cdn_url or hub.base_url(req)
    return MockResponse(status=302, content_type="text/html", headers=[
        ("Location", f"{base}/tfhub-archives/{handle}.tar.gz")])


def packages_hook(hub: MockHub, req: MockRequest) -> MockResponse | None:
    store: PackageRepos = hub.packages  # type: ignore[attr-defined]
    if req.method not in ("GET", "HEAD"):
        return None
    m = re.fullmatch(r"/api/v1/models/(?P<key>[^/]+/[^/]+/[^/]+/[^/]+/\d+)/download", req.path)
    if m:
        return kaggle(hub, req, store, unquote(m.group("key")))
    m = re.fullmatch(r"/gcs/kaggle-models/(?P<key>.+)\.tar\.gz", req.path)
    if m:
        return gcs(store, unquote(m.group("key")))
    m = re.fullmatch(r"/tfhub/(?P<handle>.+)", req.path)
    if m:
        return tfhub(hub, req, store, unquote(m.group("handle")))
    m = re.fullmatch(r"/tfhub-archives/(?P<handle>.+)\.tar\.gz", req.path)
    if m:
        handle = unquote(m.group("handle"))
        return MockResponse(body=store.tfhub_archives.get(handle) or tfhub_archive(handle),
                            content_type="application/octet-stream")
    m = re.fullmatch(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/commits/(?P<ref>[^/]+)", req.path)
    if m and store.github is not None:
        o, r, ref = m.group("o"), m.group("r"), unquote(m.group("ref"))
        if not store.github.files(o, r, ref):
            return MockResponse.json({"message": "No commit found for SHA: " + ref}, status=422)
        return MockResponse.text(commit_of(o, r, ref),
                                 content_type="application/vnd.github.sha")
    m = re.fullmatch(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/git/trees/(?P<sha>[0-9a-f]{40})",
                     req.path)
    if m:
        ref = ref_of(store, m.group("o"), m.group("r"), m.group("sha"))
        if ref is not None:  # a commit of a ref tests planted: GitHub's tree route serves it
            req.path = req.path[: m.start("sha")] + ref
        return None
    m = re.fullmatch(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/tarball/(?P<ref>[^/]+)", req.path)
    if m:
        o, r, ref = m.group("o"), m.group("r"), unquote(m.group("ref"))
        ref = ref_of(store, o, r, ref) or ref
        if store.github is None or not store.github.files(o, r, ref):
            return MockResponse.json({"message": "Not Found"}, status=404)
        base = store.cdn_url or hub.base_url(req)
        return MockResponse(status=302, content_type="text/html", headers=[
            ("Location", f"{base}/codeload/{o}/{r}/legacy.tar.gz/{m.group('ref')}")])
    m = re.fullmatch(r"/codeload/(?P<o>[^/]+)/(?P<r>[^/]+)/legacy\.tar\.gz/(?P<ref>[^/]+)",
                     req.path)
    if m:
        o, r, ref = m.group("o"), m.group("r"), unquote(m.group("ref"))
        body = tarball(store, o, r, ref_of(store, o, r, ref) or ref)
        if body is None:
            return MockResponse.text("404: Not Found", status=404)
        return MockResponse(body=body, content_type="application/x-gzip")
    m = re.fullmatch(r"/cdn/(?P<sha>[0-9a-f]{64})", req.path)
    if m:
        f = store.blob(m.group("sha"))
        if f is None:
            return MockResponse.text("NoSuchKey", status=404)
        return serve(hub, req, f, f"cdn:{m.group('sha')}")
    m = re.fullmatch(r"/media/(?P<key>.+)", req.path)
    if m:
        f = store.media.get(unquote(m.group("key")))
        if f is None:
            return MockResponse.text("404: Not Found", status=404)
        return serve(hub, req, f, f"media:{m.group('key')}")
    m = re.fullmatch(r"/api/models/(?P<repo>[^/]+(?:/[^/]+)?)/revision/(?P<rev>[^/]+)",
                     req.path)
    if m and m.group("repo") in store.repos:
        return MockResponse.json({"_id": "0" * 24, "id": m.group("repo"),
                                  "sha": store.repos[m.group("repo")][0]})
    m = re.fullmatch(r"/api/models/(?P<repo>[^/]+(?:/[^/]+)?)/tree/(?P<rev>[^/]+)", req.path)
    if m and m.group("repo") in store.repos:
        return tree(store, m.group("repo"), unquote(m.group("rev")))
    m = re.fullmatch(r"/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
                     req.path)
    if m and m.group("repo") in store.repos:
        return resolve(hub, req, store, m.group("repo"), unquote(m.group("rev")),
                       unquote(m.group("path")))
    return None


def tree(store: PackageRepos, repo_id: str, rev: str) -> MockResponse:
    revision, files = store.repos[repo_id]
    if rev not in (revision, "main"):
        return MockResponse.json({"error": "Invalid rev id"}, status=404)
    entries: list[dict[str, Any]] = []
    for f in files:
        entry: dict[str, Any] = {"type": "file", "oid": f.git_oid(), "size": f.size,
                                 "path": f.path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer())}
        entries.append(entry)
    entries += store.extra_entries.get(repo_id, [])
    link = store.tree_links.get(repo_id)  # a planted "next page", e.g. on another host
    return MockResponse.json(entries, headers=[("Link", f'<{link}>; rel="next"')] if link
                             else [])


def resolve(hub: MockHub, req: MockRequest, store: PackageRepos, repo_id: str, rev: str,
            path: str) -> MockResponse:
    revision, files = store.repos[repo_id]
    f = next((f for f in files if f.path == path), None)
    if f is None or rev not in (revision, "main"):
        return MockResponse.text("Entry not found", status=404,
                                 headers=[("X-Error-Code", "EntryNotFound")])
    common = [("X-Repo-Commit", revision)]
    if f.lfs:
        cdn = store.cdn_url or hub.base_url(req)
        location = (f"{cdn}/cdn/{f.sha256}?response-content-disposition=attachment"
                    f"&Expires=9999999999&Signature=mock&Key-Pair-Id=K1")
        return MockResponse(status=302, headers=[
            *common, ("Location", location), ("X-Linked-Etag", f'"{f.sha256}"'),
            ("X-Linked-Size", str(f.size)), ("ETag", f'"{f.git_oid()}"')],
            content_type="text/plain; charset=utf-8")
    return serve(hub, req, f, f"resolve:{repo_id}/{path}",
                 headers=[*common, ("X-Linked-Size", str(f.size))])


def hostile_repos(repos: PackageRepos) -> dict[str, Any]:
    """The hostile cases of issue 25, in four repositories. Returns what tests assert on."""
    shared = PkgFile("model.safetensors", b"SAFETENSORS-SHARED" * 4096, lfs=True)
    evil = PkgFile("pytorch_model.bin", EVIL_PICKLE, lfs=True)
    corrupt = PkgFile("broken.safetensors", b"these bytes lie" * 2000, lfs=True, corrupt=True)
    cut = PkgFile("big.gguf", Generated(seed=7, size=3 * BLOCK + 12345), lfs=True, cut=True)
    readme = b"# A model\n"
    repos.add("acme/alpha", "a" * 40, [
        PkgFile("README.md", readme), PkgFile("config.json", b'{"model_type": "bert"}'),
        PkgFile("model.safetensors", shared.content, lfs=True), evil, corrupt, cut])
    repos.add("acme/beta", "b" * 40, [
        PkgFile("README.md", readme), PkgFile("weights/model.safetensors", shared.content,
                                              lfs=True)])
    repos.add("zeta/gamma", "c" * 40, [
        PkgFile("model.safetensors", shared.content, lfs=True), PkgFile("tokenizer.json",
                                                                      b'{"v": 1}')])
    repos.extra_entries["acme/alpha"] = [
        {"type": "file", "oid": "1" * 40, "size": 5, "path": p}
        for p in ("../../escape.txt", "/etc/passwd", "ok/../../../up.txt", "a\\..\\..\\win.txt",
                  "nul\x00byte.txt", "./dot.txt")]
    return {"shared": shared, "evil": evil, "corrupt": corrupt, "cut": cut,
            "refused": [e["path"] for e in repos.extra_entries["acme/alpha"]]}


def register(hub: MockHub) -> None:
    hub.packages = PackageRepos(github=getattr(hub, "github", None))  # type: ignore[attr-defined]
    hub.before.append(packages_hook)
