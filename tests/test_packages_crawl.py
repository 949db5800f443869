"""Whole ``scrapy crawl packages`` runs against the mock hub, with a second mock (another
origin, 127.0.0.2) as the CDN: every hostile case of issue 25, dedupe, the token, reruns."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptmspiders.stores import open_store
from tests.conftest import ROOT, crawl_command, crawl_stats, hub_env, run_crawl
from tests.mockhub import MockHub
from tests.mockhub.packages import BLOCK, EVIL_PICKLE, Generated, PkgFile, attach_cdn, hostile_repos

TOKEN = "hf_packages_secret_token"


@pytest.fixture
def hubs():
    with MockHub() as hub, MockHub(host="127.0.0.2") as cdn:
        attach_cdn(hub, cdn)
        yield hub, cdn


def seed(tmp_path: Path, docs: list[dict[str, Any]]) -> str:
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    with open_store(uri) as store:
        store.upsert("models", docs)
    return uri


def crawl(hub: MockHub, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
          status: int | None = None) -> tuple[dict[str, Any], str]:
    """One crawl; ``status``: the exit status it must end with (0, or 3 when some package
    has a failure a rerun may fix), unchecked when ``None``."""
    result = run_crawl("packages", hub, tmp_path, "-a", f"dest={tmp_path / 'pk'}",
                       "-s", "PTM_PACKAGES_RETRY_WAIT=0.01", *args,
                       env=env or hub_env(hub, HF_TOKEN=TOKEN), check=False)
    if result.returncode not in (0, 3):
        raise AssertionError(f"crawl failed ({result.returncode}):\n{result.stderr[-4000:]}")
    if status is not None:
        assert result.returncode == status, result.stderr[-3000:]
    return crawl_stats(result), result.stderr


@contextlib.contextmanager
def stalled_crawl(cmd: list[str], env: dict[str, str], stall: threading.Event
                  ) -> Iterator[subprocess.Popen[str]]:
    """A crawl whose mock transfer is held by ``stall``; released and stopped on the way out."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        stall.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def sigterm(proc: subprocess.Popen[str], timeout: float) -> str:
    """Stop a crawl as Ctrl-C does; its stderr. Fails if it takes over ``timeout`` s."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"SIGTERM did not end the crawl within {timeout:g} s") from None


def packages(tmp_path: Path) -> dict[str, dict[str, Any]]:
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        return {d["_id"]: d for d in store.find("packages")}


def by_path(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in doc["files"]}


def cdn_gets(cdn: MockHub, sha: str) -> list[Any]:
    return [r for r in cdn.log if r.path == f"/cdn/{sha}" and r.method == "GET"]


@pytest.mark.crawl
def test_hostile_packages_end_to_end(hubs, tmp_path):
    hub, cdn = hubs
    facts = hostile_repos(hub.packages)
    seed(tmp_path, hub.packages.model_docs())
    # Exit 3: a file failed (a rerun may fix it); cron must notice.
    stats, log = crawl(hub, tmp_path, status=3)
    assert stats["ptm/incomplete/packages_failed"] == 1
    docs = packages(tmp_path)
    assert set(docs) == {"huggingface:acme/alpha", "huggingface:acme/beta",
                         "huggingface:zeta/gamma"}
    alpha = by_path(docs["huggingface:acme/alpha"])
    dest = tmp_path / "pk"
    root = dest / docs["huggingface:acme/alpha"]["path"]

    # Path traversal: every hostile name recorded refused, nothing written for it.
    for path in facts["refused"]:
        assert alpha[path]["status"] == "refused", path
        assert alpha[path]["reason"] == "unsafe_path"
    names = {p.name for p in tmp_path.rglob("*")}
    assert not names & {"escape.txt", "up.txt", "win.txt", "passwd", "dot.txt"}
    assert not any("byte.txt" in n for n in names)

    # Bytes that do not match their hash: fetched twice, then failed; never linked.
    corrupt = facts["corrupt"]
    assert (alpha["broken.safetensors"]["status"],
            alpha["broken.safetensors"]["reason"]) == ("failed", "hash_mismatch")
    assert len(cdn_gets(cdn, corrupt.sha256)) == 2
    assert not (root / "broken.safetensors").exists()
    assert not (dest / "blobs" / "sha256" / corrupt.sha256[:2] / corrupt.sha256).exists()
    assert docs["huggingface:acme/alpha"]["complete"] is False

    # The cut transfer: resumed with a Range request, verified.
    cut = facts["cut"]
    gets = cdn_gets(cdn, cut.sha256)
    assert [r.headers.get("range") for r in gets] == [None, f"bytes={cut.size // 2}-"]
    assert alpha["big.gguf"]["status"] == "downloaded" and alpha["big.gguf"]["verified"]
    assert stats["ptm/packages/resumed"] == 1

    # The pickle that imports os.system: stored byte for byte, never run; scanned from its
    # blob, and the package's summary counts it.
    assert (root / "pytorch_model.bin").read_bytes() == EVIL_PICKLE
    assert "pwned" not in log
    assert alpha["pytorch_model.bin"]["scan"]["status"] == "unsafe"
    assert "os.system" in alpha["pytorch_model.bin"]["scan"]["dangerous"]
    assert docs["huggingface:acme/alpha"]["scan"]["unsafe"] == 1
    assert alpha["model.safetensors"]["scan"] is None  # not a pickle format: not scanned

    # One blob in three repositories: one blob file, three hard links, one CDN transfer.
    shared = facts["shared"]
    blob = dest / "blobs" / "sha256" / shared.sha256[:2] / shared.sha256
    links = [root / "model.safetensors",
             dest / docs["huggingface:acme/beta"]["path"] / "weights" / "model.safetensors",
             dest / docs["huggingface:zeta/gamma"]["path"] / "model.safetensors"]
    assert all(os.path.samefile(p, blob) for p in links)
    assert blob.stat().st_nlink == 4
    assert len(cdn_gets(cdn, shared.sha256)) == 1
    assert sorted(list((dest / "blobs" / "sha256").rglob("*")), key=str)  # not empty

    # The token: on the hub's API and resolve calls, never on the CDN.
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.log)
    assert cdn.log
    for r in cdn.log:
        assert "authorization" not in r.headers
        assert TOKEN not in json.dumps(r.headers) + r.raw_target
    assert TOKEN not in log

    # Records: complete packages, schema-valid (stored through the validating pipeline).
    assert docs["huggingface:acme/beta"]["complete"] is True
    assert docs["huggingface:zeta/gamma"]["complete"] is True
    assert stats["ptm/valid/packages"] == 3
    # Resolve calls went through Scrapy (the resolvers bucket); the CDN's did not.
    resolves = [r for r in hub.log if "/resolve/" in r.path]
    assert stats["downloader/request_count"] == len(hub.log)
    assert len(resolves) == stats["ptm/packages/resolve_calls"]


@pytest.mark.crawl
def test_rerun_fetches_nothing_already_verified(hubs, tmp_path):
    hub, cdn = hubs
    hostile_repos(hub.packages)
    seed(tmp_path, hub.packages.model_docs())
    crawl(hub, tmp_path)
    first = packages(tmp_path)
    assert len(first) == 3, list(first)
    cdn.clear_log()
    hub.clear_log()
    stats, _ = crawl(hub, tmp_path)
    # Only the file that never verified is asked for again.
    corrupt = hub.packages.repos["acme/alpha"][1][4]
    assert {r.path for r in cdn.log} == {f"/cdn/{corrupt.sha256}"}
    assert [r.path for r in hub.log if "/resolve/" in r.path] == [
        f"/acme/alpha/resolve/{'a' * 40}/broken.safetensors"]
    second = packages(tmp_path)
    for _id, doc in second.items():
        for f in doc["files"]:
            if by_path(first[_id])[f["path"]]["verified"]:
                assert f["status"] == "present", (f["path"], f["status"])
    assert "ptm/packages/files/downloaded" not in stats
    assert second["huggingface:acme/beta"]["new_bytes"] == 0


@pytest.mark.crawl
def test_sigkill_mid_transfer_then_rerun_resumes_with_range(hubs, tmp_path):
    hub, cdn = hubs
    stall = threading.Event()
    big = PkgFile("big.safetensors", Generated(seed=11, size=4 * BLOCK + 321), lfs=True,
                  stall=stall)
    small = [PkgFile(f"part-{i}.safetensors", bytes([i]) * 5000, lfs=True) for i in range(3)]
    hub.packages.add("acme/slow", "d" * 40, [big, *small, PkgFile("config.json", b"{}")])
    uri = seed(tmp_path, hub.packages.model_docs())
    dest = tmp_path / "pk"
    part = dest / "blobs" / "tmp" / f"{big.sha256}.part"
    # Every other file verified before the kill (config.json too: the rerun transfers none).
    blobs = [dest / "blobs" / "sha256" / f.sha256[:2] / f.sha256
             for f in [*small, hub.packages.repos["acme/slow"][1][-1]]]
    cmd = [sys.executable, "-m", "scrapy", "crawl", "packages", "-a", f"dest={dest}",
           "-s", f"PTM_STORE_URI={uri}", "-s", "LOG_LEVEL=INFO"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=hub_env(hub, HF_TOKEN=TOKEN),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                part.exists() and part.stat().st_size >= BLOCK and all(b.exists() for b in blobs)):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        stall.set()
    assert all(b.exists() for b in blobs)
    have = part.stat().st_size
    assert 0 < have < big.size
    cdn.clear_log()
    hub.clear_log()

    stats, _ = crawl(hub, tmp_path)
    # No byte of a verified blob again; the cut file continued where the disk ended.
    assert [r.path for r in cdn.log] == [f"/cdn/{big.sha256}"]
    assert cdn.log[0].headers.get("range") == f"bytes={have}-"
    assert all("authorization" not in r.headers for r in cdn.log)
    doc = packages(tmp_path)["huggingface:acme/slow"]
    files = by_path(doc)
    assert files["big.safetensors"]["status"] == "downloaded"
    assert all(files[f.path]["status"] == "present" for f in small)
    assert files["config.json"]["status"] == "present"
    assert doc["complete"] is True
    assert doc["new_bytes"] == big.size
    assert stats["ptm/packages/progress/bytes_received"] == big.size - have


@pytest.mark.crawl
def test_selection_weights_budget_and_file_size(hubs, tmp_path):
    hub, cdn = hubs
    hostile_repos(hub.packages)
    seed(tmp_path, hub.packages.model_docs())
    stats, _ = crawl(hub, tmp_path, "-a", "weights=safe", "-a", "exclude=*.gguf",
                     "-a", "max_file_bytes=70K", "-a", "hub=huggingface")
    alpha = by_path(packages(tmp_path)["huggingface:acme/alpha"])
    assert alpha["pytorch_model.bin"]["reason"] == "weights"
    assert alpha["big.gguf"]["reason"] == "excluded"
    assert alpha["model.safetensors"]["reason"] == "max_file_bytes"  # 72 KiB
    assert alpha["config.json"]["status"] == "downloaded"
    assert not any(r.path.endswith(alpha["pytorch_model.bin"]["sha256"]) for r in cdn.log)

    # A budget too small for a package skips the package's new files, counted.
    other = tmp_path / "budget"
    other.mkdir()
    seed(other, hub.packages.model_docs())
    stats, _ = crawl(hub, other, "-a", "max_bytes=100K", "-a", "limit=1",
                     "-a", "sort=-downloads")
    docs = packages(other)
    assert list(docs) == ["huggingface:acme/alpha"]
    files = by_path(docs["huggingface:acme/alpha"])
    assert {f["reason"] for f in files.values() if f["status"] == "skipped"} == {"max_bytes"}
    assert not any(f["status"] == "downloaded" for f in files.values())
    assert stats["ptm/packages/over_budget"] == 1


@pytest.mark.crawl
def test_onnx_zoo_packages_verified_against_the_manifest(hubs, tmp_path):
    hub, cdn = hubs
    good = PkgFile("x", Generated(seed=3, size=BLOCK + 17), lfs=True)
    bad = PkgFile("y", b"onnx" * 500, lfs=True, corrupt=True)
    docs = []
    for name, f in (("good", good), ("bad", bad)):
        path = f"validated/vision/classification/{name}/model/{name}-7.onnx"
        hub.packages.media[f"onnx/models/main/{path}"] = f
        docs.append({"_id": f"onnx_zoo:{path}", "hub": "onnx_zoo", "hub_id": path,
                     "name": name, "github_repos": ["onnx/models"], "downloads": None,
                     "files": [{"path": path, "size": f.size, "sha256": f.sha256}],
                     "extra": {"download_url": "https://media.githubusercontent.com/media/"
                                               f"onnx/models/main/{path}"}})
    readme = "validated/vision/classification/good/README.md"
    hub.github.put("onnx", "models", "main", readme, b"# Good\n")
    hub.github.put("onnx", "models", "main", docs[0]["hub_id"], b"an LFS pointer")
    seed(tmp_path, docs)
    # GitHub's media host is not its API: the GitHub token must not reach it.
    env = hub_env(hub, GITHUB_MEDIA_URL=f"{cdn.url}/media", GITHUB_TOKEN="gh_secret")
    crawl(hub, tmp_path, "-a", "hub=onnx_zoo", env=env)
    got = packages(tmp_path)
    ok = got[docs[0]["_id"]]
    assert ok["complete"] and ok["revision"] == "main"
    assert (tmp_path / "pk" / ok["path"] / docs[0]["hub_id"]).stat().st_size == good.size
    # The folder's README, verified by the blob id of GitHub's tree (one tree call per run).
    assert by_path(ok)[readme]["status"] == "downloaded"
    assert (tmp_path / "pk" / ok["path"] / readme).read_bytes() == b"# Good\n"
    assert len([r for r in hub.log if "/git/trees/" in r.path]) == 1
    failed = by_path(got[docs[1]["_id"]])[docs[1]["hub_id"]]
    assert (failed["status"], failed["reason"]) == ("failed", "hash_mismatch")
    assert cdn.log and all("authorization" not in r.headers for r in cdn.log)


@pytest.mark.crawl
def test_ptm_verify_stats_query_export_on_packages(hubs, tmp_path, capsys):
    from ptmspiders.cli import main

    hub, _ = hubs
    facts = hostile_repos(hub.packages)
    uri = seed(tmp_path, hub.packages.model_docs())
    crawl(hub, tmp_path)
    dest = tmp_path / "pk"
    capsys.readouterr()

    assert main(["--store", uri, "stats", "--json"]) == 0
    pk = json.loads(capsys.readouterr().out)["packages"]
    shared = facts["shared"]
    assert (pk["total"], pk["complete"]) == (3, 2)
    readme = hub.packages.repos["acme/beta"][1][0]
    # One blob in three packages, the README in two: each stored once.
    assert pk["bytes"] - pk["unique_bytes"] == 2 * shared.size + readme.size

    assert main(["--store", uri, "query", '{"complete": false}', "--collection", "packages",
                 "--fields", "_id"]) == 0
    assert [json.loads(line)["_id"] for line in capsys.readouterr().out.splitlines()] == [
        "huggingface:acme/alpha"]

    out = tmp_path / "packages.parquet"
    assert main(["--store", uri, "export", "--collection", "packages", "--format", "parquet",
                 str(out)]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.num_rows == 3 and "new_bytes" in table.column_names

    assert main(["--store", uri, "verify", "--dest", str(dest), "--json"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["problems"] == {} and clean["ok"] == clean["blobs"] >= 5

    # Rot: one byte of the shared blob flips on disk; a package file loses its link.
    blob = dest / "blobs" / "sha256" / shared.sha256[:2] / shared.sha256
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    beta = packages(tmp_path)["huggingface:acme/beta"]
    (dest / beta["path"] / "README.md").unlink()
    assert main(["--store", uri, "verify", "--dest", str(dest), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == {"mismatch": 1, "unlinked": 1}
    assert report["details"][0]["blob"].endswith(shared.sha256)


@pytest.mark.crawl
def test_progress_line_while_a_transfer_runs_and_in_the_crawl_record(hubs, tmp_path):
    hub, _ = hubs
    stall = threading.Event()
    big = PkgFile("big.safetensors", Generated(seed=5, size=2 * BLOCK), lfs=True, stall=stall)
    hub.packages.add("acme/slow", "e" * 40, [big])
    uri = seed(tmp_path, hub.packages.model_docs())
    cmd = [sys.executable, "-m", "scrapy", "crawl", "packages", "-a", f"dest={tmp_path / 'pk'}",
           "-s", f"PTM_STORE_URI={uri}", "-s", "LOG_LEVEL=INFO",
           "-s", "PTM_PACKAGES_PROGRESS_INTERVAL=0.2", "-s", "PTM_PACKAGES_RETRY_WAIT=0.01"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=hub_env(hub), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "Packages: 0 of 1 done" in line:
                stall.set()  # the line came while the transfer was held: now let it finish
        proc.wait(timeout=60)
    finally:
        stall.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 0, "".join(lines[-40:])
    during = next(line for line in lines if "Packages: 0 of 1 done" in line)
    assert "planned" in during and "ETA" in during
    assert any("Packages: 1 of 1 done, 2.0 MiB of 2.0 MiB planned" in line for line in lines)
    with open_store(uri) as store:
        record = next(store.find("crawls", {"spider": "packages"}))
    assert record["stats"]["ptm/packages/progress/packages_done"] == 1
    assert record["stats"]["ptm/packages/progress/bytes_planned"] == big.size
    assert record["arguments"]["dest"] == str(tmp_path / "pk")


@pytest.mark.crawl
def test_revision_latest_top_and_filter(hubs, tmp_path):
    hub, _ = hubs
    for i in range(10):
        hub.packages.add(f"acme/m{i}", f"{i:x}" * 40, [PkgFile("config.json", b"{}%d" % i)])
    docs = hub.packages.model_docs()  # downloads 1000 - rank: m0 is the most downloaded
    docs[0]["latest_commit_sha"] = None  # never pinned: the run pins the latest commit
    docs[1]["latest_commit_sha"] = "f" * 40  # pinned to a commit the hub no longer serves
    seed(tmp_path, docs)
    stats, _ = crawl(hub, tmp_path, "-a", "top=0.3")
    got = packages(tmp_path)
    assert sorted(got) == ["huggingface:acme/m0", "huggingface:acme/m1", "huggingface:acme/m2"]
    assert got["huggingface:acme/m0"]["revision"] == "0" * 40
    assert stats["ptm/packages/unpinned"] == 1
    assert got["huggingface:acme/m1"]["complete"] is False  # pinned means pinned: a 404
    assert got["huggingface:acme/m1"]["reason"] == "listing_failed"

    other = tmp_path / "latest"
    other.mkdir()
    seed(other, docs)
    crawl(hub, other, "-a", "revision=latest", "-a", "filter={\"hub_id\": \"acme/m1\"}",
          status=0)
    got = packages(other)
    assert list(got) == ["huggingface:acme/m1"]
    assert got["huggingface:acme/m1"]["revision"] == "1" * 40
    assert got["huggingface:acme/m1"]["complete"] is True


def _tar_member(name: str, data: bytes | None = None, *, kind: bytes = tarfile.REGTYPE,
                link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if data is not None else 0
    return info, data


@pytest.mark.crawl
def test_github_repository_packages_from_a_tarball(hubs, tmp_path):
    hub, cdn = hubs
    files = {"hubconf.py": b"import os\nos.system('echo pwned')\n", "README.md": b"# V\n",
             "models/net.py": b"class Net: pass\n"}
    for path, data in files.items():
        hub.github.put("acme", "vision", "v1", path, data)
    hub.packages.tar_extra[("acme", "vision", "v1")] = [
        _tar_member("{top}/../../evil.txt", b"x"),
        _tar_member("{top}/passwd", kind=tarfile.SYMTYPE, link="/etc/passwd"),
        _tar_member("{top}/hard", kind=tarfile.LNKTYPE, link="/etc/shadow"),
        _tar_member("{top}/README.md", b"# a second README, not the one the tree lists\n"),
    ]
    docs = [{"_id": "pytorch_hub:acme_vision_net", "hub": "pytorch_hub",
             "hub_id": "acme_vision_net", "name": "acme_vision_net",
             "github_repos": ["acme/vision"], "extra": {"pinned_ref": "v1"}},
            {"_id": "modelzoo:nothing", "hub": "modelzoo", "hub_id": "nothing",
             "name": "nothing", "github_repos": []}]
    seed(tmp_path, docs)
    _, log = crawl(hub, tmp_path, "-a", "hub=pytorch_hub,modelzoo", status=0,
                   env=hub_env(hub, GITHUB_TOKEN="gh_secret_token"))
    got = packages(tmp_path)
    pkg = got["pytorch_hub:acme_vision_net"]
    rec = by_path(pkg)
    assert pkg["revision"] == hashlib.sha1(b"acme/vision@v1").hexdigest()  # the tarball's
    root = tmp_path / "pk" / pkg["path"]
    assert (root / "models" / "net.py").read_bytes() == files["models/net.py"]
    assert rec["hubconf.py"]["status"] == "downloaded" and "pwned" not in log  # never run
    # The archive's hostile members: refused, never written anywhere.
    assert rec["../../evil.txt"]["reason"] == "unsafe_path"
    assert rec["passwd"]["reason"] == rec["hard"]["reason"] == "link"
    assert not (root / "passwd").exists() and not (root / "hard").exists()
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))
    # A member whose bytes are not what the tree lists (here: a duplicate name) never wins.
    assert (root / "README.md").read_bytes() == files["README.md"]
    assert [(f["status"], f["reason"]) for f in pkg["files"] if f["path"] == "README.md"] == [
        ("downloaded", None), ("refused", "duplicate_member")]
    assert pkg["complete"] is True
    # The token went to GitHub's API only; the archive host never saw it.
    assert any(r.headers.get("authorization") == "Bearer gh_secret_token" for r in hub.log
               if r.path.startswith("/repos/"))
    assert [r.path for r in cdn.log] == [
        f"/codeload/acme/vision/legacy.tar.gz/{pkg['revision']}"]
    assert all("authorization" not in r.headers for r in cdn.log)
    assert got["modelzoo:nothing"]["reason"] == "no_github_repository"

    # A rerun finds every file present: the commit and the tree are asked again (the file
    # list), the tarball not.
    cdn.clear_log()
    crawl(hub, tmp_path, "-a", "hub=pytorch_hub")
    assert cdn.log == []
    assert all(f["status"] in ("present", "refused") for f in
               packages(tmp_path)["pytorch_hub:acme_vision_net"]["files"])


@pytest.mark.crawl
def test_kaggle_instance_archives(hubs, tmp_path):
    from tests.mockhub.packages import make_archive

    hub, cdn = hubs
    good = make_archive([
        _tar_member("saved_model.pb", b"graph"), _tar_member("variables/variables.index", b"i"),
        _tar_member("../../../evil.txt", b"x"),
        _tar_member("link", kind=tarfile.SYMTYPE, link="/etc/passwd")])
    hub.packages.kaggle_archives["google/bert/tensorFlow2/en-uncased/3"] = (good, False)
    hub.packages.kaggle_archives["google/bert/pyTorch/base/1"] = (
        make_archive([_tar_member("model.pt", b"x")]), True)
    hub.kaggle.credentials = ("user", "kaggle_secret_key")
    doc = {"_id": "kaggle:google/bert", "hub": "kaggle", "hub_id": "google/bert",
           "name": "bert", "extra": {"instances": [
               {"framework": "tensorFlow2", "slug": "en-uncased", "version_number": 3},
               {"framework": "pyTorch", "slug": "base", "version_number": 1}]}}
    seed(tmp_path, [doc])
    env = hub_env(hub, KAGGLE_USERNAME="user", KAGGLE_KEY="kaggle_secret_key")
    crawl(hub, tmp_path, "-a", "hub=kaggle", env=env)
    pkg = packages(tmp_path)["kaggle:google/bert"]
    rec = by_path(pkg)
    root = tmp_path / "pk" / pkg["path"]
    assert (root / "tensorFlow2/en-uncased/3/saved_model.pb").read_bytes() == b"graph"
    assert rec["tensorFlow2/en-uncased/3/variables/variables.index"]["verified"] is True
    assert rec["tensorFlow2/en-uncased/3/../../../evil.txt"]["reason"] == "unsafe_path"
    assert rec["tensorFlow2/en-uncased/3/link"]["reason"] == "link"
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))
    assert (rec["pyTorch/base/1"]["status"], rec["pyTorch/base/1"]["reason"]) == (
        "failed", "hash_mismatch")
    assert len([r for r in cdn.log if "pyTorch" in r.path]) == 2
    assert pkg["complete"] is False
    assert any(r.headers.get("authorization", "").startswith("Basic ") for r in hub.log)
    assert cdn.log and all("authorization" not in r.headers for r in cdn.log)

    cdn.clear_log()
    crawl(hub, tmp_path, "-a", "hub=kaggle", env=env)
    assert all("tensorFlow2" not in r.path for r in cdn.log)  # its blobs are all here
    again = by_path(packages(tmp_path)["kaggle:google/bert"])
    assert again["tensorFlow2/en-uncased/3/saved_model.pb"]["status"] == "present"


@pytest.mark.crawl
def test_jobdir_runs_and_a_rerun_plans_from_the_blob_store(hubs, tmp_path):
    hub, cdn = hubs
    hostile_repos(hub.packages)
    seed(tmp_path, hub.packages.model_docs())
    job = tmp_path / "job"
    stats, log = crawl(hub, tmp_path, "-s", f"JOBDIR={job}")
    assert stats["ptm/packages/done"] == 3 and "Traceback" not in log
    cdn.clear_log()
    stats, log = crawl(hub, tmp_path, "-s", f"JOBDIR={job}")
    assert stats["ptm/packages/done"] == 3 and "Traceback" not in log
    corrupt = hub.packages.repos["acme/alpha"][1][4]
    assert {r.path for r in cdn.log} == {f"/cdn/{corrupt.sha256}"}


@pytest.mark.crawl
def test_a_tree_page_pointing_to_another_host_is_not_followed(hubs, tmp_path):
    hub, cdn = hubs
    hub.packages.add("acme/lure", "9" * 40, [PkgFile("config.json", b"{}")])
    hub.packages.tree_links["acme/lure"] = f"{cdn.url}/api/models/acme/lure/tree/x?cursor=2"
    seed(tmp_path, hub.packages.model_docs())
    stats, _ = crawl(hub, tmp_path)
    assert packages(tmp_path)["huggingface:acme/lure"]["reason"] == "foreign_next_link"
    assert stats["ptm/packages/foreign_link"] == 1
    assert cdn.log == []


@pytest.mark.crawl
def test_sigterm_mid_transfer_ends_the_crawl_in_seconds_marked_incomplete(hubs, tmp_path):
    """SIGTERM while a transfer is held by the hub and a GitHub call waits for the anonymous
    quota's reset (an hour away): the crawl stops at once instead of waiting for either, exits
    3, keeps the partial file for the next run and marks its record incomplete."""
    hub, _ = hubs
    stall = threading.Event()
    big = PkgFile("big.safetensors", Generated(seed=13, size=4 * BLOCK), lfs=True, stall=stall)
    hub.packages.add("acme/held", "f" * 40, [big])
    hub.github.put("acme", "vision", "v1", "hubconf.py", b"dependencies = []\n")
    hub.github.used["anonymous"] = 60  # the listing crawls used the 60 requests of the hour
    uri = seed(tmp_path, [*hub.packages.model_docs(), {
        "_id": "pytorch_hub:acme_vision_net", "hub": "pytorch_hub", "hub_id": "acme_vision_net",
        "name": "acme_vision_net", "github_repos": ["acme/vision"],
        "extra": {"pinned_ref": "v1"}}])
    dest = tmp_path / "pk"
    part = dest / "blobs" / "tmp" / f"{big.sha256}.part"
    cmd = crawl_command("packages", tmp_path, "-a", f"dest={dest}", store_uri=uri)
    with stalled_crawl(cmd, hub_env(hub), stall) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                part.exists() and part.stat().st_size >= BLOCK
                and any(r.path.startswith("/repos/acme/vision/") for r in hub.log)):
            time.sleep(0.05)
        assert part.exists() and part.stat().st_size >= BLOCK, "the transfer never started"
        err = sigterm(proc, 15)
    assert proc.returncode == 3, err[-3000:]
    assert 0 < part.stat().st_size < big.size  # left for the next run to resume
    stats = crawl_stats(proc)
    assert stats["finish_reason"] == "shutdown"
    assert stats["ptm/ratelimit/dropped_at_shutdown"] == 1  # the GitHub call, not waited for
    held = by_path(packages(tmp_path)["huggingface:acme/held"])["big.safetensors"]
    assert (held["status"], held["reason"]) == ("failed", "cancelled")
    with open_store(uri) as store:
        record = next(store.find("crawls", {"spider": "packages"}))
    assert record["finish_reason"] == "shutdown" and record["complete"] is False


@pytest.mark.crawl
def test_files_a_hub_lists_but_does_not_serve_leave_the_plan_and_the_budget(hubs, tmp_path):
    """A tree that declares a 5 GB weight the hub then does not serve (as the demo's mock
    does): the file fails, and its size leaves the plan (the progress line and its ETA) and
    the max_bytes budget, so the next package still fits."""
    hub, _ = hubs
    small = PkgFile("model.safetensors", b"W" * 5000, lfs=True)
    hub.packages.add("acme/declares", "1" * 40, [PkgFile("config.json", b"{}")])
    hub.packages.extra_entries["acme/declares"] = [
        {"type": "file", "oid": "2" * 40, "size": 5 << 30, "path": "huge.safetensors",
         "lfs": {"oid": "3" * 64, "size": 5 << 30, "pointerSize": 134}}]
    hub.packages.add("acme/next", "4" * 40, [small])
    docs = sorted(hub.packages.model_docs(), key=lambda d: d["_id"])  # acme/declares first
    seed(tmp_path, [{**d, "downloads": 10 - n} for n, d in enumerate(docs)])
    stats, _ = crawl(hub, tmp_path, "-a", f"max_bytes={(5 << 30) + 100}", "-a", "sort=-downloads",
                     "-s", "PTM_PACKAGES_CONCURRENT_PACKAGES=1", status=3)
    got = packages(tmp_path)
    huge = by_path(got["huggingface:acme/declares"])["huge.safetensors"]
    assert (huge["status"], huge["reason"]) == ("failed", "http_404")
    assert by_path(got["huggingface:acme/next"])["model.safetensors"]["status"] == "downloaded"
    assert stats["ptm/packages/progress/bytes_planned"] == 2 + small.size
    assert stats["ptm/packages/progress/bytes_received"] == 2 + small.size


def hold_resolves_until_listed(hub: MockHub, trees: int) -> None:
    """Hold every resolve call until ``trees`` tree listings were asked for: the packages are
    all planned before any of their files arrives (at most 20 s)."""
    listed = threading.Event()

    def hold(hub: MockHub, req: Any) -> None:
        deadline = time.monotonic() + 20
        while "/resolve/" in req.path and not listed.is_set() and time.monotonic() < deadline:
            if sum("/tree/" in r.path for r in list(hub.log)) >= trees:
                listed.set()
            time.sleep(0.02)

    hub.before.insert(0, hold)


@pytest.mark.crawl
def test_a_file_shared_by_packages_planned_together_is_asked_for_once(hubs, tmp_path):
    hub, cdn = hubs
    shared = b'{"architectures": ["Shared"]}'
    weights = PkgFile("model.safetensors", b"W" * 5000, lfs=True)
    for n in range(4):
        hub.packages.add(f"acme/s{n}", f"{n + 1:040x}", [
            PkgFile("config.json", shared), PkgFile("README.md", b"# s%d" % n), weights,
            # Two of them also have a file whose bytes never match its hash.
            *([PkgFile("broken.json", b"{}", corrupt=True)] if n < 2 else [])])
    hub.packages.add("acme/twice", "9" * 40, [PkgFile("a/config.json", shared),
                                              PkgFile("b/config.json", shared)])
    # An entry with the weights' SHA-256 but another size (which the hub does not serve) is
    # not the same file: it is asked for on its own, and fails.
    hub.packages.extra_entries["acme/twice"] = [
        {"type": "file", "oid": "2" * 40, "size": 9999, "path": "liar.safetensors",
         "lfs": {"oid": weights.sha256, "size": 9999, "pointerSize": 134}}]
    seed(tmp_path, hub.packages.model_docs())
    hold_resolves_until_listed(hub, trees=5)
    stats, _ = crawl(hub, tmp_path, "-s", "PTM_PACKAGES_CONCURRENT_PACKAGES=5", status=3)
    got = packages(tmp_path)
    assert len(got) == 5
    configs = [f for doc in got.values() for f in doc["files"] if f["path"].endswith("config.json")]
    # One resolve call for the six copies; the others wait for it, then find it stored.
    assert len([r for r in hub.log if r.path.endswith("/config.json")]) == 1
    assert sorted(f["status"] for f in configs) == ["downloaded"] + ["present"] * 5
    assert len({f["sha256"] for f in configs}) == 1
    assert all((tmp_path / "pk" / doc["path"] / "README.md").exists() for doc in got.values()
               if "README.md" in by_path(doc))
    # The same for an LFS file: one resolve call, one transfer.
    assert len([r for r in hub.log if r.path.endswith("/model.safetensors")]) == 1
    assert len(cdn_gets(cdn, weights.sha256)) == 1
    assert sorted(by_path(got[f"huggingface:acme/s{n}"])["model.safetensors"]["status"]
                  for n in range(4)) == ["downloaded"] + ["present"] * 3
    assert stats["ptm/packages/files/waited_for_same"] == 5 + 3 + 1
    liar = by_path(got["huggingface:acme/twice"])["liar.safetensors"]
    assert (liar["status"], liar["reason"]) == ("failed", "http_404")
    # A fetch that fails hands over to a waiter, which asks the hub itself (twice: the hash
    # is checked again); both record the failure, and no package is left waiting.
    broken = [r for r in hub.log if r.path.endswith("/broken.json")]
    assert len(broken) == 2 * 2
    for n in (0, 1):
        record = by_path(got[f"huggingface:acme/s{n}"])["broken.json"]
        assert (record["status"], record["reason"]) == ("failed", "hash_mismatch")
    assert all(doc["complete"] for _id, doc in got.items() if _id.endswith(("s2", "s3")))


@pytest.mark.crawl
def test_tfhub_modules_from_their_compressed_archives(hubs, tmp_path):
    """The tfhub catalogue crawled from the mock's fixtures, then its packages: a Module's
    archive from tfhub.dev's ``?tf-hub-format=compressed`` (another origin, here the CDN
    mock, sent no credential), a Placeholder and a Lite variant recorded as not fetched."""
    from tests.mockhub.packages import tfhub_files

    hub, cdn = hubs
    run_crawl("tfhub", hub, tmp_path)
    env = hub_env(hub, GITHUB_TOKEN="gh_secret_token", TFHUB_URL=f"{cdn.url}/tfhub")
    stats, _ = crawl(hub, tmp_path, "-a", "hub=tfhub", env=env, status=0)
    got = packages(tmp_path)
    module = got["tfhub:vasudevgupta7/wav2vec2/1"]
    assert module["complete"] is True and module["reason"] is None
    assert module["path"] == "tfhub/vasudevgupta7/wav2vec2/1"
    assert module["source_url"] == f"{cdn.url}/tfhub/vasudevgupta7/wav2vec2/1"
    files = tfhub_files("vasudevgupta7/wav2vec2/1")
    rec = by_path(module)
    assert set(rec) == set(files)
    root = tmp_path / "pk" / module["path"]
    for path, data in files.items():
        assert (root / path).read_bytes() == data
        assert rec[path]["sha256"] == hashlib.sha256(data).hexdigest()
        # No hash published for the archive: each file's sha256 is computed, not verified.
        assert (rec[path]["status"], rec[path]["verified"], rec[path]["reason"]) == (
            "downloaded", False, "unverified_archive")
    nested = got["tfhub:google/imagenet/mobilenet_v3_small_100_224/classification/5"]
    assert nested["path"] == "tfhub/google/imagenet+mobilenet_v3_small_100_224+classification/5"
    assert nested["complete"] is True
    placeholder = got["tfhub:google/yamnet_edgetpu/1"]
    assert (placeholder["reason"], placeholder["files"], placeholder["complete"]) == (
        "placeholder", [], False)
    lite = got["tfhub:google/lite-model/imagenet/mobilenet_v3_small_100_224/classification/5/"
               "default/1"]
    assert (lite["reason"], lite["files"]) == ("not_an_archive", [])
    assert stats["ptm/packages/tfhub/placeholder"] >= 1
    assert "ptm/incomplete" not in stats  # nothing a rerun could fix failed
    # The redirect and the archive: only ever the CDN mock, and never a credential.
    asked = [r for r in cdn.log if r.path.startswith("/tfhub")]
    assert "/tfhub/vasudevgupta7/wav2vec2/1" in [r.path for r in asked]
    assert all("authorization" not in r.headers for r in cdn.log)
    assert not any(r.path.startswith("/tfhub") for r in hub.log)


def _github_model(name: str, repo: str, downloads: int) -> dict[str, Any]:
    return {"_id": f"pytorch_hub:{name}", "hub": "pytorch_hub", "hub_id": name, "name": name,
            "github_repos": [repo], "extra": {"pinned_ref": "v1"}, "downloads": downloads}


@pytest.mark.crawl
def test_a_failed_tarball_returns_its_bytes_to_the_budget(hubs, tmp_path):
    """The first repository's tarball fails (404): its planned bytes leave the max_bytes
    budget, so the second repository, which fits only without them, is fetched."""
    from tests.mockhub import MockResponse

    hub, _ = hubs
    hub.github.put("acme", "broken", "v1", "weights.txt", b"B" * 3000)
    hub.github.put("acme", "fine", "v1", "weights.txt", b"F" * 3000)

    def no_tarball(_hub: MockHub, req: Any) -> MockResponse | None:
        if req.path.startswith("/repos/acme/broken/tarball/"):
            return MockResponse.json({"message": "Not Found"}, status=404)
        return None

    hub.before.insert(0, no_tarball)  # before the mock's own tarball route
    seed(tmp_path, [_github_model("acme_broken", "acme/broken", 10),
                    _github_model("acme_fine", "acme/fine", 5)])
    stats, _ = crawl(hub, tmp_path, "-a", "hub=pytorch_hub", "-a", "sort=-downloads",
                     "-a", "max_bytes=5999", "-s", "PTM_PACKAGES_CONCURRENT_PACKAGES=1",
                     env=hub_env(hub, GITHUB_TOKEN="gh_token"), status=3)
    got = packages(tmp_path)
    broken = by_path(got["pytorch_hub:acme_broken"])["weights.txt"]
    assert (broken["status"], broken["reason"]) == ("failed", "http_404")
    fine = by_path(got["pytorch_hub:acme_fine"])["weights.txt"]
    assert (fine["status"], fine["reason"]) == ("downloaded", None)
    assert stats["ptm/packages/progress/bytes_planned"] == 3000


@pytest.mark.crawl
def test_a_failed_kaggle_archive_returns_its_bytes_to_the_budget(hubs, tmp_path):
    """A Kaggle archive that fails its MD5 twice takes nothing from max_bytes: the next
    model's archive is still fetched."""
    from tests.mockhub.packages import make_archive

    hub, _ = hubs
    bad = make_archive([_tar_member("model.pt", bytes(range(256)) * 40)])
    good = make_archive([_tar_member("saved_model.pb", b"graph")])
    hub.packages.kaggle_archives["acme/bad/pyTorch/base/1"] = (bad, True)
    hub.packages.kaggle_archives["acme/good/tensorFlow2/base/1"] = (good, False)
    docs = [{"_id": f"kaggle:acme/{n}", "hub": "kaggle", "hub_id": f"acme/{n}", "name": n,
             "downloads": d, "extra": {"instances": [
                 {"framework": fw, "slug": "base", "version_number": 1}]}}
            for n, fw, d in (("bad", "pyTorch", 10), ("good", "tensorFlow2", 5))]
    seed(tmp_path, docs)
    crawl(hub, tmp_path, "-a", "hub=kaggle", "-a", "sort=-downloads",
          "-a", f"max_bytes={len(bad)}", "-s", "PTM_PACKAGES_CONCURRENT_PACKAGES=1", status=3)
    got = packages(tmp_path)
    assert by_path(got["kaggle:acme/bad"])["pyTorch/base/1"]["reason"] == "hash_mismatch"
    good_rec = got["kaggle:acme/good"]
    assert good_rec["reason"] is None and good_rec["complete"] is True
    assert by_path(good_rec)["tensorFlow2/base/1/saved_model.pb"]["status"] == "downloaded"


@pytest.mark.crawl
def test_archives_past_their_bounds_are_refused_and_recorded(hubs, tmp_path):
    """A tarball with more members than PTM_PACKAGES_ARCHIVE_MAX_MEMBERS and a Kaggle
    archive bigger than PTM_PACKAGES_ARCHIVE_MAX_BYTES: refused whole, recorded, nothing
    linked, and the run does not fail (a rerun would refuse them again)."""
    from tests.mockhub.packages import make_archive

    hub, _ = hubs
    for i in range(6):
        hub.github.put("acme", "many", "v1", f"f{i}.txt", b"%d" % i)
    zeros = make_archive([_tar_member("zeros.bin", bytes(4 << 20))])
    hub.packages.kaggle_archives["acme/bomb/jax/base/1"] = (zeros, False)
    seed(tmp_path, [_github_model("acme_many", "acme/many", 1),
                    {"_id": "kaggle:acme/bomb", "hub": "kaggle", "hub_id": "acme/bomb",
                     "name": "bomb", "extra": {"instances": [
                         {"framework": "jax", "slug": "base", "version_number": 1}]}}])
    stats, _ = crawl(hub, tmp_path, "-a", "hub=pytorch_hub,kaggle",
                     "-s", "PTM_PACKAGES_ARCHIVE_MAX_MEMBERS=4",
                     "-s", f"PTM_PACKAGES_ARCHIVE_MAX_BYTES={1 << 20}", status=0)
    got = packages(tmp_path)
    many = got["pytorch_hub:acme_many"]
    assert {(f["status"], f["reason"]) for f in many["files"]} == {
        ("refused", "archive_too_many_members")}
    assert len(many["files"]) == 6 and many["complete"] is False
    bomb = by_path(got["kaggle:acme/bomb"])["jax/base/1"]
    assert (bomb["status"], bomb["reason"]) == ("refused", "archive_too_large")
    assert stats["ptm/packages/archives_refused/archive_too_many_members"] == 1
    assert stats["ptm/packages/archives_refused/archive_too_large"] == 1
    assert not (tmp_path / "pk" / "kaggle").exists() or not any(
        p.is_file() for p in (tmp_path / "pk" / "kaggle").rglob("*"))
    assert not any((tmp_path / "pk" / "blobs" / "tmp").iterdir())


@pytest.mark.crawl
def test_sigterm_records_every_package_it_started(hubs, tmp_path):
    """SIGTERM while one Kaggle archive is held half-way and another package has just
    finished: both records reach the store before the crawl ends (the held one with its
    archive ``cancelled``), none is lost with the package tasks."""
    from tests.mockhub.packages import make_archive

    hub, _ = hubs
    quick = make_archive([_tar_member("saved_model.pb", b"graph")])
    held = make_archive([_tar_member("weights.bin", bytes(range(256)) * 512)])
    stall = threading.Event()
    hub.packages.kaggle_archives["acme/quick/jax/base/1"] = (quick, False)
    hub.packages.kaggle_archives["acme/held/jax/base/1"] = (held, False)
    hub.packages.kaggle_stall["acme/held/jax/base/1"] = stall
    uri = seed(tmp_path, [
        {"_id": f"kaggle:acme/{n}", "hub": "kaggle", "hub_id": f"acme/{n}", "name": n,
         "downloads": d, "extra": {"instances": [
             {"framework": "jax", "slug": "base", "version_number": 1}]}}
        for n, d in (("quick", 2), ("held", 1))])
    dest = tmp_path / "pk"
    cmd = crawl_command("packages", tmp_path, "-a", f"dest={dest}", "-a", "sort=-downloads",
                        store_uri=uri)
    linked = dest / "kaggle" / "acme" / "quick"
    with stalled_crawl(cmd, hub_env(hub), stall) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                any(p.name == "saved_model.pb" for p in linked.rglob("*"))
                and any((dest / "blobs" / "tmp").glob("archive.*.part"))):
            time.sleep(0.05)
        assert any((dest / "blobs" / "tmp").glob("archive.*.part")), "no transfer held"
        err = sigterm(proc, 30)
    assert proc.returncode == 3, err[-3000:]
    got = packages(tmp_path)
    assert set(got) == {"kaggle:acme/quick", "kaggle:acme/held"}, err[-3000:]
    assert got["kaggle:acme/quick"]["complete"] is True
    held_rec = by_path(got["kaggle:acme/held"])["jax/base/1"]
    assert (held_rec["status"], held_rec["reason"]) == ("failed", "cancelled")
    assert crawl_stats(proc)["finish_reason"] == "shutdown"


@pytest.mark.crawl
def test_closespider_keeps_the_records_of_packages_under_way(hubs, tmp_path):
    """CLOSESPIDER_ITEMCOUNT=1 closes the crawl at the first record while the other packages
    (Kaggle flows and Hugging Face callbacks) are under way: each of them still has its
    record in the store."""
    from tests.mockhub.packages import make_archive

    hub, _ = hubs
    for n in range(3):
        hub.packages.kaggle_archives[f"acme/k{n}/jax/base/1"] = (
            make_archive([_tar_member("saved_model.pb", b"graph %d" % n)]), False)
        hub.packages.add(f"acme/h{n}", f"{n + 1:040x}",
                         [PkgFile("model.safetensors", b"W%d" % n * 4000, lfs=True)])
    seed(tmp_path, [*hub.packages.model_docs(), *(
        {"_id": f"kaggle:acme/k{n}", "hub": "kaggle", "hub_id": f"acme/k{n}", "name": f"k{n}",
         "extra": {"instances": [{"framework": "jax", "slug": "base", "version_number": 1}]}}
        for n in range(3))])
    stats, log = crawl(hub, tmp_path, "-s", "CLOSESPIDER_ITEMCOUNT=1")
    assert stats["finish_reason"] == "closespider_itemcount"
    got = packages(tmp_path)
    assert stats.get("ptm/packages/done") == len(got), log[-3000:]
    assert stats.get("ptm/incomplete/packages_cancelled", 0) == 6 - len(got)
    assert len(got) > 1  # more than the one record that triggered the close


@pytest.mark.crawl
def test_a_dest_that_is_a_file_stops_the_crawl_in_one_line(hubs, tmp_path):
    """Before, ``clean_tmp`` raised in ``spider_opened`` (a traceback) and the crawl went on,
    failing every file it fetched."""
    hub, _ = hubs
    hostile_repos(hub.packages)
    seed(tmp_path, hub.packages.model_docs())
    (tmp_path / "a-file").write_text("not a folder")
    result = run_crawl("packages", hub, tmp_path, "-a", f"dest={tmp_path / 'a-file'}",
                       "-a", "limit=1", check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"Packages folder {tmp_path / 'a-file'} cannot be used: [Errno 20] Not a " \
           "directory" in result.stderr
    assert crawl_stats(result)["finish_reason"] == "blob_store_unavailable"
    assert not [r for r in hub.log if "/resolve/" in r.path or "/cdn/" in r.path]
