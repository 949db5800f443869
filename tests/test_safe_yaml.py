"""Hub YAML within bounds: the loader alone, then the two parsers that read front matter."""

from __future__ import annotations

import frontmatter
import pytest
import yaml

from ptmspiders.hub_answers import BadResponse
from ptmspiders.parsers import pytorch_hub
from ptmspiders.parsers.hf_card import parse_card
from ptmspiders.parsers.safe_yaml import (
    FRONT_MATTER,
    MAX_ALIASES,
    MAX_CHARS,
    MAX_DEPTH,
    YamlRefused,
    load_yaml,
    split_front_matter,
)


def laughs(levels: int = 6, width: int = 9) -> str:
    """"Billion laughs": each level lists the one before ``width`` times, by alias."""
    lines = ["a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]"
              for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def entry(front: str) -> bytes:
    """A PyTorch Hub catalogue file with this front matter and a usual body."""
    return (f"---\n{front}---\n\n```python\nimport torch\n"
            "model = torch.hub.load('pytorch/vision:v0.10.0', 'alexnet')\n```\n").encode()


def test_billion_laughs_is_refused_before_anything_is_built() -> None:
    text = laughs()
    assert len(text) < 400  # ~300 bytes that would be half a million strings
    with pytest.raises(YamlRefused) as exc:
        load_yaml(text)
    assert exc.value.reason == "yaml_expands"


@pytest.mark.parametrize(("text", "reason"), [
    ("a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n", "yaml_aliases"),
    ("a: &a [1, *a]\n", "yaml_recursive"),
    ("a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", "yaml_too_deep"),
    ("a: '" + "x" * MAX_CHARS + "'\n", "yaml_too_large"),
])
def test_each_bound_has_its_reason(text: str, reason: str) -> None:
    with pytest.raises(YamlRefused) as exc:
        load_yaml(text)
    assert exc.value.reason == reason
    assert isinstance(exc.value, BadResponse)  # callers count it like any unusable answer


def test_nesting_far_beyond_the_bound_is_an_error_not_a_recursion_error() -> None:
    with pytest.raises((YamlRefused, yaml.YAMLError)):
        load_yaml("a: " + "[" * 5000 + "]" * 5000)


def test_ordinary_yaml_with_a_few_anchors_and_a_merge_still_loads() -> None:
    text = ("base: &b {lr: 0.1, tags: [x, y]}\nrun: {<<: *b, lr: 0.2}\nother: *b\n"
            "n: 12\nhex: 0x10\nbig: 99999999999999999999\nhuge: " + "7" * 5000 + "\n")
    data = load_yaml(text)
    assert data["run"] == {"lr": 0.2, "tags": ["x", "y"]}
    assert data["other"] == {"lr": 0.1, "tags": ["x", "y"]}
    assert (data["n"], data["hex"]) == (12, 16)
    # Integers beyond 64 bits stay text: no store could hold them, Python refuses 5,000 digits.
    assert data["big"] == "99999999999999999999" and data["huge"] == "7" * 5000


def test_front_matter_is_split_one_way_for_every_hub() -> None:
    assert split_front_matter("---\na: 1\n---\nbody\n") == ("a: 1\n", "body\n")
    assert split_front_matter("--- \na: 1\n...\nbody") == ("a: 1\n", "body")
    assert split_front_matter("---\n---\n") == ("", "")
    assert split_front_matter("---") == (None, "---")
    assert split_front_matter("---\nno end") == (None, "---\nno end")
    assert split_front_matter("# Title\n---\n") == (None, "# Title\n---\n")
    # Unnormalised line ends, blank lines after the block, delimiters that are not ours.
    assert split_front_matter("---\r\na: 1\r\n--- \r\nbody\r\n") == ("a: 1\r\n", "body\r\n")
    assert split_front_matter("---\na: 1\n---\n\n\n# T\n") == ("a: 1\n", "\n\n# T\n")
    assert split_front_matter("---\na: 1\n----\n... x\n") == (None, "---\na: 1\n----\n... x\n")
    assert split_front_matter("----\na: 1\n---\n")[0] is None
    assert split_front_matter("\n---\na: 1\n---\n")[0] is None
    assert split_front_matter("\ufeff---\na: 1\n---\n")[0] is None  # callers drop the BOM


def test_front_matter_handler_keeps_the_bounds_in_python_frontmatters_own_api() -> None:
    post = frontmatter.loads("---\ntitle: T\nbig: 99999999999999999999\n---\nbody\n",
                             handler=FRONT_MATTER)
    assert post.metadata == {"title": "T", "big": "99999999999999999999"}
    assert post.content == "body"
    with pytest.raises(YamlRefused) as exc:
        frontmatter.loads("---\n" + laughs() + "---\nbody\n", handler=FRONT_MATTER)
    assert exc.value.reason == "yaml_expands"


def test_pytorch_hub_entry_with_billion_laughs_is_refused_not_read_line_by_line() -> None:
    with pytest.raises(BadResponse) as exc:
        pytorch_hub.parse_entry(entry("title: Evil\n" + laughs()), path="evil.md",
                                blob_sha=None, source_url=None, seen_at="2026-01-01T00:00:00Z")
    assert exc.value.reason == "yaml_expands"


def test_pytorch_hub_entry_keeps_a_huge_integer_as_text() -> None:
    item = pytorch_hub.parse_entry(entry("title: T\norder: " + "9" * 30 + "\n"), path="t.md",
                                   blob_sha=None, source_url=None,
                                   seen_at="2026-01-01T00:00:00Z")
    assert item.raw["order"] == "9" * 30


@pytest.mark.parametrize(("front", "reason"), [
    (laughs(), "yaml_expands"),
    ("a: " + "[" * 900 + "]" * 900 + "\n", "yaml_too_deep"),
])
def test_card_with_hostile_front_matter_keeps_its_body(front: str, reason: str) -> None:
    card = parse_card(f"---\n{front}---\n# Model\n## License\nMIT\n")
    assert card["front_matter_error"].startswith(f"{reason}: ")
    assert card["front_matter_keys"] == []
    assert card["sections"] == ["Model", "License"] and card["states_license"] is True
