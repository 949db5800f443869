"""Resumable crawls beyond hf_models: Kaggle's paged list killed and resumed from its
checkpoint, and a catalogue spider started again in the JOBDIR of a finished crawl."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ptmspiders.github import git_blob_sha
from ptmspiders.stores import open_store
from tests.conftest import FIXTURES, crawl_stats, run_crawl
from tests.mockhub import MockHub
from tests.test_faults_hubs import kaggle_ids, kaggle_models
from tests.test_resume import kill_mid_crawl

pytestmark = pytest.mark.crawl


def test_kaggle_sigkill_and_resume_stores_every_model_once(mockhub: MockHub,
                                                           tmp_path: Path) -> None:
    mockhub.kaggle.models = models = kaggle_models(400)  # type: ignore[attr-defined]
    # A slow hub, so the kill lands mid-crawl.
    mockhub.faults.add("slow", attempts=None,  # type: ignore[attr-defined]
                       prefix="/api/v1/models/list", delay=0.25)
    db = tmp_path / "ptm.sqlite"
    args = ["-s", "PTM_KAGGLE_PAGE_SIZE=20", "-s", f"JOBDIR={tmp_path / 'job'}",
            # Flush by time only: at the kill, the pipeline still buffers a page or more.
            "-s", "PTM_STORE_BATCH_SIZE=100000", "-s", "PTM_STORE_FLUSH_SECONDS=0.5"]
    killed_at = kill_mid_crawl("kaggle_models", mockhub, db, args, at_least=100)
    assert 100 <= killed_at < len(models), killed_at
    before = len(mockhub.requests("/api/v1/models/list"))

    result = run_crawl("kaggle_models", mockhub, tmp_path, *args, store_uri=f"sqlite:///{db}")
    stats = crawl_stats(result)
    with sqlite3.connect(db) as conn:
        rows = [r[0] for r in conn.execute('SELECT _id FROM "models"')]
    assert len(rows) == len(set(rows)) == len(models)
    assert set(rows) == kaggle_ids(models)
    # It resumed where the durable models ended, not from the first page.
    assert stats["ptm/resumed_listings"] == 1
    assert mockhub.requests("/api/v1/models/list")[before].arg("pageToken")
    assert stats["ptm/list_pages"] < 20
    assert stats["ptm/incomplete/resumed"] == 1
    assert not [k for k in stats if k.startswith("ptm/incomplete/") and "resumed" not in k]

    # The listing is complete in this JOBDIR: a third run has nothing to resume.
    again = crawl_stats(run_crawl("kaggle_models", mockhub, tmp_path, *args,
                                  store_uri=f"sqlite:///{db}"))
    assert len(mockhub.requests("/api/v1/models/list")) == before + stats["ptm/list_pages"]
    assert "ptm/list_pages" not in again


def test_catalogue_restarted_in_a_finished_jobdir_crawls_again(mockhub: MockHub,
                                                               tmp_path: Path) -> None:
    job = ["-s", f"JOBDIR={tmp_path / 'job'}"]
    first = crawl_stats(run_crawl("onnx_zoo", mockhub, tmp_path, *job))
    assert first["ptm/valid/models"] == 5
    assert len(mockhub.requests("/raw/")) == 1
    # The manifest changes at the same raw URL the finished crawl already read.
    manifest = json.loads((FIXTURES / "github" / "onnx" / "models" / "main" /
                           "ONNX_HUB_MANIFEST.json").read_text())
    manifest[0]["metadata"]["model_bytes"] = 123
    body = json.dumps(manifest).encode()
    mockhub.github.put("onnx", "models", "main",  # type: ignore[attr-defined]
                       "ONNX_HUB_MANIFEST.json", body)
    second = crawl_stats(run_crawl("onnx_zoo", mockhub, tmp_path, *job))
    assert len(mockhub.requests("/repos/")) == 2  # the tree is read again
    assert len(mockhub.requests("/raw/")) == 2  # and the changed file
    assert second["ptm/valid/models"] == 5
    with open_store(f"sqlite:///{tmp_path}/ptm.sqlite") as store:
        shas = {d["extra"]["blob_sha"] for d in store.find("models", {"hub": "onnx_zoo"})}
    assert shas == {git_blob_sha(body)}
