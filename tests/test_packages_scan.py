"""ptmspiders.packages.scan: every corpus file classified as expected, nothing ever loaded,
bad input an ``error``, memory and work bounded."""

from __future__ import annotations

import _pickle
import importlib.abc
import io
import pickle
import struct
import sys
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ptmspiders.packages import scan
from ptmspiders.packages.scan import is_scannable, scan_file, summarise
from tests import pickle_corpus
from tests.pickle_corpus import CASES, Case

BY_NAME = {c.name: c for c in CASES}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pickle-corpus")
    return {case.name: path for case, path in pickle_corpus.build(folder)}


def test_the_corpus_covers_every_kind() -> None:
    truths = {c.truth for c in CASES}
    assert truths == {"malicious", "benign", "broken"}
    assert len(BY_NAME) == len(CASES)
    exts = {Path(c.name).suffix for c in CASES}
    assert {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy",
            ".npz"} <= exts


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_corpus_file_is_classified_as_expected(case: Case,
                                                     corpus: dict[str, Path]) -> None:
    result = scan_file(corpus[case.name], case.name)
    assert result["status"] == case.expected, result
    assert result["dangerous"] == list(case.dangerous)
    assert set(result["dangerous"]) <= set(result["globals"])
    assert result["globals"] == sorted(result["globals"])
    assert result["scanner"].startswith("picklescan ")
    assert ("reason" in result) == (result["status"] == "error")
    if case.truth == "malicious" and case.expected not in ("unsafe", "error"):
        assert case.note, "a malicious file the scanner passes must say why"


def test_a_joblib_array_says_why_the_scan_stopped(corpus: dict[str, Path]) -> None:
    result = scan_file(corpus["joblib_array.joblib"], "joblib_array.joblib")
    assert result["globals"] == ["joblib.numpy_pickle.NumpyArrayWrapper"]
    assert "joblib's raw array bytes" in result["reason"]


def test_benign_globals_are_reported_too(corpus: dict[str, Path]) -> None:
    result = scan_file(corpus["torch_zip_benign.pt"], "torch_zip_benign.pt")
    assert result["globals"] == ["collections.OrderedDict", "torch.FloatStorage",
                                 "torch._utils._rebuild_tensor_v2"]
    other = scan_file(corpus["torch_other_class.bin"], "torch_other_class.bin")
    assert other["globals"] == ["transformers.training_args.TrainingArguments"]


class _Canary(importlib.abc.MetaPathFinder):
    """Records every attempt to import a module of the corpus's globals."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.attempts.append(fullname)
        return None


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Canary]:
    """Every way to unpickle raises, and every import is recorded."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a scan must never unpickle")

    for mod in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(mod, name, refuse)
    monkeypatch.setattr(np, "load", refuse)
    canary = _Canary()
    sys.meta_path.insert(0, canary)
    try:
        yield canary
    finally:
        sys.meta_path.remove(canary)


def test_scanning_never_unpickles_nor_imports(corpus: dict[str, Path],
                                              no_loading: _Canary) -> None:
    for case in CASES:
        assert scan_file(corpus[case.name], case.name)["status"] == case.expected, case.name
    named = {part for c in CASES for g in c.dangerous for part in (g.rsplit(".", 1)[0],)}
    assert not named & set(no_loading.attempts), no_loading.attempts


def test_a_global_of_an_unknown_module_is_never_imported(tmp_path: Path,
                                                         no_loading: _Canary) -> None:
    path = tmp_path / "canary.pkl"
    path.write_bytes(pickle_corpus.payload("ptm_canary_hubconf", "boom", p=4))
    result = scan_file(path, "canary.pkl")
    assert result["globals"] == ["ptm_canary_hubconf.boom"]
    assert result["status"] == "suspicious"
    assert "ptm_canary_hubconf" not in no_loading.attempts
    assert "ptm_canary_hubconf" not in sys.modules


@pytest.mark.parametrize("make", [
    lambda p: p / "missing.pkl",
    lambda p: p,                                   # a directory
], ids=["missing", "directory"])
def test_unreadable_paths_are_errors(tmp_path: Path, make: Any) -> None:
    result = scan_file(make(tmp_path), "x.pkl")
    assert result["status"] == "error"
    assert result["reason"]
    assert result["globals"] == [] and result["dangerous"] == []


def test_a_dangerous_global_before_the_break_is_still_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle_corpus.payload("os", "system")[:-3])
    result = scan_file(path, "cut.pkl")
    assert result["status"] == "unsafe"
    assert result["dangerous"] == ["os.system"]


def big_bytes_pickle(size: int, p: int = 4) -> bytes:
    """A pickle of one ``size``-byte bytes object (BINBYTES8), assembled without dumping it."""
    return (b"\x80" + bytes([p]) + b"\x8e" + struct.pack("<Q", size) + b"\x00" * size
            + b"\x94" + pickle_corpus.glob("os", "system", 4) + b"0.")


def peak_of_scan(path: Path, name: str) -> tuple[dict[str, Any], int]:
    tracemalloc.start()
    try:
        result = scan_file(path, name)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("layout", ["plain", "zip"])
def test_large_arguments_are_skipped_not_read(tmp_path: Path, layout: str) -> None:
    size = 48 << 20
    data = big_bytes_pickle(size)
    name = "big.pkl" if layout == "plain" else "big.pt"
    path = tmp_path / name
    if layout == "plain":
        path.write_bytes(data)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", data)
    result, peak = peak_of_scan(path, name)
    # Found after the big argument: the walk went past it, and never held it.
    assert result["dangerous"] == ["os.system"]
    assert peak < size // 8


@pytest.mark.parametrize("p", [0, 2], ids=["UNICODE line", "BINUNICODE"])
def test_large_text_arguments_are_skipped_too(tmp_path: Path, p: int) -> None:
    size = 24 << 20
    body = ("V" + "a" * size + "\n").encode() if p == 0 else (
        b"X" + struct.pack("<I", size) + b"a" * size)
    path = tmp_path / "text.pkl"
    path.write_bytes(pickle_corpus.proto(p) + body + b"0" + pickle_corpus.glob("os", "system", p)
                     + b".")
    result, peak = peak_of_scan(path, "text.pkl")
    assert result["dangerous"] == ["os.system"]
    assert peak < size // 4


def test_an_opcode_flood_stops_at_the_bound(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "MAX_OPCODES", 1000)
    path = tmp_path / "flood.pkl"
    path.write_bytes(b"\x80\x02" + b"N0" * 1000 + b"N.")
    result = scan_file(path, "flood.pkl")
    assert result["status"] == "error"
    assert "1,000 opcodes" in result["reason"]
    small = tmp_path / "small.pkl"
    small.write_bytes(b"\x80\x02" + b"N0" * 100 + b"N.")
    assert scan_file(small, "small.pkl")["status"] == "safe"


def test_retained_argument_bytes_are_bounded(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "MAX_RETAINED_BYTES", 4096)
    path = tmp_path / "strings.pkl"
    path.write_bytes(pickle.dumps([c * 1000 for c in "vwxyz"], protocol=4))
    result = scan_file(path, "strings.pkl")
    assert result["status"] == "error"
    assert "MiB of pickle arguments" in result["reason"]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    return buf.getvalue()


def test_zip_member_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "MAX_ZIP_MEMBERS", 3)
    path = tmp_path / "many.pt"
    path.write_bytes(_zip({f"archive/data/{i}": b"\x00" for i in range(5)}))
    result = scan_file(path, "many.pt")
    assert result["status"] == "error"
    assert "zip members" in result["reason"]


def test_zip_nesting_is_bounded(tmp_path: Path) -> None:
    inner = pickle_corpus.payload("posix", "system")
    data = _zip({"data.pkl": inner})
    for _ in range(scan.MAX_ZIP_DEPTH + 1):
        data = _zip({"inner.zip": data})
    path = tmp_path / "deep.ckpt"
    path.write_bytes(data)
    result = scan_file(path, "deep.ckpt")
    assert result["status"] == "error"
    assert "nested deeper" in result["reason"]


def test_a_corrupt_member_does_not_hide_the_others(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    bad = pickle_corpus.npy_object(pickle_corpus.payload("os", "system"))
    path.write_bytes(_zip({"a.npy": b"\x93NUMPY\x09\x00junk", "b.npy": bad}))
    result = scan_file(path, "arrays.npz")
    assert result["status"] == "unsafe"
    assert result["dangerous"] == ["os.system"]


def test_storages_in_a_torch_zip_are_not_walked(tmp_path: Path) -> None:
    """Raw tensor bytes that happen to look like opcodes are never read as a pickle."""
    path = tmp_path / "model.pt"
    path.write_bytes(_zip({
        "archive/data.pkl": pickle_corpus.torch_data_pkl(),
        "archive/data/0": b"cos\nsystem\n(S'x'\ntR.",  # protocol 0 opcodes, no pickle magic
    }))
    assert scan_file(path, "model.pt")["status"] == "safe"


@pytest.mark.parametrize(("path", "expected"), [
    ("pytorch_model.bin", True), ("sub/dir/model.PT", True), ("x.pth", True),
    ("last.ckpt", True), ("m.pkl", True), ("m.pickle", True), ("m.joblib", True),
    ("m.dill", True), ("a.npy", True), ("a.NPZ", True),
    ("model.safetensors", False), ("model.onnx", False), ("shape.dat", False),
    ("archive.zip", False), ("hubconf.py", False), ("README.md", False), ("bin", False),
])
def test_is_scannable(path: str, expected: bool) -> None:
    assert is_scannable(path) is expected


def test_summarise() -> None:
    scans = [{"status": s} for s in ("safe", "unsafe", "unsafe", "suspicious", "error", "safe")]
    assert summarise(scans) == {"scanned": 6, "unsafe": 2, "suspicious": 1, "errors": 1}
    assert summarise([]) == {"scanned": 0, "unsafe": 0, "suspicious": 0, "errors": 0}
    assert summarise(iter(scans[:2])) == {"scanned": 2, "unsafe": 1, "suspicious": 0,
                                          "errors": 0}
