"""Packages in an S3-compatible bucket (``dest=s3://bucket/prefix``), against moto's S3 server
(``moto[server]``, started in this process on a free port) and the mock hub: the same
content-addressed blobs and checks as on disk, one manifest object per package."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (requirements.txt)")
moto_server = pytest.importorskip("moto.moto_server.threaded_moto_server",
                                  reason="moto[server] is not installed (requirements-dev.txt)")

from boto3.s3.transfer import TransferConfig  # noqa: E402

from ptmspiders.args import ArgumentError  # noqa: E402
from ptmspiders.packages.blobs import BlobStore, open_blobs  # noqa: E402
from ptmspiders.packages.plan import FileSpec  # noqa: E402
from ptmspiders.packages.s3 import S3BlobStore  # noqa: E402
from tests.conftest import ROOT, crawl_command, crawl_stats, hub_env, run_crawl  # noqa: E402
from tests.mockhub import MockHub  # noqa: E402
from tests.mockhub.packages import (  # noqa: E402
    BLOCK,
    EVIL_PICKLE,
    Generated,
    PkgFile,
    attach_cdn,
    hostile_repos,
)
from tests.test_packages_crawl import by_path, cdn_gets, packages, seed  # noqa: E402

BUCKET = "ptm-packages"
PREFIX = "crawl/one"
DEST = f"s3://{BUCKET}/{PREFIX}"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto's S3 server on a free port, with a versioned bucket (one version per upload, so
    a test can count uploads); yields the environment that points boto3 at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {**AWS, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET,
                                     VersioningConfiguration={"Status": "Enabled"})
        yield env
    finally:
        server.stop()


@pytest.fixture
def hubs() -> Iterator[tuple[MockHub, MockHub]]:
    with MockHub() as hub, MockHub(host="127.0.0.2") as cdn:
        attach_cdn(hub, cdn)
        yield hub, cdn


def crawl(hub: MockHub, tmp_path: Path, s3env: dict[str, str], *args: str
          ) -> tuple[dict[str, Any], str]:
    env = hub_env(hub, **s3env)
    env.pop("PTM_PACKAGES_DIR", None)
    result = run_crawl("packages", hub, tmp_path, "-a", f"dest={DEST}",
                       "-s", f"PTM_PACKAGES_STAGING_DIR={tmp_path / 'staging'}",
                       "-s", "PTM_PACKAGES_RETRY_WAIT=0.01", *args, env=env, check=False)
    if result.returncode not in (0, 3):
        raise AssertionError(f"crawl failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return crawl_stats(result), result.stderr


def objects(client: Any) -> dict[str, list[dict[str, Any]]]:
    """Every key under the prefix -> its versions (newest first)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for v in page.get("Versions", []):
            out.setdefault(v["Key"], []).append(v)
    return out


def blob_key(sha: str) -> str:
    return f"{PREFIX}/blobs/sha256/{sha[:2]}/{sha}"


def body(client: Any, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


@pytest.mark.crawl
def test_packages_crawl_into_s3_dedup_rerun_and_verify(hubs, s3, tmp_path, capsys):
    from ptmspiders.cli import main

    hub, cdn = hubs
    facts = hostile_repos(hub.packages)
    uri = seed(tmp_path, hub.packages.model_docs())
    stats, log = crawl(hub, tmp_path, s3)
    client = boto3.client("s3")
    docs = packages(tmp_path)
    assert set(docs) == {"huggingface:acme/alpha", "huggingface:acme/beta",
                         "huggingface:zeta/gamma"}
    assert f"in {DEST}" in log

    # Every verified file is one object under blobs/sha256, its bytes hashing to its name.
    stored = objects(client)
    blob_keys = {k for k in stored if k.startswith(f"{PREFIX}/blobs/sha256/")}
    recorded = {f["blob"] for d in docs.values() for f in d["files"]
                if f["status"] in ("downloaded", "present")}
    assert blob_keys == {f"{PREFIX}/{b}" for b in recorded}
    for key in blob_keys:
        assert hashlib.sha256(body(client, key)).hexdigest() == key.rsplit("/", 1)[1]
    # What never verified is nowhere in the bucket.
    assert blob_key(facts["corrupt"].sha256) not in stored

    # One blob in three repositories: one object, uploaded once, one CDN transfer.
    shared = facts["shared"]
    assert len(stored[blob_key(shared.sha256)]) == 1
    assert len(cdn_gets(cdn, shared.sha256)) == 1
    assert all(len(v) == 1 for k, v in stored.items() if k in blob_keys)

    # Each package's tree: a manifest mapping path -> blob, sha256, size (no hard links).
    alpha = docs["huggingface:acme/alpha"]
    manifest = json.loads(body(client, f"{PREFIX}/{alpha['path']}.manifest.json"))
    assert manifest["package"] == "huggingface:acme/alpha"
    assert manifest["path"] == alpha["path"]
    files = by_path(alpha)
    stored_paths = {p for p, f in files.items() if f["status"] in ("downloaded", "present")}
    assert set(manifest["files"]) == stored_paths
    assert manifest["files"]["model.safetensors"] == {
        "blob": f"blobs/sha256/{shared.sha256[:2]}/{shared.sha256}", "sha256": shared.sha256,
        "size": shared.size}
    assert "broken.safetensors" not in manifest["files"]
    assert not any(p in manifest["files"] for p in facts["refused"])
    for doc in docs.values():
        assert f"{PREFIX}/{doc['path']}.manifest.json" in stored
    # The cut transfer resumed from the local staging folder, then uploaded verified.
    assert files["big.gguf"]["status"] == "downloaded"
    assert stats["ptm/packages/resumed"] == 1
    # The pickle that imports os.system was scanned from its object, never run.
    assert body(client, blob_key(facts["evil"].sha256)) == EVIL_PICKLE
    assert files["pytorch_model.bin"]["scan"]["status"] == "unsafe"
    assert "pwned" not in log
    # Nothing of the bucket stays on local disk: no blob, no package folder, no temp file.
    staging = tmp_path / "staging"
    assert not (staging / "blobs" / "sha256").exists()
    assert not (staging / "huggingface").exists()
    assert [p.name for p in (staging / "blobs" / "tmp").iterdir()] == []
    assert "testing" not in log.replace("AWS_", "")  # the secret key is never logged

    # A rerun transfers nothing verified and uploads nothing: only the corrupt file again.
    cdn.clear_log()
    stats, _ = crawl(hub, tmp_path, s3)
    assert {r.path for r in cdn.log} == {f"/cdn/{facts['corrupt'].sha256}"}
    assert "ptm/packages/files/downloaded" not in stats
    again = objects(client)
    assert all(len(again[k]) == 1 for k in blob_keys)
    assert set(again) >= set(stored)
    assert not {k for k in again if k.startswith(f"{PREFIX}/blobs/sha256/")} - blob_keys

    # ptm verify streams every object and re-hashes it.
    capsys.readouterr()
    assert main(["--store", uri, "verify", "--dest", DEST, "--json"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["problems"] == {} and clean["ok"] == clean["blobs"] == len(blob_keys)
    # Rot: one byte of the shared object flips; the beta package loses its manifest.
    data = bytearray(body(client, blob_key(shared.sha256)))
    data[100] ^= 1
    client.put_object(Bucket=BUCKET, Key=blob_key(shared.sha256), Body=bytes(data))
    beta = docs["huggingface:acme/beta"]
    client.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{beta['path']}.manifest.json")
    assert main(["--store", uri, "verify", "--dest", DEST, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == {"mismatch": 1, "unlinked": 2}
    assert report["details"][0]["blob"].endswith(shared.sha256)
    assert {d["path"] for d in report["details"][1:]} == {
        f"{beta['path']}/README.md", f"{beta['path']}/weights/model.safetensors"}


@pytest.mark.crawl
def test_sigkill_mid_transfer_resumes_from_staging_then_uploads(hubs, s3, tmp_path):
    hub, cdn = hubs
    stall = threading.Event()
    big = PkgFile("big.safetensors", Generated(seed=12, size=4 * BLOCK + 99), lfs=True,
                  stall=stall)
    small = [PkgFile(f"part-{i}.safetensors", bytes([i + 1]) * 7000, lfs=True)
             for i in range(3)]
    hub.packages.add("acme/slow", "d" * 40, [big, *small])
    seed(tmp_path, hub.packages.model_docs())
    staging = tmp_path / "staging"
    part = staging / "blobs" / "tmp" / f"{big.sha256}.part"
    client = boto3.client("s3")

    def uploaded(sha: str) -> bool:
        return bool(client.list_objects_v2(Bucket=BUCKET, Prefix=blob_key(sha))["KeyCount"])

    cmd = crawl_command("packages", tmp_path, "-a", f"dest={DEST}",
                        "-s", f"PTM_PACKAGES_STAGING_DIR={staging}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=hub_env(hub, **s3),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                part.exists() and part.stat().st_size >= BLOCK
                and all(uploaded(f.sha256) for f in small)):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        stall.set()
    assert all(uploaded(f.sha256) for f in small)
    assert not uploaded(big.sha256)  # half a file is never in the bucket
    have = part.stat().st_size
    assert 0 < have < big.size
    cdn.clear_log()

    stats, _ = crawl(hub, tmp_path, s3)
    assert [r.path for r in cdn.log] == [f"/cdn/{big.sha256}"]
    assert cdn.log[0].headers.get("range") == f"bytes={have}-"
    doc = packages(tmp_path)["huggingface:acme/slow"]
    assert by_path(doc)["big.safetensors"]["status"] == "downloaded" and doc["complete"]
    assert hashlib.sha256(body(client, blob_key(big.sha256))).hexdigest() == big.sha256
    assert not part.exists()
    assert stats["ptm/packages/progress/bytes_received"] == big.size - have


def test_multipart_upload_git_index_and_a_local_copy(s3, tmp_path):
    store = open_blobs(DEST, tmp_path / "staging")
    assert isinstance(store, S3BlobStore) and store.location == DEST
    # Above the threshold, boto3's managed transfer uploads in parts (5 MiB, S3's least).
    store.transfer = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    data = os.urandom(11 << 20)
    sha = hashlib.sha256(data).hexdigest()
    part = store.part_path(sha)
    part.write_bytes(data)
    assert not store.has(sha)
    store.commit(part, sha)
    assert not part.exists()
    client = boto3.client("s3")
    head = client.head_object(Bucket=BUCKET, Key=blob_key(sha))
    assert head["ContentLength"] == len(data)
    assert "-" in head["ETag"]  # a multipart upload's ETag: <md5 of md5s>-<parts>
    fresh = open_blobs(DEST, tmp_path / "other")  # another worker: asks the bucket
    assert fresh.has(sha, len(data)) and not fresh.has(sha, len(data) - 1)
    assert fresh.hash_blob(f"blobs/sha256/{sha[:2]}/{sha}") == (sha, len(data))
    with fresh.blob_file(f"blobs/sha256/{sha[:2]}/{sha}") as local:
        assert local.read_bytes() == data
    assert not local.exists()

    small = b"tokenizer"
    small_sha = hashlib.sha256(small).hexdigest()
    store.put_bytes(small, small_sha)
    store.note_git("e" * 40, small_sha)  # written in the background
    store.flush()
    assert fresh.sha256_of_git("e" * 40) == small_sha
    assert fresh.sha256_of_git("f" * 40) is None
    assert body(client, f"{PREFIX}/blobs/git-sha1/ee/{'e' * 40}") == small_sha.encode()

    # A package's look-ups, asked ahead in parallel; planning then sends nothing.
    ahead = open_blobs(DEST, tmp_path / "third")
    missing = "0" * 64
    ahead.warm([FileSpec("a", len(data), sha256=sha), FileSpec("b", 1, sha256=missing),
                FileSpec("c", len(small), git_oid="e" * 40),
                FileSpec("d", 1, git_oid="f" * 40)])
    ahead.client = None  # any request now would fail
    assert ahead.has(sha, len(data)) and not ahead.has(missing)
    assert ahead.sha256_of_git("e" * 40) == small_sha
    assert ahead.sha256_of_git("f" * 40) is None


@pytest.mark.crawl
def test_an_unusable_location_is_one_line(hubs, s3, tmp_path, capsys):
    from ptmspiders.cli import main

    with pytest.raises(ArgumentError, match="bucket cannot be used"):
        open_blobs("s3://no-such-bucket/x", tmp_path).check()
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        open_blobs("s3://ptm-packages/../up", tmp_path)
    uri = seed(tmp_path, [])
    assert main(["--store", uri, "verify", "--dest", "s3://no-such-bucket/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "s3://no-such-bucket/x" in err and "Traceback" not in err

    hub, _ = hubs
    env = hub_env(hub, **s3)
    # A malformed location is refused with the other arguments (exit 2, nothing sent) ...
    bad = run_crawl("packages", hub, tmp_path, "-a", "dest=s3:///x", env=env, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "expected s3://bucket/prefix" in bad.stderr
    # ... and a bucket that does not answer stops the crawl before its first request.
    gone = run_crawl("packages", hub, tmp_path, "-a", "dest=s3://no-such-bucket/x", env=env,
                     check=False)
    assert gone.returncode == 3 and "Traceback" not in gone.stderr
    assert "s3://no-such-bucket/x: the bucket cannot be used (404)" in gone.stderr
    assert crawl_stats(gone)["finish_reason"] == "blob_store_unavailable"
    assert not hub.log


@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_workers_sharing_a_folder_keep_each_others_temporary_files(kind, s3, tmp_path):
    """Workers of one crawl on one host share ``dest`` (or the S3 staging folder): a worker
    starting while another runs must not delete the archive the other is unpacking."""
    def store() -> Any:
        return open_blobs(str(tmp_path / "pk") if kind == "folder" else DEST, tmp_path / "pk")

    first = store()
    assert first.clean_tmp() == 0
    in_use = first.tmp / "archive.0123.part"  # being written by the first worker
    in_use.write_bytes(b"x")
    second = store()
    assert second.clean_tmp() == 0 and in_use.exists()
    del first, second  # both crawls end: their locks go with them
    third = store()
    assert third.clean_tmp() == 1 and not in_use.exists()  # a leftover now: removed


def test_two_workers_never_append_to_one_partial_file(tmp_path):
    """A blob two workers on one ``dest`` fetch at once: the second writes a file of its own
    (their bytes would interleave in one file, each worker's own hash still matching)."""
    key = "ab" * 32
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ptmspiders.packages.blobs import BlobStore; "
         f"print(BlobStore(sys.argv[1]).part_path({key!r}).name, flush=True); "
         "sys.stdin.read()", str(tmp_path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == f"{key}.part"
        mine = BlobStore(tmp_path).part_path(key)
        assert mine.name != f"{key}.part" and mine.name.startswith(key)
        mine.write_bytes(b"x")
    finally:
        holder.communicate("", timeout=30)
    assert BlobStore(tmp_path).part_path(key).name == f"{key}.part"  # its claim died with it
    assert BlobStore(tmp_path).clean_tmp() == 1 and not mine.exists()  # not resumable
