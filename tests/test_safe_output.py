"""Hub text that attacks the reader of our output: ANSI escapes on a terminal, formulas in a
spreadsheet (issue 24, item 6)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from ptmspiders import cli
from ptmspiders.stores import open_store

FORMULA_OWNER = "=cmd|' /C calc'!A0"
ESCAPES_ID = "huggingface:evil/\x1b[2J\x1b]0;pwned\x07\x9b31m\x7f\u202etxt.exe"


def hostile_models() -> list[dict[str, Any]]:
    return [
        {"_id": ESCAPES_ID, "hub": "huggingface", "hub_id": ESCAPES_ID.split(":", 1)[1],
         "owner": "evil", "downloads": 5, "license": "mit\r\nx"},
        {"_id": "huggingface:x/formula", "hub": "huggingface", "hub_id": "x/formula",
         "owner": FORMULA_OWNER, "downloads": 7},
        {"_id": "huggingface:x/plain", "hub": "huggingface", "hub_id": "x/plain",
         "owner": "-plain", "downloads": 3},
    ]


@pytest.mark.parametrize(("value", "expected"), [
    (FORMULA_OWNER, "'" + FORMULA_OWNER),
    ("+1+1", "'+1+1"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("acme-ai", "acme-ai"),
    ("a=b", "a=b"),
    ("", ""),
    (-5, -5),  # a number is not a formula
    (0.25, 0.25),
    (None, None),
])
def test_cells_a_spreadsheet_would_run_are_neutralised(value: Any, expected: Any) -> None:
    from ptmspiders.safe_output import neutralise_cell

    assert neutralise_cell(value) == expected


def test_report_csvs_neutralise_owner_names(tmp_path: Path) -> None:
    """maintainers.csv (and every other report CSV) goes through one writer."""
    from ptmspiders.report import metrics
    from ptmspiders.report.render import write_csvs

    result = metrics.compute(hostile_models(), [], [])
    names = write_csvs(tmp_path, result)
    assert "maintainers.csv" in names
    with (tmp_path / "maintainers.csv").open(newline="", encoding="utf-8") as fh:
        owners = {row["owner"] for row in csv.DictReader(fh)}
    assert owners == {"'" + FORMULA_OWNER, "'-plain", "evil"}
    for name in names:
        with (tmp_path / name).open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in row)


def test_csv_writer_keeps_numbers_and_quotes_cells(tmp_path: Path) -> None:
    from ptmspiders.safe_output import write_csv

    write_csv(tmp_path / "t.csv", ["name", "delta"], [["=1,2\n", -3], ["ok", 0.5]])
    with (tmp_path / "t.csv").open(newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh)) == [["name", "delta"], ["'=1,2\n", "-3"], ["ok", "0.5"]]


@pytest.fixture
def hostile_store(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    with open_store(uri) as store:
        store.upsert("models", hostile_models())
    return uri


def test_table_escapes_control_characters(hostile_store: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--store", hostile_store, "query", '{"owner": "evil"}', "--table",
                     "--fields", "_id,license,downloads"]) == 0
    out = capsys.readouterr().out
    for ch in ("\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\r"):
        assert ch not in out
    assert "huggingface:evil/\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x7f\\u202e" in out
    assert "mit\\x0d\\x0ax" in out
    assert len(out.splitlines()) == 3  # header, rule, one row: no line broken by the data


def test_jsonl_stays_exact_but_inert(hostile_store: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """JSON escapes C0 itself; DEL, C1 and bidi controls are escaped too, and the document
    read back is the stored one."""
    assert cli.main(["--store", hostile_store, "query", '{"owner": "evil"}']) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in ("\x1b", "\x9b", "\x7f", "\u202e"))
    assert json.loads(out)["_id"] == ESCAPES_ID


def test_escape_controls_shows_every_control_character() -> None:
    from ptmspiders.safe_output import escape_controls

    assert escape_controls("a\x00b\x1fc\x7fd\x85e\u2066f\tg") == (
        "a\\x00b\\x1fc\\x7fd\\x85e\\u2066f\\x09g")
    assert escape_controls("naïve 模型 ok") == "naïve 模型 ok"
