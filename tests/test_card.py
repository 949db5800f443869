"""The card parser and the file-risk functions, on the project's card fixtures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ptmspiders.hub_answers import BadResponse
from ptmspiders.parsers import hf_card, hf_repo
from ptmspiders.parsers.hf_card import headings, parse_card
from ptmspiders.parsers.safe_yaml import split_front_matter

CARDS = Path(__file__).parent / "fixtures" / "huggingface" / "cards"


def card(name: str) -> dict:
    return parse_card((CARDS / f"{name}.md").read_bytes())


def test_full_card_states_everything_it_has() -> None:
    c = card("acme-ai/bert-base-cased")
    assert c["present"] is True
    assert c["length"] == len((CARDS / "acme-ai/bert-base-cased.md").read_text())
    assert c["front_matter_keys"] == ["language", "license", "datasets", "tags"]
    assert c["sections"] == ["BERT base model (cased)", "Model description",
                             "Intended uses & limitations", "Limitations and bias",
                             "Training data", "Evaluation results"]
    assert (c["states_license"], c["states_datasets"], c["states_limitations"],
            c["states_evaluation"]) == (True, True, True, True)
    assert c["has_model_index"] is False


def test_model_index_and_setext_headings() -> None:
    c = card("acme-ai/t5-small-summarize")
    assert c["has_model_index"] is True
    assert c["sections"] == ["T5 small, fine-tuned for summarization", "Usage"]
    assert c["states_evaluation"] is True  # the model-index is an evaluation claim
    assert c["states_limitations"] is False


def test_template_placeholders_do_not_count() -> None:
    c = card("vision-works/yolo-det-s")
    assert "Bias, Risks, and Limitations" in c["sections"]
    assert c["states_limitations"] is False
    assert c["states_evaluation"] is False
    assert c["states_datasets"] is False
    assert c["states_license"] is True  # from the front matter


def test_license_from_a_section_and_broken_front_matter() -> None:
    assert card("lumen-labs/llama-lite-8b-instruct")["states_license"] is True
    c = card("msmith/sklearn-iris")
    assert c["front_matter_error"].startswith("invalid_yaml")
    assert c["front_matter_keys"] == []
    assert c["sections"] == ["sklearn-iris"]


def test_missing_card_and_edge_cases() -> None:
    missing = parse_card(None)
    assert missing["present"] is False and missing["length"] == 0
    assert split_front_matter("---\nno end") == (None, "---\nno end")
    assert parse_card("---\n- a\n- b\n---\n# T\n")["front_matter_error"].startswith(
        "front_matter_not_mapping")
    assert headings("```\n# in code\n```\n#not a heading\n# Real #\n") == [(1, "Real", 4)]
    crlf = parse_card(b"\xef\xbb\xbf---\r\nlicense: mit\r\n---\r\n## Usage\r\ntext\r\n")
    assert crlf["front_matter_keys"] == ["license"] and crlf["sections"] == ["Usage"]


def lines_run(text: str) -> int:
    """How many lines of ``hf_card`` run to parse ``text``: a measure of work, not of time."""
    count = 0

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += event == "line"
        return local

    def calls(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == hf_card.__file__ else None

    before = sys.gettrace()
    sys.settrace(calls)
    try:
        parse_card(text)
    finally:
        sys.settrace(before)
    return count


def test_card_parsing_is_linear_in_empty_headings() -> None:
    """30,000 empty "## Evaluation" headings took 12 s: each section was looked up and
    checked against every heading after it. Twice the headings must take about twice the
    work (the old parser: 3.5 times, growing)."""
    def card(n: int) -> str:
        return "---\nlicense: mit\n---\n" + "## Evaluation\n\n" * n

    assert lines_run(card(600)) <= 2.2 * lines_run(card(300))
    hostile = parse_card(card(30_000))  # ~450 KB: parses at once now
    assert len(hostile["sections"]) == 30_000 and hostile["states_evaluation"] is False


def test_long_heading_lines_and_unclosed_placeholders() -> None:
    """The heading regex backtracked cubically on a long run of spaces (4,000: 49 s) and an
    unclosed ``<!--`` was searched to the end of its section once per occurrence."""
    assert headings("# a" + " " * 20_000 + "b\n## c ##  \n") == [
        (1, "a" + " " * 20_000 + "b", 0), (2, "c", 1)]
    assert parse_card("## Evaluation\n" + "<!--" * 50_000)["states_evaluation"] is True
    assert parse_card("## Evaluation\n<!-- a -->\n{{ b }}\n[More information needed]\n"
                      )["states_evaluation"] is False


@pytest.mark.parametrize(("paths", "formats", "pickle_only"), [
    (["model.safetensors", "pytorch_model.bin"], ["pickle", "safetensors"], False),
    (["pytorch_model.bin", "training_args.bin", "config.json"], ["pickle"], True),
    (["a/consolidated.00.pth", "x.ckpt", "m.pkl"], ["pickle"], True),
    (["m.Q4_K_M.gguf"], ["gguf"], False),
    (["onnx/model.onnx", "README.md"], ["onnx"], False),
    (["config.json", "README.md", "training_args.bin"], [], None),
])
def test_weight_formats(paths: list[str], formats: list[str], pickle_only: bool | None) -> None:
    risk = hf_repo.file_risk([{"path": p} for p in paths])
    assert risk["weight_formats"] == formats
    assert risk["pickle_only"] is pickle_only


def test_tree_page_and_security_scan() -> None:
    body = b"""[
     {"type": "directory", "oid": "1", "size": 0, "path": "onnx"},
     {"type": "file", "oid": "2", "size": 120, "path": "config.json"},
     {"type": "file", "oid": "3", "size": 134, "path": "model.pt",
      "lfs": {"oid": "ab12", "size": 5000, "pointerSize": 134},
      "securityFileStatus": {"status": "unsafe", "avScan": {"virusFound": false},
        "pickleImportScan": {"highestSafetyLevel": "dangerous",
          "imports": [{"module": "os", "name": "system", "safety": "dangerous"},
                      {"module": "torch", "name": "FloatStorage", "safety": "innocuous"}]}}}
    ]"""
    files = hf_repo.parse_tree_page(body)
    assert [f["path"] for f in files] == ["config.json", "model.pt"]
    assert files[0] == {"path": "config.json", "size": 120, "sha256": None, "lfs": False}
    assert files[1]["size"] == 5000 and files[1]["sha256"] == "ab12"
    assert files[1]["security"]["risky_imports"] == ["os.system"]
    risk = hf_repo.file_risk(files)
    assert risk["unsafe_files"] == ["model.pt"] and risk["scanned_files"] == 1
    with pytest.raises(BadResponse):
        hf_repo.parse_tree_page(b'[{"type": "file"}]')
    with pytest.raises(BadResponse):
        hf_repo.parse_tree_page(b'{"error": "x"}')


def test_commits_page() -> None:
    body = (b'[{"id": "abc", "title": "t", "message": "t", "date": "2024-01-02T03:04:05.000Z",'
            b' "authors": [{"user": "u1"}, {"avatar": "x"}]}]')
    assert hf_repo.parse_commits_page(body) == [
        {"sha": "abc", "title": "t", "date": "2024-01-02T03:04:05.000Z", "authors": ["u1"]}]
    with pytest.raises(BadResponse):
        hf_repo.parse_commits_page(b"<html>")
