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
import threading
from dataclasses import dataclass, replace
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
    """How clones run: ``gnupghome`` None checks signatures against a throwaway keyring."""

    timeout: float = 300.0
    gnupghome: str | None = None
    auth_header: str | None = None  # sent only to ``auth_origin`` (never on the command line)
    auth_origin: str | None = None
    max_commits: int = 0


# What every git call runs with, whatever the user's or the system's git config says (neither
# is read): a hub that redirects is refused rather than followed (git's default follows the
# first redirect and then sends every later request, extra headers included, to the new
# host); only http(s) transports (no file://, ext::); no credential helper, no prompt.
GIT_SAFE_CONFIG: tuple[tuple[str, str], ...] = (
    ("http.followRedirects", "false"),
    ("protocol.allow", "never"),
    ("protocol.http.allow", "always"),
    ("protocol.https.allow", "always"),
    ("credential.helper", ""),
)
# Inherited GIT_* variables that are kept (certificate stores); the others could re-enable
# what GIT_SAFE_CONFIG turns off (GIT_ALLOW_PROTOCOL, GIT_CONFIG_PARAMETERS, ...).
GIT_ENV_KEPT = frozenset({"GIT_SSL_CAINFO", "GIT_SSL_CAPATH"})
# gpg.conf / gpgsm.conf of a throwaway keyring: checking needs no network and no agent.
GPG_CONF = """\
# Written by ptmspiders: a keyring that only checks commit signatures.
no-auto-key-retrieve
no-auto-key-import
no-auto-key-locate
disable-dirmngr
no-autostart
"""
GPGSM_CONF = """\
# Written by ptmspiders: no CRL/OCSP look-ups while checking X.509 commit signatures.
disable-dirmngr
disable-crl-checks
disable-ocsp
no-autostart
"""


def _git_env(config: GitConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") or k in GIT_ENV_KEPT}
    env.update(GIT_LFS_SKIP_SMUDGE="1", GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true",
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_ALLOW_PROTOCOL="http:https", LC_ALL="C")
    if config.gnupghome:
        env["GNUPGHOME"] = config.gnupghome
    pairs = list(GIT_SAFE_CONFIG)
    if config.auth_header and config.auth_origin:
        pairs.append((f"http.{config.auth_origin}/.extraHeader",
                      f"Authorization: {config.auth_header}"))
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for n, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value
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
        if "not found" in last or " 404" in last:
            reason = "repo_not_found"
        elif re.search(r"error: 30[1-8]\b|redirect", last, re.IGNORECASE):
            reason = "git_redirect"
        else:
            reason = f"git_{args[0]}"
        raise SignatureError(reason, last[:200])
    return done.stdout.decode("utf-8", "replace")


class Keyring:
    """The GNUPGHOME signatures are checked against: ``home`` when given (the user's choice,
    used as it is), else a throwaway directory made on first use, with no key retrieval and no
    daemons, removed by :meth:`close` after stopping any GnuPG daemon started in it."""

    def __init__(self, home: str | None = None) -> None:
        self.home = home
        self._made: str | None = None
        self._lock = threading.Lock()

    def path(self) -> str:
        if self.home:
            return self.home
        with self._lock:
            if self._made is None:
                made = tempfile.mkdtemp(prefix="ptm-gnupg-")  # mode 0700
                for name, text in (("gpg.conf", GPG_CONF), ("gpgsm.conf", GPGSM_CONF)):
                    with open(os.path.join(made, name), "w", encoding="utf-8") as f:
                        f.write(text)
                self._made = made
            return self._made

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, None
        if made is None:
            return
        stop_gnupg_daemons(made)
        shutil.rmtree(made, ignore_errors=True)

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_gnupg_daemons(home: str) -> None:
    """Stop every GnuPG daemon (agent, dirmngr, ...) serving ``home``; quiet if none runs."""
    if shutil.which("gpgconf") is None:
        return
    try:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True,
                       timeout=30, check=False)
    except subprocess.TimeoutExpired:
        logger.warning("gpgconf --kill all timed out for %s", home)


def clone_log(url: str, rev: str | None, config: GitConfig) -> list[dict[str, Any]]:
    """Blocking: clone ``url`` bare and blobless into a temp dir, log ``rev`` (or HEAD).

    Without ``config.gnupghome`` the signatures are checked against a throwaway keyring made
    for this call (the user's ``~/.gnupg`` is never used).
    """
    if not config.gnupghome:
        with Keyring() as keyring:
            return clone_log(url, rev, replace(config, gnupghome=keyring.path()))
    env = _git_env(config)
    workdir = tempfile.mkdtemp(prefix="ptm-git-")
    try:
        repo = os.path.join(workdir, "repo.git")
        _run(["clone", "--quiet", "--bare", "--filter=blob:none", "--no-tags", "--", url, repo],
             env, config.timeout)
        target = "HEAD"
        if rev and re.fullmatch(r"[0-9a-f]{40,64}", rev):  # a sha, never an option
            try:
                _run(["cat-file", "-e", f"{rev}^{{commit}}"], env, config.timeout, cwd=repo)
                target = rev
            except SignatureError:
                logger.info("Revision %s not in the clone of %s: logging HEAD", rev, url)
        args = ["log", f"--format={LOG_FORMAT}"]
        if config.max_commits > 0:
            args.append(f"--max-count={config.max_commits}")
        return parse_git_log(_run([*args, target, "--"], env, config.timeout, cwd=repo))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class GitSignatureReader:
    """Runs :func:`clone_log` in worker threads, at most ``concurrency`` clones at a time, so
    the reactor keeps serving responses while git works. All clones share one keyring
    (``config.gnupghome``, else a throwaway one); :meth:`close` removes a throwaway one."""

    def __init__(self, config: GitConfig, concurrency: int = 2) -> None:
        if concurrency < 1:
            raise ValueError("git concurrency must be >= 1")
        self.config = config
        self.concurrency = concurrency
        self.keyring = Keyring(config.gnupghome)
        self._semaphore: asyncio.Semaphore | None = None

    async def commits(self, url: str, rev: str | None) -> list[dict[str, Any]]:
        if self._semaphore is None:  # created inside the running loop
            self._semaphore = asyncio.Semaphore(self.concurrency)
        async with self._semaphore:
            config = replace(self.config, gnupghome=self.keyring.path())
            return await asyncio.to_thread(clone_log, url, rev, config)

    def close(self) -> None:
        self.keyring.close()


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
