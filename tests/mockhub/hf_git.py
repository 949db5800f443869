"""Hugging Face repository endpoints backed by real git repositories.

- ``/{repo_id}.git/...``: git's smart HTTP through ``git http-backend`` (CGI), so ``git clone``
  works against the mock, with blobless (``--filter``) clones allowed.
- ``GET /api/models/{repo_id}/commits/{rev}``: the commits API (``p`` paging, ``Link`` next).
- ``GET /{repo_id}/commits/{rev}``: the HTML commits page, a "Verified" badge on good
  signatures and "Unverified" on bad ones (``?p=`` paging).
- ``GET /{repo_id}/resolve/{rev}/README.md``: the card (``fixtures/huggingface/cards``, else
  one made from the model's ``cardData``); 404 when the model lists no ``README.md``. Every other
  file the model lists is served too (``file_text``), except its LFS weights: their sizes are the
  fixtures' (up to 1.6 GB), their bytes are not made, so they answer 404 (``packages`` crawls of
  this hub leave them out with ``max_file_bytes``).
- ``GET /api/models/{repo_id}/tree/{rev}?recursive=true&expand=true``: files with ``lfs`` and,
  with ``expand``, ``securityFileStatus``; 1000 per page (50 with ``expand``), ``Link`` paging.
- ``GET /_mock/gpg/signer.asc``: the mock signer's public key (not a Hub endpoint).

Fixture repositories are built on first use from ``fixtures/huggingface/commits.json``, signed
with a throwaway GnuPG key made for this mock; tests can serve their own with ``add_repo``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import yaml

from tests.mockhub.server import MockHub, MockRequest, MockResponse

REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
LOG_FORMAT = "%H%x09%G?%x09%aI%x09%an%x09%s%x09%b%x00"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".gguf", ".onnx",
                   ".h5", ".zip", ".pb", ".msgpack")
# Pickle-based files the mock's security scan flags (the others scan as safe).
UNSAFE_FILES = {"vision-works/yolo-det-s": {"yolo-det-s.pt"},
                "jdoe/keras-mnist": {"model.pkl"}}
EPOCH = 1_700_000_000


def git(args: list[str], cwd: Path | str, env: dict[str, str] | None = None,
        input: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, input=input, capture_output=True,
                          check=True)
    return done.stdout.decode()


class HfGitRepos:
    """repo_id -> git directory; fixture repositories are built lazily, once."""

    def __init__(self, fixtures: Path) -> None:
        self.fixtures = fixtures
        self.repos: dict[str, Path] = {}
        self.gnupghome: str | None = None  # keyring that signs and checks the fixture repos
        self.lock = threading.Lock()
        self._tmp: Path | None = None
        self.tree_page_size: int | None = None  # None: the Hub's 1000 / 50 with expand
        self.commits_page_size = 50
        plan_file = fixtures / "commits.json"
        self.plan: dict[str, Any] = json.loads(plan_file.read_text()) if plan_file.is_file() \
            else {"repos": {}}

    def add_repo(self, repo_id: str, git_dir: Path | str, gnupghome: str | None = None) -> None:
        with self.lock:
            self.repos[repo_id] = Path(git_dir)
            if gnupghome:
                self.gnupghome = gnupghome

    def root(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="mockhub-git-"))
            weakref.finalize(self, _cleanup, self._tmp)
        return self._tmp

    def get(self, hub: MockHub, repo_id: str) -> Path | None:
        with self.lock:
            if repo_id in self.repos:
                return self.repos[repo_id]
            model = hub.hf.by_id(repo_id)  # type: ignore[attr-defined]
            if model is None or shutil.which("git") is None:
                return None
            self.repos[repo_id] = self._build(hub, model)
            return self.repos[repo_id]

    def _keyring(self) -> str | None:
        if self.gnupghome is None and shutil.which("gpg"):
            home = self.root() / "gnupg"
            home.mkdir(mode=0o700)
            for uid in (self.plan.get("signer", "Mock Signer <signer@mockhub.invalid>"),
                        "Foreign Signer <foreign@mockhub.invalid>"):
                subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid,
                                "ed25519", "sign", "never"], env={**os.environ,
                               "GNUPGHOME": str(home)}, capture_output=True, check=True)
            self.gnupghome = str(home)
            # the foreign key signs, then its public part is removed: "cannot check" (E)
            self.foreign_secret = _fingerprint(home, "foreign@mockhub.invalid")
        return self.gnupghome

    def _build(self, hub: MockHub, model: dict[str, Any]) -> Path:
        repo_id = model["id"]
        work = self.root() / (repo_id.replace("/", "__") + ".git")
        git(["init", "-q", "-b", "main", str(work)], self.root())
        history = self.plan["repos"].get(repo_id) or [
            {"title": "initial commit", "author": repo_id.split("/")[0], "sign": "none"}]
        paths = [s["rfilename"] for s in model.get("siblings", [])
                 if isinstance(s, dict) and s.get("rfilename")]
        for n, commit in enumerate(history):
            # files arrive over the history: the last commit completes the tree
            share = paths[: max(1, round(len(paths) * (n + 1) / len(history)))]
            for path in share:
                target = work / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(file_text(hub, repo_id, path))
            git(["add", "-A"], work)
            when = f"@{EPOCH + int(commit.get('day', n)) * 86400} +0000"
            env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when,
                   "GIT_AUTHOR_NAME": commit.get("author", "mock"),
                   "GIT_AUTHOR_EMAIL": f"{commit.get('author', 'mock')}@users.mockhub.invalid",
                   "GIT_COMMITTER_NAME": "mockhub", "GIT_COMMITTER_EMAIL": "hub@mockhub.invalid"}
            sign = commit.get("sign", "none")
            args = ["commit", "-q", "--allow-empty", "-m", commit["title"]]
            keyring = self._keyring() if sign != "none" else None
            if keyring is not None:
                env["GNUPGHOME"] = keyring
                key = self.foreign_secret if sign == "foreign" else _fingerprint(
                    Path(keyring), self.plan.get("signer", "signer@mockhub.invalid"))
                args = ["-c", f"user.signingkey={key}", *args, "-S"]
            git(args, work, env)
            if sign == "tamper" and keyring is not None:
                raw = git(["cat-file", "commit", "HEAD"], work)
                forged = raw.replace(commit["title"], commit["title"] + " (altered)")
                sha = git(["hash-object", "-t", "commit", "-w", "--stdin"], work,
                          input=forged.encode()).strip()
                git(["update-ref", "refs/heads/main", sha], work)
        if any(c.get("sign") == "foreign" for c in history) and self.gnupghome:
            _forget_public_key(Path(self.gnupghome), self.foreign_secret)
        return work / ".git"


def _cleanup(root: Path) -> None:
    """Stop the keyring's GnuPG daemons (agent, dirmngr, ...), then remove the repositories
    and the keyring."""
    home = root / "gnupg"
    if home.is_dir() and shutil.which("gpgconf"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _fingerprint(home: Path, uid: str) -> str:
    out = subprocess.run(["gpg", "--list-keys", "--with-colons", uid], capture_output=True,
                         env={**os.environ, "GNUPGHOME": str(home)}, text=True).stdout
    for line in out.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    return ""


def _forget_public_key(home: Path, fpr: str) -> None:
    if not fpr:
        return
    subprocess.run(["gpg", "--batch", "--yes", "--delete-secret-and-public-key", fpr],
                   env={**os.environ, "GNUPGHOME": str(home)}, capture_output=True)


def file_text(hub: MockHub, repo_id: str, path: str) -> str:
    """What the mock repository holds at ``path``: LFS pointers for weights, the card."""
    if path == "README.md":
        return card_text(hub, repo_id) or ""
    if path.lower().endswith(WEIGHT_SUFFIXES):
        oid, size = lfs_facts(repo_id, path)
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
    return f"{path} of {repo_id}\n"


def lfs_facts(repo_id: str, path: str) -> tuple[str, int]:
    digest = hashlib.sha256(f"{repo_id}/{path}".encode()).hexdigest()
    return digest, 1_000_000 + int(digest[:6], 16) * 97


def card_text(hub: MockHub, repo_id: str) -> str | None:
    model = hub.hf.by_id(repo_id)  # type: ignore[attr-defined]
    if model is None or not any(s.get("rfilename") == "README.md"
                                for s in model.get("siblings", [])):
        return None
    written = hub.fixtures / "huggingface" / "cards" / f"{repo_id}.md"
    if written.is_file():
        return written.read_text()
    card = model.get("cardData") or {}
    front = yaml.safe_dump(card, sort_keys=False).strip() if card else ""
    head = f"---\n{front}\n---\n\n" if front else ""
    return f"{head}# {repo_id.split('/')[-1]}\n\nA model published by {repo_id.split('/')[0]}.\n"


def git_log(repo: Path, gnupghome: str | None) -> list[dict[str, Any]]:
    env = {**os.environ}
    if gnupghome:
        env["GNUPGHOME"] = gnupghome
    out = git(["log", f"--format={LOG_FORMAT}", "HEAD"], repo, env)
    commits = []
    for record in out.split("\x00"):
        record = record.strip("\n")
        if not record:
            continue
        sha, code, date, author, title, body = record.split("\t", 5)
        commits.append({"id": sha, "code": code, "date": date, "author": author,
                        "title": title, "message": f"{title}\n\n{body}".strip()})
    return commits


def smart_http(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    repos: HfGitRepos = hub.hf_git  # type: ignore[attr-defined]
    repo = repos.get(hub, m.group("repo"))
    if repo is None:
        return MockResponse.text("Repository not found", status=404)
    env = {**os.environ, "GIT_PROJECT_ROOT": str(repo.parent),
           "PATH_INFO": f"/{repo.name}/{m.group('rest')}", "GIT_HTTP_EXPORT_ALL": "1",
           "REQUEST_METHOD": req.method, "QUERY_STRING": req.raw_target.partition("?")[2],
           "CONTENT_TYPE": req.headers.get("content-type", ""),
           "CONTENT_LENGTH": str(len(req.body)), "REMOTE_ADDR": "127.0.0.1",
           "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "uploadpack.allowFilter",
           "GIT_CONFIG_VALUE_0": "true"}
    for header in ("git-protocol", "content-encoding"):
        if header in req.headers:
            env["HTTP_" + header.upper().replace("-", "_")] = req.headers[header]
    done = subprocess.run(["git", "http-backend"], input=req.body, env=env,
                          capture_output=True, check=False)
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    status, content_type, headers = 200, "text/plain", []
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name.lower() == "content-type":
            content_type = value.strip()
        elif name:
            headers.append((name, value.strip()))
    return MockResponse(status=status, body=body, headers=headers, content_type=content_type)


def _repo_or_404(hub: MockHub, repo_id: str) -> tuple[Path | None, MockResponse | None]:
    repo = hub.hf_git.get(hub, repo_id)  # type: ignore[attr-defined]
    if repo is None:
        return None, MockResponse.json({"error": "Repository not found"}, status=404,
                                       headers=[("X-Error-Code", "RepoNotFound")])
    return repo, None


def _page(req: MockRequest) -> int:
    try:
        return max(int(req.arg("p") or 0), 0)
    except ValueError:
        return 0


def commits_api(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    repo, error = _repo_or_404(hub, m.group("repo"))
    if repo is None:
        return error  # type: ignore[return-value]
    repos: HfGitRepos = hub.hf_git  # type: ignore[attr-defined]
    commits = git_log(repo, repos.gnupghome)
    size, page = repos.commits_page_size, _page(req)
    rows = commits[page * size:(page + 1) * size]
    body = [{"id": c["id"], "title": c["title"], "message": c["message"],
             "date": c["date"].replace("+00:00", ".000Z"),
             "authors": [{"user": c["author"], "avatar": None}]} for c in rows]
    headers = []
    if (page + 1) * size < len(commits):
        headers.append(("Link", f"<{hub.base_url(req)}{req.path}?p={page + 1}>; rel=\"next\""))
    return MockResponse.json(body, headers=headers)


def commits_page(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    repo, _ = _repo_or_404(hub, m.group("repo"))
    if repo is None:
        return MockResponse.text("<h1>404</h1>", status=404, content_type="text/html")
    repos: HfGitRepos = hub.hf_git  # type: ignore[attr-defined]
    commits = git_log(repo, repos.gnupghome)
    size, page = repos.commits_page_size, _page(req)
    items = []
    for c in commits[page * size:(page + 1) * size]:
        badge = ""
        if c["code"] in ("G", "U"):
            badge = '<div class="badge" title="Signed with a verified key">Verified</div>'
        elif c["code"] in ("B", "X", "Y", "R"):
            badge = '<div class="badge">Unverified</div>'
        items.append(
            f'<article class="commit"><header><a class="title" href="/{m.group("repo")}/commit/'
            f'{c["id"]}">{html.escape(c["title"])}</a>{badge}</header>'
            f'<p><a class="author" data-author href="/{html.escape(c["author"])}">'
            f'{html.escape(c["author"])}</a> committed <time datetime="{c["date"]}">'
            f'{c["date"][:10]}</time></p>'
            f'<a class="sha" href="/{m.group("repo")}/commit/{c["id"]}">{c["id"][:7]}</a>'
            "</article>")
    nav = ""
    if (page + 1) * size < len(commits):
        nav = f'<nav><a rel="next" href="?p={page + 1}">Next</a></nav>'
    body = (f"<!doctype html><html><head><title>Commits · {m.group('repo')}</title></head>"
            f"<body><main><h1>Commit History</h1>{''.join(items)}{nav}</main></body></html>")
    return MockResponse.text(body, content_type="text/html; charset=utf-8")


def resolve_readme(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    text = card_text(hub, m.group("repo"))
    if text is None:
        return MockResponse.text("Entry not found", status=404,
                                 headers=[("X-Error-Code", "EntryNotFound")])
    return MockResponse.text(text, content_type="text/markdown; charset=utf-8",
                             headers=[("X-Repo-Commit", m.group("rev"))])


def resolve_file(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    """A file the model lists, as ``file_text`` makes it; its LFS weights are not served."""
    repo_id, path = m.group("repo"), unquote(m.group("path"))
    model = hub.hf.by_id(repo_id)  # type: ignore[attr-defined]
    listed = model is not None and any(s.get("rfilename") == path
                                       for s in model.get("siblings", []))
    if not listed or path.lower().endswith(WEIGHT_SUFFIXES):
        return MockResponse.text("Entry not found", status=404,
                                 headers=[("X-Error-Code", "EntryNotFound")])
    return MockResponse(body=file_text(hub, repo_id, path).encode(),
                        content_type="application/octet-stream",
                        headers=[("X-Repo-Commit", m.group("rev"))])


def tree_api(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    repo_id = m.group("repo")
    model = hub.hf.by_id(repo_id)  # type: ignore[attr-defined]
    if model is None:
        return MockResponse.json({"error": "Repository not found"}, status=404)
    expand = req.arg("expand") == "true"
    repos: HfGitRepos = hub.hf_git  # type: ignore[attr-defined]
    size = repos.tree_page_size or (50 if expand else 1000)
    entries: list[dict[str, Any]] = []
    folders: set[str] = set()
    for sib in model.get("siblings", []):
        path = sib["rfilename"]
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder not in folders:
                folders.add(folder)
                entries.append({"type": "directory", "oid": _oid(folder), "size": 0,
                                "path": folder})
        data = file_text(hub, repo_id, path).encode()
        entry: dict[str, Any] = {"type": "file", "oid": _blob_oid(data), "size": len(data),
                                 "path": path}
        if path.lower().endswith(WEIGHT_SUFFIXES):
            oid, lfs_size = lfs_facts(repo_id, path)
            entry["size"] = lfs_size
            entry["lfs"] = {"oid": oid, "size": lfs_size, "pointerSize": len(data)}
        if expand:
            entry["lastCommit"] = {"id": model.get("sha"), "title": "update",
                                   "date": model.get("lastModified")}
            if "lfs" in entry:
                unsafe = path in UNSAFE_FILES.get(repo_id, set())
                entry["securityFileStatus"] = {
                    "status": "unsafe" if unsafe else "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": {
                        "highestSafetyLevel": "dangerous" if unsafe else "innocuous",
                        "imports": [{"module": "os", "name": "system", "safety": "dangerous"}]
                        if unsafe else []},
                }
        entries.append(entry)
    cursor = _page(req)
    rows = entries[cursor * size:(cursor + 1) * size]
    headers = []
    if (cursor + 1) * size < len(entries):
        params = [(k, v) for k, vs in req.query.items() if k != "p" for v in vs]
        params.append(("p", str(cursor + 1)))
        headers.append(("Link", f"<{hub.base_url(req)}{req.path}?{urlencode(params)}>; "
                                'rel="next"'))
    return MockResponse.json(rows, headers=headers)


def _oid(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _blob_oid(data: bytes) -> str:
    """The file's id as git (and the Hub's tree API) computes it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def signer_key(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    """The public key the fixture repositories are signed with (the demo imports it, so its
    signature statuses come out good and bad rather than "cannot check")."""
    repos: HfGitRepos = hub.hf_git  # type: ignore[attr-defined]
    with repos.lock:
        home = repos._keyring()
    if home is None:
        return MockResponse.text("gpg is not installed", status=404)
    uid = repos.plan.get("signer", "signer@mockhub.invalid")
    armored = subprocess.run(["gpg", "--batch", "--export", "--armor", uid], capture_output=True,
                             env={**os.environ, "GNUPGHOME": home}, check=True).stdout
    return MockResponse(body=armored, content_type="application/pgp-keys")


def register(hub: MockHub) -> None:
    hub.hf_git = HfGitRepos(hub.fixtures / "huggingface")  # type: ignore[attr-defined]
    hub.route("GET", rf"/{REPO}\.git/(?P<rest>info/refs|HEAD|objects/.+)", smart_http)
    hub.route("POST", rf"/{REPO}\.git/(?P<rest>git-upload-pack)", smart_http)
    hub.route("GET", rf"/api/models/{REPO}/commits/(?P<rev>[^/]+)", commits_api)
    hub.route("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)", tree_api)
    hub.route("GET", rf"/{REPO}/commits/(?P<rev>[^/]+)", commits_page)
    hub.route("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/README\.md", resolve_readme)
    hub.route("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", resolve_file)
    hub.route("GET", r"/_mock/gpg/signer\.asc", signer_key)
