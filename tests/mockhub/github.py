"""GitHub's git-trees API and raw file host, as GitHub answers them (see ../shared/HUBS.md).

- ``GET /repos/{owner}/{repo}/git/trees/{ref}[?recursive=1]``: ``{sha, url, tree: [{path, mode,
  type, sha, size?, url}], truncated}``, blob shas as git computes them, directories as
  ``tree`` entries; an unknown repository or ref answers 404 ``{"message": "Not Found", ...}``.
  Every API answer carries ``X-RateLimit-*`` headers (60/hour anonymous, 5,000 with a token);
  an exhausted quota answers 403 like GitHub does.
- ``GET /raw/{owner}/{repo}/{ref}/{path}``: the file's bytes, ``404: Not Found`` otherwise.

Files come from ``fixtures/github/<owner>/<repo>/<ref>/<path>``. Tests change the served tree
between crawls through ``hub.github.put(...)`` / ``hub.github.delete(...)``; ``truncate_at``
cuts tree listings as GitHub does for huge repositories.

Some fixtures are faulty on purpose (``FAULTY_FILES``, ``FAULTY_ENTRIES``), for the crawlers'
error paths; the clean hub (``MockHub(clean=True)``) serves the repositories without them.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from tests.mockhub.server import MockHub, MockRequest, MockResponse

ANON_LIMIT = 60
TOKEN_LIMIT = 5000

# Fixture files that are faulty on purpose ("owner/repo/ref/path"), each with the reason the
# catalogue crawler skips it; the clean hub leaves them out of its trees.
FAULTY_FILES = {
    "pytorch/hub/master/broken_front_matter.md": "bad_front_matter",
    "tensorflow/tfhub.dev/master/assets/docs/google/models/imagenet/mobilenet_v3_small_100_224/"
    "thumbnail.png": "not_markdown",
    "tensorflow/tfhub.dev/master/assets/docs/google/models/datasets/cifar/1.md": "unknown_type",
    "tensorflow/tfhub.dev/master/assets/docs/google/models/broken/1.md": "no_header",
}
# Entries of JSON catalogue files that are faulty on purpose: the file, the field that names an
# entry, and the names (an entry that is not an object is named by itself). The clean hub
# serves these files without them.
FAULTY_ENTRIES = {
    "modelhub-ai/modelhub/master/models.json":
        ("name", ("DentalArtifact",  # its repository has no config.json
                  "broken-config",  # its config.json is not JSON
                  "no-github")),  # no repository at all
    "onnx/models/main/ONNX_HUB_MANIFEST.json":
        ("model", ("Broken entry without a path", "not an object")),
}


def blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class GithubRepos:
    root: Path
    # (owner, repo, ref) -> path -> bytes (None = deleted), applied over the fixture files.
    overrides: dict[tuple[str, str, str], dict[str, bytes | None]] = field(default_factory=dict)
    truncate_at: int | None = None
    used: dict[str, int] = field(default_factory=dict)
    reset_at: int = field(default_factory=lambda: int(time.time()) + 3600)

    def put(self, owner: str, repo: str, ref: str, path: str, content: bytes | str) -> None:
        data = content.encode() if isinstance(content, str) else content
        self.overrides.setdefault((owner, repo, ref), {})[path] = data

    def delete(self, owner: str, repo: str, ref: str, path: str) -> None:
        self.overrides.setdefault((owner, repo, ref), {})[path] = None

    def exists(self, owner: str, repo: str, ref: str) -> bool:
        return (self.root / owner / repo / ref).is_dir() or (owner, repo, ref) in self.overrides

    def files(self, owner: str, repo: str, ref: str) -> dict[str, bytes]:
        base = self.root / owner / repo / ref
        out: dict[str, bytes] = {}
        if base.is_dir():
            for f in sorted(base.rglob("*")):
                if f.is_file():
                    out[f.relative_to(base).as_posix()] = f.read_bytes()
        for path, content in self.overrides.get((owner, repo, ref), {}).items():
            if content is None:
                out.pop(path, None)
            else:
                out[path] = content
        return dict(sorted(out.items()))

    def read(self, owner: str, repo: str, ref: str, path: str) -> bytes | None:
        return self.files(owner, repo, ref).get(path) if self.exists(owner, repo, ref) else None


def _tree(hub: MockHub, req: MockRequest, files: dict[str, bytes], owner: str, repo: str,
          recursive: bool) -> dict[str, object]:
    api = f"{hub.base_url(req)}/repos/{owner}/{repo}/git"
    entries: list[dict[str, object]] = []
    dirs: set[str] = set()
    for path, content in files.items():
        parts = path.split("/")
        if not recursive and len(parts) > 1:
            dirs.add(parts[0])
            continue
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
        sha = blob_sha(content)
        entries.append({"path": path, "mode": "100644", "type": "blob", "sha": sha,
                        "size": len(content), "url": f"{api}/blobs/{sha}"})
    for d in dirs:
        sha = hashlib.sha1(f"tree {d}".encode()).hexdigest()
        entries.append({"path": d, "mode": "040000", "type": "tree", "sha": sha,
                        "url": f"{api}/trees/{sha}"})
    entries.sort(key=lambda e: str(e["path"]))
    digest = hashlib.sha1("".join(f"{e['path']}{e['sha']}" for e in entries).encode())
    return {"sha": digest.hexdigest(), "url": f"{api}/trees/{digest.hexdigest()}",
            "tree": entries, "truncated": False}


def rate_limit(hub: MockHub, req: MockRequest) -> tuple[list[tuple[str, str]], bool]:
    """GitHub's quota headers; ``True`` when this request is over the quota."""
    gh: GithubRepos = hub.github  # type: ignore[attr-defined]
    token = req.headers.get("authorization", "")
    key = token or "anonymous"
    limit = TOKEN_LIMIT if token else ANON_LIMIT
    used = gh.used.get(key, 0) + 1
    over = used > limit
    if not over:
        gh.used[key] = used
    headers = [("X-RateLimit-Limit", str(limit)),
               ("X-RateLimit-Remaining", str(max(limit - min(used, limit), 0))),
               ("X-RateLimit-Reset", str(gh.reset_at)),
               ("X-RateLimit-Used", str(min(used, limit))),
               ("X-RateLimit-Resource", "core")]
    return headers, over


def git_tree(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    gh: GithubRepos = hub.github  # type: ignore[attr-defined]
    headers, over = rate_limit(hub, req)
    if over:
        return MockResponse.json(
            {"message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                        "Authenticated requests get a higher rate limit.)",
             "documentation_url": "https://docs.github.com/rest/overview/rate-limits"},
            status=403, headers=headers)
    owner, repo, ref = m.group("owner"), m.group("repo"), unquote(m.group("ref"))
    if not gh.exists(owner, repo, ref):
        return MockResponse.json(
            {"message": "Not Found",
             "documentation_url": "https://docs.github.com/rest/git/trees#get-a-tree",
             "status": "404"}, status=404, headers=headers)
    recursive = req.arg("recursive") not in (None, "", "0", "false")
    tree = _tree(hub, req, gh.files(owner, repo, ref), owner, repo, recursive)
    if gh.truncate_at is not None:
        entries = tree["tree"]
        assert isinstance(entries, list)
        if len(entries) > gh.truncate_at:
            tree["tree"] = entries[:gh.truncate_at]
            tree["truncated"] = True
    return MockResponse.json(tree, headers=headers)


def raw_file(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    gh: GithubRepos = hub.github  # type: ignore[attr-defined]
    content = gh.read(m.group("owner"), m.group("repo"), unquote(m.group("ref")),
                      unquote(m.group("path")))
    if content is None:
        return MockResponse.text("404: Not Found", status=404)
    return MockResponse(body=content, content_type="text/plain; charset=utf-8",
                        headers=[("Cache-Control", "max-age=300"),
                                 ("ETag", f'"{blob_sha(content)}"')])


def entry_name(entry: object, key: str) -> object:
    return entry.get(key) if isinstance(entry, dict) else entry


def leave_out_faulty(gh: GithubRepos) -> None:
    """Serve the fixtures without the ones that are faulty on purpose (the clean hub)."""
    for target in FAULTY_FILES:
        owner, repo, ref, path = target.split("/", 3)
        gh.delete(owner, repo, ref, path)
    for target, (key, names) in FAULTY_ENTRIES.items():
        owner, repo, ref, path = target.split("/", 3)
        content = gh.read(owner, repo, ref, path)
        if content is None:
            continue
        kept = [e for e in json.loads(content) if entry_name(e, key) not in names]
        gh.put(owner, repo, ref, path, json.dumps(kept, indent=2, ensure_ascii=False) + "\n")


def register(hub: MockHub) -> None:
    repos = GithubRepos(hub.fixtures / "github")
    if hub.clean:
        leave_out_faulty(repos)
    hub.github = repos  # type: ignore[attr-defined]
    hub.route("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/git/trees/(?P<ref>[^/]+)",
              git_tree)
    hub.route("GET", r"/raw/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<ref>[^/]+)/(?P<path>.+)",
              raw_file)
