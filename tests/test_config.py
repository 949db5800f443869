"""The settings object (ptmspiders/config.py): strings from ``-s`` and the environment typed,
one-line errors naming the setting and its rule, docs/settings.md generated from it, and no
``PTM_`` setting read around it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scrapy import Spider
from scrapy.settings import Settings
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from ptmspiders.commands.crawl import feed_problem
from ptmspiders.config import (
    PtmSettings,
    SettingsError,
    default,
    ptm_settings,
    setting_name,
    settings_table,
)
from tests.conftest import ROOT, one_error_line

DOC = ROOT / "docs" / "settings.md"
BLOCK = re.compile(r"<!-- settings:begin[^>]*-->\n(.*?)<!-- settings:end -->", re.S)


def test_strings_from_the_command_line_are_typed() -> None:
    s = PtmSettings.from_settings(Settings({
        "PTM_HF_CARDS": "1", "PTM_STORE_BATCH_SIZE": "7", "PTM_LOCK_WAIT": "2.5",
        "PTM_RETRY_HTTP_CODES": "503,500,503", "PTM_HF_QUOTAS": '{"api": 2500}',
        "PTM_GC_THRESHOLDS": "40000, 5, 7", "PTM_HF_OWNERS": "0", "PTM_HF_TIER": " Pro ",
        "HF_ENDPOINT": "http://127.0.0.1:9/"}), env={})
    assert s.hf_cards is True and s.store_batch_size == 7 and s.lock_wait == 2.5
    assert s.retry_http_codes == [500, 503]
    assert s.hf_quotas == {"api": 2500}
    assert s.gc_thresholds == (40000, 5, 7)
    assert s.hf_owners == "off" and s.hf_tier == "pro"
    assert s.hf_endpoint == "http://127.0.0.1:9"  # no trailing slash to strip at each use
    assert s.value("HF_ENDPOINT") == s.hf_endpoint and s.value("PTM_LOCK_WAIT") == 2.5
    with pytest.raises(KeyError):
        s.value("PTM_NO_SUCH_SETTING")


def test_the_defaults_are_the_models_and_the_environment_backs_env_settings() -> None:
    s = PtmSettings.from_settings(get_project_settings(), env={})
    assert s == PtmSettings.model_validate({})
    env = {"PTM_STORE_URI": "sqlite:////tmp/x.sqlite", "HF_ENDPOINT": "http://h:1",
           "PTM_HF_CARDS": "1"}  # not an env setting: ignored
    s = PtmSettings.from_settings(Settings(), env=env)
    assert (s.store_uri, s.hf_endpoint, s.hf_cards) == ("sqlite:////tmp/x.sqlite",
                                                        "http://h:1", False)
    # A setting wins over its environment variable.
    s = PtmSettings.from_settings(Settings({"PTM_STORE_URI": "mongomock://h/db"}), env=env)
    assert s.store_uri == "mongomock://h/db"


@pytest.mark.parametrize(("values", "message"), [
    ({"PTM_STORE_BATCH_SIZE": "0"},
     "PTM_STORE_BATCH_SIZE='0': input should be greater than or equal to 1"),
    ({"PTM_STORE_BATCH_SIZE": "ten"}, "PTM_STORE_BATCH_SIZE='ten': input should be a valid"),
    ({"PTM_HF_CARDS": "maybe"}, "PTM_HF_CARDS='maybe': input should be a valid boolean"),
    ({"PTM_HF_PAGE_SIZE": 1001}, "PTM_HF_PAGE_SIZE=1001: input should be less than or equal"),
    ({"PTM_RETRY_HTTP_CODES": "500,429"}, "PTM_RETRY_HTTP_CODES='500,429': must not hold 429"),
    ({"PTM_RETRY_BACKOFF_BASE": 9, "PTM_RETRY_BACKOFF_MAX": 1},
     "PTM_RETRY_BACKOFF_BASE must be <= PTM_RETRY_BACKOFF_MAX"),
    ({"PTM_HF_SIGNATURE_METHOD": "ssh"},
     "PTM_HF_SIGNATURE_METHOD='ssh': expected one of git, html, api"),
    ({"PTM_MAX_DOC_BYTES": 10}, "PTM_MAX_DOC_BYTES=10: must be 0 (no bound) or at least"),
    ({"PTM_GC_THRESHOLDS": "1,2"}, "PTM_GC_THRESHOLDS='1,2': expected three integers"),
    # Empty, blobs and package folders were written into the current folder.
    ({"PTM_PACKAGES_DIR": ""}, "PTM_PACKAGES_DIR='': empty: name a folder"),
    ({"PTM_PACKAGES_STAGING_DIR": " "}, "PTM_PACKAGES_STAGING_DIR=' ': empty: name a folder"),
    ({"PTM_GC_THRESHOLDS": "1,2147483648,0"},
     "PTM_GC_THRESHOLDS='1,2147483648,0': expected three integers of at most 2147483647"),
    ({"PTM_HF_QUOTAS": '{"all": 3}'}, "PTM_HF_QUOTAS='{\"all\": 3}': all=3: buckets are"),
    ({"PTM_HF_QUOTAS": "{"}, "PTM_HF_QUOTAS='{': expected a JSON object"),
    ({"HF_ENDPOINT": "file:///etc"}, "HF_ENDPOINT='file:///etc': expected an http(s) URL"),
    ({"PTM_PYTORCH_HUB_REPO": "no-slash"}, "PTM_PYTORCH_HUB_REPO='no-slash': expected owner/"),
    ({"PTM_STORE_FLUSH_SECONDS": "1e400"},
     "PTM_STORE_FLUSH_SECONDS='1e400': input should be less than or equal to 10000000"),
    ({"PTM_RETRY_BACKOFF_MAX": "inf"}, "PTM_RETRY_BACKOFF_MAX='inf': input should be less"),
    ({"PTM_PACKAGES_BANDWIDTH": "inf"}, "PTM_PACKAGES_BANDWIDTH='inf': input should be a finite"),
    ({"PTM_FRONTIER": "redis://u:hunter2@h:port/0"},
     "PTM_FRONTIER='redis://u:***@h:port/0': bad port"),
])
def test_a_bad_value_is_one_line_naming_the_setting_and_the_rule(
        values: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as error:
        PtmSettings.from_settings(Settings(values), env={})
    text = str(error.value)
    assert text.startswith(message), text
    assert "\n" not in text and "hunter2" not in text


def test_the_crawlers_settings_are_read_once() -> None:
    crawler = get_crawler(Spider, {"PTM_LOCK_TTL": "30"})
    first = ptm_settings(crawler)
    assert first.lock_ttl == 30 and ptm_settings(crawler) is first
    assert ptm_settings(get_crawler(Spider)) is not first


def test_outside_a_crawl_the_environment_then_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTM_STORE_URI", raising=False)
    assert default("PTM_STORE_URI") == "sqlite:///data/ptm.sqlite"
    monkeypatch.setenv("PTM_STORE_URI", "sqlite:////elsewhere.sqlite")
    assert default("PTM_STORE_URI") == "sqlite:////elsewhere.sqlite"


def test_scrapy_crawl_refuses_a_bad_setting_in_one_line_with_status_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "hf_models", "-s", "PTM_LOCK_TTL=1",
         "-s", f"PTM_STORE_URI=sqlite:///{tmp_path}/ptm.sqlite"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    error = one_error_line(result, 2)
    assert "PTM_LOCK_TTL='1': input should be greater than or equal to 3" \
        in error, result.stderr[-2000:]
    assert not (tmp_path / "ptm.sqlite").exists()  # nothing was opened


def test_docs_settings_page_is_the_models_table() -> None:
    """A setting added to the model without its row, or a row left after its setting went,
    fails here: regenerate with ``python -m ptmspiders.config``."""
    block = BLOCK.search(DOC.read_text())
    assert block is not None, "docs/settings.md lost its settings markers"
    assert block.group(1) == settings_table()
    documented = set(re.findall(r"^\| `([A-Z_]+)`", block.group(1), re.M))
    assert documented == {setting_name(f) for f in PtmSettings.model_fields}


def test_every_field_is_described() -> None:
    for field, info in PtmSettings.model_fields.items():
        assert info.description, field


READ = re.compile(r"""\.get(?:int|float|bool|list|dict|priority)?\(\s*f?["'](?:PTM_|HF_ENDPOINT|"""
                  r"""GITHUB_API_URL|GITHUB_RAW_URL|GITHUB_MEDIA_URL|MODELZOO_URL|"""
                  r"""KAGGLE_API_URL|TFHUB_URL)""")


def test_no_module_reads_a_project_setting_around_the_model() -> None:
    offenders = []
    for path in sorted((ROOT / "ptmspiders").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if READ.search(line) and "os.environ" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_settings_py_sets_no_project_setting() -> None:
    from ptmspiders import settings as project

    names = {setting_name(f) for f in PtmSettings.model_fields}
    assert not names & set(vars(project)), "a default of ptmspiders/config.py repeated"


@pytest.mark.parametrize(("uri", "message"), [
    ("foo://bar", "unsupported PTM_STORE_URI 'foo://bar': use sqlite:///path or "
                  "mongodb://host/db"),
    ("sqlite:///{tmp}/a-file/ptm.sqlite", "cannot open sqlite:///{tmp}/a-file/ptm.sqlite: "
                                          "{tmp}/a-file is not a folder"),
    ("sqlite:///{tmp}/garbage.sqlite", "cannot open sqlite:///{tmp}/garbage.sqlite: file is not "
                                       "a database"),
    # Refused after the server selection timeout (10 s), the password kept out.
    ("mongodb://u:hunter2@127.0.0.1:1/x", "Cannot use the store mongodb://u:***@127.0.0.1:1/x: "
                                          "127.0.0.1:1: [Errno 111] Connection refused"),
])
def test_scrapy_crawl_refuses_a_store_it_cannot_open_in_one_line(
        tmp_path: Path, uri: str, message: str) -> None:
    """Before, the pipelines' open failed inside the crawl: three tracebacks, exit 1 (for
    MongoDB, once each of the lock, the crawl record and the first query had waited)."""
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "garbage.sqlite").write_bytes(b"\x01" * 4096)
    uri, message = uri.format(tmp=tmp_path), message.format(tmp=tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "pytorch_hub", "-s", f"PTM_STORE_URI={uri}",
         "-s", "GITHUB_API_URL=http://127.0.0.1:9"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    error = one_error_line(result, 1)
    assert error.endswith(message), result.stderr[-2000:]
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(("option", "value", "message"), [
    ("-s", "JOBDIR={a}/job", "JOBDIR={a}/job cannot be used: [Errno 20] Not a directory: "
                             "'{a}/job'"),
    ("-o", "{a}/out.jsonl", "Cannot write the feed {a}/out.jsonl: {a} is not a folder"),
])
def test_scrapy_crawl_refuses_a_jobdir_or_feed_under_a_file_in_one_line(
        tmp_path: Path, option: str, value: str, message: str) -> None:
    """Before, Scrapy's dupefilter failed to open ``requests.seen`` (two tracebacks), or its
    feed exporter failed at the first item (three tracebacks) and the crawl still exited 0."""
    a = tmp_path / "a-file"
    a.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "pytorch_hub", option, value.format(a=a),
         "-s", f"PTM_STORE_URI=sqlite:///{tmp_path}/ptm.sqlite",
         "-s", "GITHUB_API_URL=http://127.0.0.1:9"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert one_error_line(result, 2).endswith(message.format(a=a))


def test_feed_problem_names_what_keeps_a_local_feed_from_being_written(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "d.jsonl").mkdir()
    assert feed_problem(f"{tmp_path}/a-file/x.jsonl") == f"{tmp_path}/a-file is not a folder"
    assert feed_problem(f"file://{tmp_path}/a-file/x.jsonl") == \
        f"{tmp_path}/a-file is not a folder"
    assert feed_problem(f"{tmp_path}/d.jsonl") == "it is a folder"
    assert feed_problem(f"{tmp_path}/new/x.jsonl") is None  # Scrapy makes the folder
    assert feed_problem(f"{tmp_path}/a-file/%(name)s.jsonl") is None  # filled in later
    assert feed_problem("s3://bucket/x.jsonl") is None
    # -O ptm.sqlite:jsonl emptied the store the crawl was writing.
    (tmp_path / "ptm.sqlite").write_bytes(b"")
    store = f"sqlite:///{tmp_path}/ptm.sqlite"
    assert feed_problem(f"{tmp_path}/ptm.sqlite", store) == \
        "it is a file of the store (PTM_STORE_URI)"
    assert feed_problem(f"{tmp_path}/ptm.sqlite", f"sqlite:///{tmp_path}/other.sqlite") is None


def test_ctrl_c_while_the_store_does_not_answer_is_one_line(tmp_path: Path) -> None:
    """The store check waits for MongoDB before Scrapy's signal handlers are in place: an
    interrupt there was a KeyboardInterrupt traceback. The command starts with SIGINT ignored,
    as a script's background job does (it was then lost until the check gave up)."""
    # A "server" that takes the connection and never answers: once the crawl's check has
    # connected, it is waiting (up to 10 s), and that is when Ctrl-C comes. (A fixed sleep
    # before the signal raced the start of a busy machine's Python, which ignored it.)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(120)
        crawl = [sys.executable, "-m", "scrapy", "crawl", "pytorch_hub", "-s",
                 f"PTM_STORE_URI=mongodb://127.0.0.1:{port}/x", "-s",
                 "GITHUB_API_URL=http://127.0.0.1:9"]
        # SIGINT ignored, then exec (which keeps it ignored): no preexec_fn in a threaded test.
        ignoring = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                    "os.execv(sys.argv[1], sys.argv[1:])")
        proc = subprocess.Popen([sys.executable, "-c", ignoring, *crawl], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            conn, _ = server.accept()
            with conn:
                proc.send_signal(signal.SIGINT)
                stderr = proc.communicate(timeout=60)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.rstrip().endswith("ERROR: Interrupted before the crawl started")
    assert "Traceback" not in stderr
