"""Commit signatures of model repositories: from a weightless git clone, or from the Hub's
commits page.

The Hub's API has no signature field. ``git log --format=%G?`` checks each commit's signature
with the local GnuPG keyring (``GNUPGHOME``), so what it can call good depends on the keys that
keyring holds. Mapping of git's ``%G?`` codes, chosen to agree with ``git verify-commit`` (which
accepts exactly ``G`` and ``U``):

====  ===========================================  =========
code  git's meaning                                status
====  ===========================================  =========
G     good signature                               good
U     good signature, key validity unknown         good
B     bad signature (content does not match)       bad
X     good signature that has expired              bad
Y     good signature made by an expired key        bad
R     good signature made by a revoked key         bad
E     cannot be checked (e.g. public key missing)  unknown
N     no signature                                 unsigned
====  ===========================================  =========

``signed`` is true for every code but ``N`` (an ``E`` commit is signed, only not checkable).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from bs4 import BeautifulSoup, Tag

from ptmspiders.normalize import iso_utc

logger = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, str] = {
    "G": "good", "U": "good",
    "B": "bad", "X": "bad", "Y": "bad", "R": "bad",
    "E": "unknown",
    "N": "unsigned",
}
STATUSES = ("good", "bad", "unsigned", "unknown")
METHODS = ("git", "html", "api")
LOG_FORMAT = "%H%x09%G?%x09%GK%x09%GS%x09%aI%x09%an%x09%s"


class SignatureError(RuntimeError):
    """Signatures could not be read; ``reason`` is a short stats-friendly word."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def status_of(code: str) -> str:
    return STATUS_BY_CODE.get(code.strip()[:1], "unknown")


def parse_git_log(text: str) -> list[dict[str, Any]]:
    """Commits from ``git log --format=LOG_FORMAT`` output (one tab-separated line each)."""
    commits = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t", 6)
        if len(parts) != 7 or not re.fullmatch(r"[0-9a-f]{40,64}", parts[0]):
            raise SignatureError("bad_git_log", line[:80])
        sha, code, key, signer, date, author, title = parts
        commits.append({
            "sha": sha,
            "signature": status_of(code),
            "signature_code": code or "N",
            "signed": code not in ("N", ""),
            "signing_key": key or None,
            "signer": signer or None,
            "date": iso_utc(date),
            "authors": [author] if author else [],
            "title": title,
        })
    return commits


@dataclass(frozen=True)
class GitConfig:
    """How clones run: ``gnupghome`` None keeps the environment's keyring."""

    timeout: float = 300.0
    gnupghome: str | None = None
    auth_header: str | None = None  # sent only to ``auth_origin`` (never on the command line)
    auth_origin: str | None = None
    max_commits: int = 0


def _git_env(config: GitConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG")}
    env.update(GIT_LFS_SKIP_SMUDGE="1", GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true",
               LC_ALL="C")
    if config.gnupghome:
        env["GNUPGHOME"] = config.gnupghome
    if config.auth_header and config.auth_origin:
        env.update(GIT_CONFIG_COUNT="1",
                   GIT_CONFIG_KEY_0=f"http.{config.auth_origin}/.extraHeader",
                   GIT_CONFIG_VALUE_0=f"Authorization: {config.auth_header}")
    return env


def _run(args: list[str], env: dict[str, str], timeout: float, cwd: str | None = None) -> str:
    try:
        done = subprocess.run(["git", *args], env=env, cwd=cwd, capture_output=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise SignatureError("git_missing", "git is not installed") from None
    except subprocess.TimeoutExpired:
        raise SignatureError("git_timeout", f"git {args[0]} took over {timeout:.0f}s") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        last = err[-1] if err else f"exit {done.returncode}"
        reason = "repo_not_found" if "not found" in last or " 404" in last else f"git_{args[0]}"
        raise SignatureError(reason, last[:200])
    return done.stdout.decode("utf-8", "replace")


def clone_log(url: str, rev: str | None, config: GitConfig) -> list[dict[str, Any]]:
    """Blocking: clone ``url`` bare and blobless into a temp dir, log ``rev`` (or HEAD)."""
    env = _git_env(config)
    workdir = tempfile.mkdtemp(prefix="ptm-git-")
    try:
        repo = os.path.join(workdir, "repo.git")
        _run(["clone", "--quiet", "--bare", "--filter=blob:none", "--no-tags", url, repo],
             env, config.timeout)
        target = "HEAD"
        if rev:
            try:
                _run(["cat-file", "-e", f"{rev}^{{commit}}"], env, config.timeout, cwd=repo)
                target = rev
            except SignatureError:
                logger.info("Revision %s not in the clone of %s: logging HEAD", rev, url)
        args = ["log", f"--format={LOG_FORMAT}"]
        if config.max_commits > 0:
            args.append(f"--max-count={config.max_commits}")
        return parse_git_log(_run([*args, target], env, config.timeout, cwd=repo))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class GitSignatureReader:
    """Runs :func:`clone_log` in worker threads, at most ``concurrency`` clones at a time, so
    the reactor keeps serving responses while git works."""

    def __init__(self, config: GitConfig, concurrency: int = 2) -> None:
        if concurrency < 1:
            raise ValueError("git concurrency must be >= 1")
        self.config = config
        self.concurrency = concurrency
        self._semaphore: asyncio.Semaphore | None = None

    async def commits(self, url: str, rev: str | None) -> list[dict[str, Any]]:
        if self._semaphore is None:  # created inside the running loop
            self._semaphore = asyncio.Semaphore(self.concurrency)
        async with self._semaphore:
            return await asyncio.to_thread(clone_log, url, rev, self.config)


_SHA_HREF_RE = re.compile(r"/commit/([0-9a-f]{40})\b")


def parse_commits_html(body: bytes | str, base_url: str) -> tuple[list[dict[str, Any]],
                                                                  str | None]:
    """Commits and the next page's URL from the Hub's HTML commits page.

    Each commit is the element around its ``/commit/<sha>`` link; a "Verified" badge in it is a
    signature the Hub checked against the author's uploaded keys (good), "Unverified" one it
    could not (bad); no badge reads as unsigned. Signer and key are not on the page.
    """
    soup = BeautifulSoup(body, "html.parser")
    seen: dict[str, Tag] = {}
    for a in soup.find_all("a", href=True):
        m = _SHA_HREF_RE.search(str(a["href"]))
        if m and m.group(1) not in seen:
            seen[m.group(1)] = a
    commits = []
    for sha, link in seen.items():
        box: Tag = link
        while isinstance(box.parent, Tag) and box.parent.name != "[document]" and {
            s.group(1) for s in (_SHA_HREF_RE.search(str(x["href"]))
                                 for x in box.parent.find_all("a", href=True)) if s
        } == {sha}:
            box = box.parent
        text = " ".join(box.stripped_strings)
        if re.search(r"\bUnverified\b", text):
            status = "bad"
        elif re.search(r"\bVerified\b", text):
            status = "good"
        else:
            status = "unsigned"
        time_tag = box.find("time")
        date = iso_utc(time_tag.get("datetime")) if isinstance(time_tag, Tag) else None
        authors = [str(a.get_text(strip=True)) for a in box.select("[data-author], .author")]
        title = box.select_one("[data-title], .title")
        commits.append({
            "sha": sha,
            "signature": status,
            "signature_code": None,
            "signed": status != "unsigned",
            "signing_key": None,
            "signer": None,
            "date": date,
            "authors": [a for a in authors if a],
            "title": title.get_text(strip=True) if title else link.get_text(strip=True) or None,
        })
    nxt = soup.find("a", attrs={"rel": "next"}) or soup.find(
        "a", string=re.compile(r"^\s*Next\s*$"))
    next_url = urljoin(base_url, str(nxt["href"])) if isinstance(nxt, Tag) and nxt.get(
        "href") else None
    return commits, next_url
