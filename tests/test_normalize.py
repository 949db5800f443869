import pytest

from ptmspiders import normalize as n


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-02-19T11:06:12.000Z", "2024-02-19T11:06:12.000Z"),
    ("2024-02-19T11:06:12Z", "2024-02-19T11:06:12Z"),
    ("2024-02-19T13:06:12+02:00", "2024-02-19T11:06:12Z"),
    ("2024-02-19 11:06", "2024-02-19T11:06:00Z"),
    ("2024-02-19", "2024-02-19T00:00:00Z"),
    (1700000000, "2023-11-14T22:13:20Z"),
    (1700000000123, "2023-11-14T22:13:20.123Z"),
    ("not a date", None),
    ("2024-13-45", None),
    (None, None),
    (True, None),
    # Around the fast path for the Hub's own form: surrounding space, a 24-character non-date.
    (" 2024-02-19T11:06:12.000Z", "2024-02-19T11:06:12.000Z"),
    ("2024-02-19T11:06:12.000Z\n", "2024-02-19T11:06:12.000Z"),
    (" 024-02-19T11:06:12.000Z", None),
    ("2024-02-19T11:06:12.000X", None),
])
def test_iso_utc(value, expected):
    assert n.iso_utc(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("Apache 2.0", "apache-2.0"),
    ("Apache License 2.0", "apache-2.0"),
    ("apache-2.0", "apache-2.0"),
    ("MIT", "mit"),
    ("The MIT License", "mit"),
    ("BSD-3-Clause", "bsd-3-clause"),
    ("CC BY 4.0", "cc-by-4.0"),
    ("cc-by-nc-sa-4.0", "cc-by-nc-sa-4.0"),
    ("GPL-3.0", "gpl-3.0"),
    ("openrail++", "openrail++"),
    ("llama3.1", "llama3.1"),
    ("My Own Terms v2", "My Own Terms v2"),
    (["mit", "apache-2.0"], "mit OR apache-2.0"),
    ("", None),
    (None, None),
])
def test_normalize_license(value, expected):
    assert n.normalize_license(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("https://github.com/pytorch/vision", "pytorch/vision"),
    ("https://github.com/Pytorch/Vision.git", "pytorch/vision"),
    ("http://www.github.com/NVIDIA/DLExamples/tree/master/PyTorch", "nvidia/dlexamples"),
    ("github.com/ultralytics/yolov5/blob/master/hubconf.py", "ultralytics/yolov5"),
    ("git@github.com:facebookresearch/detr.git", "facebookresearch/detr"),
    ("[https://github.com/a-b/c.d/issues]", "a-b/c.d"),
    ("https://github.com/orgs/pytorch", None),
    ("https://gitlab.com/a/b", None),
    ("pytorch/vision", None),
    (42, None),
])
def test_github_repo(value, expected):
    assert n.github_repo(value) == expected


def test_github_repo_bare_only_when_allowed():
    assert n.github_repo("pytorch/vision", allow_bare=True) == "pytorch/vision"
    assert n.github_repos(["pytorch/vision", "https://github.com/PyTorch/vision"],
                          allow_bare=True) == ["pytorch/vision"]


@pytest.mark.parametrize(("value", "expected"), [
    ("arxiv:1810.04805", "arxiv:1810.04805"),
    ("https://arxiv.org/abs/1512.03385v2", "arxiv:1512.03385"),
    ("https://arxiv.org/pdf/2010.11929.pdf", "arxiv:2010.11929"),
    ("1706.03762", "arxiv:1706.03762"),
    ("doi:10.57967/hf/0003", "doi:10.57967/hf/0003"),
    ("https://doi.org/10.1109/CVPR.2016.90", "doi:10.1109/cvpr.2016.90"),
    ("license:mit", None),
    ("https://example.org/paper.pdf", None),
])
def test_paper_id(value, expected):
    assert n.paper_id(value) == expected


def test_papers_from_tags_ignores_other_tags():
    tags = ["transformers", "arxiv:1810.04805", "doi:10.57967/hf/0001", "license:mit",
            "dataset:imdb", "arxiv:1810.04805"]
    assert n.papers_from_tags(tags) == ["arxiv:1810.04805", "doi:10.57967/hf/0001"]


def test_papers_from_tags_prefixes_as_before_the_compiled_match():
    """``arxiv:`` and ``doi:10`` in any case, other ``doi:`` only as written."""
    tags = ["ArXiv:1810.04805", "ARXIV:1706.03762", "DOI:10.1109/CVPR.2016.90", "doi:10.5/x",
            "Doi:foo", "xarxiv:1706.03762", "arxiv", "", "doi:", "arxiv:"]
    found = [t for t in tags if t[:6].lower() in ("arxiv:", "doi:10") or t[:4] == "doi:"]
    assert [t for t in tags if n._PAPER_TAG(t)] == found
    assert n.papers_from_tags(tags) == n.papers(found)


def test_papers_from_tags_without_paper_tags_and_beyond_ascii():
    """The shortcut for tags without a paper must not change what the match finds: its
    IGNORECASE reads the dotless and the dotted capital i as ``i``."""
    assert n.papers_from_tags(["transformers", "license:mit", "region:us"]) == []
    assert n.papers_from_tags([]) == []
    odd = ["arx\u0131v:1810.04805", "ARX\u0130V:1706.03762", "caf\u00e9"]
    assert n.papers_from_tags(odd) == n.papers(list(filter(n._PAPER_TAG, odd)))
    assert n.papers_from_tags(odd) == ["arxiv:1810.04805", "arxiv:1706.03762"]
    assert n.papers_from_tags(iter(["x", "arxiv:1810.04805"])) == ["arxiv:1810.04805"]


@pytest.mark.parametrize("values", [
    [], [None], [""], ["a"], [0], [False], ["a", "a"], ["a", None, "", "b", "a"], ("a",),
    ("a", "a"), ["x", "x", "y"], {"k": 1}, ["a", "b", "c"], ["a", ""], [None, "a"],
    [0, False, 1, True], [1, 1.0, "1"]])
def test_dedupe_short_lists_like_long_ones(values):
    """The fast paths (lists of 0 or 1 items, lists with nothing to drop) answer as
    ``dict.fromkeys`` does."""
    expected = [v for v in dict.fromkeys(values) if v is not None and v != ""]
    out = n.dedupe(values)
    assert out == expected and isinstance(out, list)
    assert out is not values  # a new list: the caller may change it
    assert n.dedupe(iter(values)) == expected


def test_libraries_fold_aliases():
    assert [n.normalize_library(x) for x in ["tf", "PyTorch", "TensorFlow.js", " onnx "]] == [
        "tensorflow", "pytorch", "tfjs", "onnx"]


def test_as_int_rejects_negative_and_bool():
    assert n.as_int(True) is None
    assert n.as_int(-3) is None
    assert n.as_int("1,234") == 1234
    assert n.as_int(3.0) == 3
