"""Signature statuses from real GPG-signed repositories served over git's smart HTTP.

Each status must be what ``git verify-commit`` says about the commit: exit 0 -> good; no
signature -> unsigned; "Can't check signature" -> unknown; any other failure -> bad.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ptmspiders.signatures import (
    GitConfig,
    GitSignatureReader,
    SignatureError,
    clone_log,
    parse_commits_html,
    parse_git_log,
    status_of,
)
from tests.gnupg_daemons import gnupg_daemons, stop_gnupg_daemons
from tests.mockhub import MockHub
from tests.mockhub.server import MockRequest, MockResponse

pytestmark = pytest.mark.skipif(not (shutil.which("git") and shutil.which("gpg")),
                                reason="needs git and gpg")


def gpg(home: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["gpg", "--batch", *args], env={**os.environ, "GNUPGHOME": str(home)},
                          input=input, capture_output=True, check=True).stdout.decode()


def new_key(home: Path, uid: str) -> str:
    home.mkdir(mode=0o700, exist_ok=True)
    gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
    out = gpg(home, "--list-keys", "--with-colons", uid)
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def git(repo: Path, *args: str, home: Path | None = None, input: bytes | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ann Author", "GIT_AUTHOR_EMAIL": "ann@example.org",
           "GIT_COMMITTER_NAME": "Ann Author", "GIT_COMMITTER_EMAIL": "ann@example.org"}
    if home is not None:
        env["GNUPGHOME"] = str(home)
    return subprocess.run(["git", *args], cwd=repo, env=env, input=input, capture_output=True,
                          check=True).stdout.decode()


@pytest.fixture(scope="module")
def signed_repo(tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """A repository with good, unsigned, uncheckable, untrusted and tampered commits.

    Yields (git dir, verifier GNUPGHOME, title -> sha); the keyrings' agents stop after.
    """
    base = tmp_path_factory.mktemp("sig")
    yield _signed_repo(base)
    assert stop_gnupg_daemons(base) == {}


def _signed_repo(base: Path) -> tuple[Path, Path, dict[str, str]]:
    verifier, other = base / "verifier", base / "other"
    trusted = new_key(verifier, "Alice Trusted <alice@example.org>")
    unknown = new_key(other, "Bob Unknown <bob@example.org>")
    untrusted = new_key(other, "Carol Untrusted <carol@example.org>")
    gpg(verifier, "--import", input=gpg(other, "--export", "--armor", untrusted).encode())
    repo = base / "work"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    big = repo / "weights.bin"
    big.write_bytes(os.urandom(64 * 1024))
    plan = [("good", verifier, trusted), ("unsigned", None, None), ("no key", other, unknown),
            ("untrusted key", other, untrusted), ("to be altered", verifier, trusted)]
    for n, (title, home, key) in enumerate(plan):
        (repo / f"f{n}.txt").write_text(title)
        git(repo, "add", "-A")
        args = ["commit", "-q", "-m", title]
        if key:
            args = ["-c", f"user.signingkey={key}", *args, "-S"]
        git(repo, *args, home=home)
    raw = git(repo, "cat-file", "commit", "HEAD").replace("to be altered", "altered")
    forged = git(repo, "hash-object", "-t", "commit", "-w", "--stdin", input=raw.encode()).strip()
    git(repo, "update-ref", "refs/heads/main", forged)
    shas = {line.split("\t")[1]: line.split("\t")[0]
            for line in git(repo, "log", "--format=%H%x09%s").splitlines()}
    return repo / ".git", verifier, shas


def verify_commit(git_dir: Path, home: Path, sha: str) -> str:
    """What ``git verify-commit`` says, in the project's four words."""
    done = subprocess.run(["git", "verify-commit", sha], cwd=git_dir, capture_output=True,
                          env={**os.environ, "GNUPGHOME": str(home), "LC_ALL": "C"})
    err = done.stderr.decode()
    if done.returncode == 0:
        return "good"
    if not err.strip():
        return "unsigned"
    if "Can't check signature" in err:
        return "unknown"
    return "bad"


def test_git_method_matches_verify_commit(mockhub: MockHub, signed_repo: tuple) -> None:
    git_dir, verifier, shas = signed_repo
    mockhub.hf_git.add_repo("ann/signed-model", git_dir)  # type: ignore[attr-defined]
    commits = clone_log(f"{mockhub.url}/ann/signed-model.git", None,
                        GitConfig(gnupghome=str(verifier), timeout=60))
    by_sha = {c["sha"]: c for c in commits}
    assert set(by_sha) == set(shas.values())
    for sha in shas.values():
        assert by_sha[sha]["signature"] == verify_commit(git_dir, verifier, sha), sha
    got = {c["title"]: (c["signature"], c["signature_code"], c["signed"]) for c in commits}
    assert got == {
        "good": ("good", "G", True),
        "unsigned": ("unsigned", "N", False),
        "no key": ("unknown", "E", True),
        "untrusted key": ("good", "U", True),
        "altered": ("bad", "B", True),
    }
    good = next(c for c in commits if c["title"] == "good")
    assert good["signer"] == "Alice Trusted <alice@example.org>"
    assert good["authors"] == ["Ann Author"] and good["date"].endswith("Z")
    # the clone went through smart HTTP and asked for no blobs
    posts = mockhub.requests("/ann/signed-model.git/git-upload-pack")
    assert posts and any(b"filter blob:none" in r.body for r in posts)


def test_reader_runs_clones_off_the_loop(mockhub: MockHub, signed_repo: tuple) -> None:
    git_dir, verifier, shas = signed_repo
    mockhub.hf_git.add_repo("ann/signed-model", git_dir)  # type: ignore[attr-defined]
    reader = GitSignatureReader(GitConfig(gnupghome=str(verifier), timeout=60), concurrency=1)
    url = f"{mockhub.url}/ann/signed-model.git"

    async def both() -> list[list[dict]]:
        return await asyncio.gather(reader.commits(url, shas["good"]), reader.commits(url, None))

    pinned, head = asyncio.run(both())
    assert [c["title"] for c in pinned] == ["good"]  # log from the asked revision
    assert len(head) == 5
    with pytest.raises(SignatureError) as exc:
        asyncio.run(reader.commits(f"{mockhub.url}/nobody/nothing.git", None))
    assert exc.value.reason == "repo_not_found"


def test_temp_dirs_are_removed(mockhub: MockHub, signed_repo: tuple, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    git_dir, verifier, _ = signed_repo
    mockhub.hf_git.add_repo("ann/signed-model", git_dir)  # type: ignore[attr-defined]
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    clone_log(f"{mockhub.url}/ann/signed-model.git", None, GitConfig(gnupghome=str(verifier)))
    with pytest.raises(SignatureError):
        clone_log(f"{mockhub.url}/ann/missing.git", None, GitConfig(gnupghome=str(verifier)))
    assert list(tmp_path.iterdir()) == []


def test_html_method_reads_verified_badges(mockhub: MockHub, signed_repo: tuple) -> None:
    git_dir, verifier, shas = signed_repo
    repos = mockhub.hf_git  # type: ignore[attr-defined]
    repos.add_repo("ann/signed-model", git_dir, gnupghome=str(verifier))
    repos.commits_page_size = 3
    import urllib.request

    url = f"{mockhub.url}/ann/signed-model/commits/main"
    seen = []
    while url:
        with urllib.request.urlopen(url) as resp:
            commits, url = parse_commits_html(resp.read(), url)
        seen.extend(commits)
    got = {c["sha"]: c["signature"] for c in seen}
    # The Hub's page shows a verdict only for checkable signatures: unknown reads as unsigned.
    expected = {sha: verify_commit(git_dir, verifier, sha) for sha in shas.values()}
    expected = {k: "unsigned" if v == "unknown" else v for k, v in expected.items()}
    assert got == expected
    assert next(c for c in seen if c["sha"] == shas["good"])["authors"] == ["Ann Author"]


def test_status_mapping_and_log_parsing() -> None:
    assert [status_of(c) for c in "GUBXYREN"] == [
        "good", "good", "bad", "bad", "bad", "bad", "unknown", "unsigned"]
    assert status_of("?") == "unknown"
    line = "a" * 40 + "\tN\t\t\t2024-01-01T00:00:00+02:00\tA B\ttitle\twith tab"
    (c,) = parse_git_log(line + "\n")
    assert c["date"] == "2023-12-31T22:00:00Z" and c["title"] == "title\twith tab"
    with pytest.raises(SignatureError):
        parse_git_log("not a log line")


# Hostile hubs ---------------------------------------------------------------------------------
TOKEN = "hf_gitsafe_token_0123456789"


def carries(req: MockRequest, secret: str) -> bool:
    """Whether a recorded request holds ``secret`` anywhere: a header, the target, the body."""
    return any(secret in v for v in req.headers.values()) or secret in req.raw_target \
        or secret.encode() in req.body


def other_repo(base: Path) -> Path:
    """A small repository the foreign host serves under the same name as the hub's."""
    repo = base / "foreign"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "foreign history")
    return repo / ".git"


@pytest.mark.parametrize("hop", ["info/refs", "git-upload-pack"])
def test_clone_refuses_a_redirect_and_keeps_the_token_on_the_hub(
        mockhub: MockHub, signed_repo: tuple, tmp_path: Path, hop: str) -> None:
    git_dir, verifier, _ = signed_repo
    mockhub.hf_git.add_repo("ann/signed-model", git_dir)  # type: ignore[attr-defined]
    with MockHub(host="127.0.0.2") as foreign:
        foreign.hf_git.add_repo("ann/signed-model", other_repo(tmp_path))  # type: ignore[attr-defined]

        def redirect(hub: MockHub, req: MockRequest) -> MockResponse | None:
            if req.path.endswith(f".git/{hop}"):
                return MockResponse(status=302, headers=[("Location",
                                                          foreign.url + req.raw_target)])
            return None

        mockhub.before.append(redirect)
        config = GitConfig(gnupghome=str(verifier), timeout=60, auth_header=f"Bearer {TOKEN}",
                           auth_origin=mockhub.url)
        with pytest.raises(SignatureError) as exc:
            clone_log(f"{mockhub.url}/ann/signed-model.git", None, config)
        assert not [r for r in foreign.log if carries(r, TOKEN)]
        assert not foreign.requests("/ann/signed-model.git/git-upload-pack")  # nothing fetched
    assert exc.value.reason == ("git_redirect" if hop == "info/refs" else "git_clone")
    assert mockhub.requests("/ann/signed-model.git/info/refs")[0].headers[
        "authorization"] == f"Bearer {TOKEN}"  # the hub itself does get the token


@pytest.mark.parametrize("url", ["file://{repo}", "{repo}", "ext::sh -c touch% {marker}",
                                 "--upload-pack=touch {marker};"])
def test_clone_speaks_http_only_and_takes_the_url_as_a_url(
        signed_repo: tuple, tmp_path: Path, url: str) -> None:
    git_dir, verifier, _ = signed_repo
    marker = tmp_path / "marker"
    url = url.format(repo=git_dir, marker=marker)
    with pytest.raises(SignatureError) as exc:
        clone_log(url, None, GitConfig(gnupghome=str(verifier), timeout=60))
    assert not marker.exists()
    if url.startswith("--"):  # git read it as the repository, not as an option
        assert "--upload-pack" in str(exc.value)


def test_the_users_keyring_is_never_used(mockhub: MockHub, signed_repo: tuple, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    git_dir, _, _ = signed_repo
    mockhub.hf_git.add_repo("ann/signed-model", git_dir)  # type: ignore[attr-defined]
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GNUPGHOME", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    commits = clone_log(f"{mockhub.url}/ann/signed-model.git", None, GitConfig(timeout=60))
    # checked against an empty throwaway keyring: signed commits cannot be checked
    assert {c["title"]: c["signature"] for c in commits}["good"] == "unknown"
    assert not (home / ".gnupg").exists()
    assert list(tmp.iterdir()) == [] and gnupg_daemons(tmp) == {}


def test_a_crawls_keyring_is_shared_then_removed_with_its_agent(
        mockhub: MockHub, signed_repo: tuple, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    git_dir, _, _ = signed_repo
    mockhub.hf_git.add_repo("ann/signed-model", git_dir)  # type: ignore[attr-defined]
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    reader = GitSignatureReader(GitConfig(timeout=60))
    asyncio.run(reader.commits(f"{mockhub.url}/ann/signed-model.git", None))
    home = reader.keyring.path()
    assert os.listdir(tmp_path) == [os.path.basename(home)]  # one keyring, kept for the crawl
    conf = (Path(home) / "gpg.conf").read_text().split()
    assert {"no-auto-key-retrieve", "no-auto-key-locate", "disable-dirmngr"} <= set(conf)
    subprocess.run(["gpg-connect-agent", "--homedir", home, "/bye"], capture_output=True,
                   check=True)  # starts an agent, as a key import would
    (pid,) = gnupg_daemons(home)
    reader.close()
    psutil.wait_procs([psutil.Process(pid)], timeout=10)
    assert list(tmp_path.iterdir()) == [] and gnupg_daemons(tmp_path) == {}
    named = GitSignatureReader(GitConfig(gnupghome=str(tmp_path / "mine")))
    assert named.keyring.path() == str(tmp_path / "mine")  # the user's choice, used as it is
