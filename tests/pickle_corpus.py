"""A corpus of pickle-based files, known bad and known good, built by hand.

The malicious payloads are assembled opcode by opcode (nothing here imports, calls or pickles
the dangerous callables), and nothing in this module or its users ever unpickles a corpus file:
the files exist to be *scanned*. Benign files are ``pickle.dumps``/``numpy.save`` of plain data
or hand-assembled PyTorch-like layouts (torch is not needed). ``build(folder)`` writes them and
returns the cases; ``scripts/bench_scanners.py`` and ``tests/test_packages_scan.py`` use it.

Each case has a ``truth`` (``malicious``: loading it with the ordinary loader for its name runs,
or is set up to run, attacker-chosen code; ``benign``; ``broken``: not a loadable file) and
``expected``, the status ``ptmspiders.packages.scan.scan_file`` gives it (where the two
disagree, ``note`` says why: those are the scanner's measured limits).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TORCH_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_PROTOCOL_VERSION = 1001


@dataclass(frozen=True)
class Case:
    name: str            # the file's name, whose extension gives its format
    truth: str           # malicious | benign | broken
    expected: str        # what scan_file says: safe | unsafe | suspicious | error
    dangerous: tuple[str, ...]  # the dangerous globals scan_file reports, sorted
    what: str
    build: Callable[[], bytes]
    note: str = ""


# -- a small pickle assembler ---------------------------------------------------------------
def proto(p: int) -> bytes:
    return b"\x80" + bytes([p]) if p >= 2 else b""


def text(s: str, p: int) -> bytes:
    """A str argument with the opcode each protocol would use."""
    raw = s.encode("utf-8")
    if p == 0:
        return b"V" + s.encode("raw-unicode-escape") + b"\n"
    if p >= 4 and len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw            # SHORT_BINUNICODE
    return b"X" + struct.pack("<I", len(raw)) + raw           # BINUNICODE


def glob(module: str, name: str, p: int) -> bytes:
    if p >= 4:
        return text(module, p) + text(name, p) + b"\x93"     # STACK_GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def call(module: str, name: str, arg: str, p: int) -> bytes:
    """``module.name(arg)``: GLOBAL, MARK, arg, TUPLE, REDUCE."""
    return glob(module, name, p) + b"(" + text(arg, p) + b"tR"


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def payload(module: str, name: str, arg: str = "echo pwned", p: int = 2) -> bytes:
    body = call(module, name, arg, p) + b"."
    return proto(p) + (frame(body) if p >= 5 else body)


def dumps(obj: object, p: int) -> bytes:
    """Pickle plain, benign data (never the malicious cases)."""
    return pickle.dumps(obj, protocol=p)


# -- containers -----------------------------------------------------------------------------
def zip_of(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def torch_data_pkl() -> bytes:
    """What ``torch.save({'weight': tensor})`` writes as ``archive/data.pkl`` (protocol 2): an
    OrderedDict of ``_rebuild_tensor_v2`` calls on persistent-id storages."""
    storage = (b"(" + text("storage", 2) + glob("torch", "FloatStorage", 2) + text("0", 2)
               + text("cpu", 2) + b"K\x04tQ")                 # BINPERSID
    tensor = (glob("torch._utils", "_rebuild_tensor_v2", 2) + b"(" + storage
              + b"K\x00K\x04\x85K\x01\x85\x89"                 # offset, size, stride, False
              + glob("collections", "OrderedDict", 2) + b")RtR")
    return (b"\x80\x02" + glob("collections", "OrderedDict", 2) + b")R("
            + text("weight", 2) + tensor + b"u.")


def torch_zip(data_pkl: bytes, pickle_name: str = "archive/data.pkl") -> bytes:
    return zip_of({pickle_name: data_pkl, "archive/data/0": struct.pack("<4f", 1, 2, 3, 4),
                   "archive/version": b"3\n", "archive/byteorder": b"little"})


def torch_legacy(state: bytes) -> bytes:
    """The pre-1.6 ``torch.save`` layout: magic, protocol, sys-info pickles, the state pickle,
    the storage keys pickle, then raw storage bytes."""
    return (dumps(TORCH_MAGIC, 2) + dumps(TORCH_PROTOCOL_VERSION, 2)
            + dumps({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, 2)
            + state + dumps(["0"], 2) + struct.pack("<q", 4) + struct.pack("<4f", 1, 2, 3, 4))


def npy_object(pickled: bytes) -> bytes:
    """A ``.npy`` v1.0 header declaring an object array, followed by ``pickled``."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + pickled


def npy_save(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def joblib_like(after: bytes) -> bytes:
    """joblib's layout: a pickle of ``NumpyArrayWrapper`` whose BUILD is followed by the raw
    array bytes *inside* the pickle stream, then the rest of the pickle (``after``)."""
    wrapper = (b"\x80\x04" + glob("joblib.numpy_pickle", "NumpyArrayWrapper", 4) + b")\x81}("
               + text("shape", 4) + b"K\x04\x85" + text("order", 4) + text("C", 4) + b"ub")
    return wrapper + b"\x00" * 16 + after


EXT_PICKLE = b"\x80\x02\x82\x01(" + text("echo pwned", 2) + b"tR."
MEMO_STACK_GLOBAL = (b"\x80\x04" + text("os", 4) + b"\x94" + text("system", 4) + b"\x94"
                     + b"00" + text("decoy", 4) + b"0h\x00h\x01\x93(" + text("id", 4) + b"tR.")
PUT_STACK_GLOBAL = (b"\x80\x03" + b"X\x0a\x00\x00\x00subprocessq\x07"
                    + b"X\x05\x00\x00\x00Popenq\x08" + b"00h\x07h\x08\x93("
                    + text("id", 3) + b"tR.")
GETATTR_EVAL = (b"\x80\x02" + glob("builtins", "getattr", 2) + b"("
                + call("builtins", "__import__", "builtins", 2) + text("eval", 2) + b"tR("
                + text("print(1)", 2) + b"tR.")
INST = b"(" + text("echo pwned", 0) + b"ios\nsystem\n."
# getattr_static(import_module("os"), "system")("id"): "system" is only a string argument.
RESOLVERS = (b"\x80\x04" + glob("inspect", "getattr_static", 4) + b"("
             + call("importlib", "import_module", "os", 4) + text("system", 4) + b"tR("
             + text("id", 4) + b"tR.")
BOMB_OPS = 60_000_000  # NONE POP pairs: 120 MB of valid opcodes that deflate to ~120 KB


def _bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("archive/data.pkl", "w", force_zip64=True) as fh:
        fh.write(b"\x80\x02")
        chunk = b"N0" * 1_000_000
        for _ in range(BOMB_OPS // 1_000_000):
            fh.write(chunk)
        fh.write(b"N.")
    return buf.getvalue()


def _cases() -> list[Case]:
    m, b, x = "malicious", "benign", "broken"
    cases = [
        Case(f"os_system_p{p}.pkl", m, "unsafe", ("os.system",),
             f"os.system REDUCE, protocol {p}", lambda p=p: payload("os", "system", p=p))
        for p in range(6)
    ]
    cases += [
        Case("posix_system.pkl", m, "unsafe", ("posix.system",), "posix.system (os on Linux)",
             lambda: payload("posix", "system")),
        Case("nt_system.pickle", m, "unsafe", ("nt.system",), "nt.system (os on Windows)",
             lambda: payload("nt", "system", p=1)),
        Case("subprocess_popen.pkl", m, "unsafe", ("subprocess.Popen",),
             "subprocess.Popen, STACK_GLOBAL", lambda: payload("subprocess", "Popen", p=4)),
        Case("builtins_eval.pkl", m, "unsafe", ("builtins.eval",), "builtins.eval",
             lambda: payload("builtins", "eval", "__import__('os')", p=3)),
        Case("builtins_exec.pkl", m, "unsafe", ("builtins.exec",), "builtins.exec, framed",
             lambda: payload("builtins", "exec", "import os", p=5)),
        Case("builtins_import.pkl", m, "unsafe", ("builtins.__import__",),
             "builtins.__import__('os')", lambda: payload("builtins", "__import__", "os")),
        Case("getattr_eval.pkl", m, "unsafe", ("builtins.__import__", "builtins.getattr"),
             "REDUCE on getattr(__import__('builtins'), 'eval')", lambda: GETATTR_EVAL),
        Case("runpy_run_code.pkl", m, "unsafe", ("runpy._run_code",), "runpy._run_code",
             lambda: payload("runpy", "_run_code", "import os")),
        Case("webbrowser_open.pkl", m, "unsafe", ("webbrowser.open",), "webbrowser.open",
             lambda: payload("webbrowser", "open", "http://127.0.0.1/")),
        Case("builtin_py2_eval.pkl", m, "unsafe", ("__builtin__.eval",),
             "__builtin__.eval (the Python 2 name of builtins)",
             lambda: payload("__builtin__", "eval", "1")),
        Case("stack_global_memo.pkl", m, "unsafe", ("os.system",),
             "STACK_GLOBAL on MEMOIZEd strings fetched with BINGET", lambda: MEMO_STACK_GLOBAL),
        Case("stack_global_put.pkl", m, "unsafe", ("subprocess.Popen",),
             "STACK_GLOBAL on BINPUT strings (protocol 3 framing of a protocol 4 opcode)",
             lambda: PUT_STACK_GLOBAL),
        Case("inst_opcode.pkl", m, "unsafe", ("os.system",), "INST os system (protocol 0)",
             lambda: INST),
        Case("resolvers.pkl", m, "unsafe", ("importlib.import_module", "inspect.getattr_static"),
             "importlib.import_module + inspect.getattr_static resolve os.system at load time",
             lambda: RESOLVERS),
        Case("unlisted_callable.pkl", m, "suspicious", (),
             "a callable on no blocklist (atexit.register of a harmless builtin)",
             lambda: proto(2) + glob("atexit", "register", 2) + b"("
             + glob("builtins", "print", 2) + b"tR.",
             "no blocklist is complete; the allowlist keeps such a file from being 'safe'"),
        Case("torch_zip_malicious.pt", m, "unsafe", ("os.system",),
             "torch zip layout, archive/data.pkl calls os.system",
             lambda: torch_zip(payload("os", "system"))),
        Case("torch_zip_renamed.pth", m, "unsafe", ("os.system",),
             "torch zip whose pickle is a member under another name",
             lambda: torch_zip(payload("os", "system", p=4), "archive/weights")),
        Case("torch_nested_zip.ckpt", m, "unsafe", ("os.system",),
             "a zip inside the checkpoint zip holding the payload",
             lambda: zip_of({"archive/version": b"3\n",
                             "archive/extra.zip": zip_of({"data.pkl": payload("os", "system")})})),
        Case("torch_legacy_malicious.bin", m, "unsafe", ("os.system",),
             "legacy torch.save layout (magic-number pickles) with an os.system state",
             lambda: torch_legacy(payload("os", "system"))),
        Case("npy_object_malicious.npy", m, "unsafe", ("os.system",),
             ".npy object array whose pickle calls os.system",
             lambda: npy_object(payload("os", "system", p=3))),
        Case("npz_malicious.npz", m, "unsafe", ("subprocess.Popen",),
             ".npz holding a malicious object .npy",
             lambda: zip_of({"arr_0.npy": npy_object(payload("subprocess", "Popen", p=3))},
                            zipfile.ZIP_DEFLATED)),
        Case("joblib_malicious.joblib", m, "unsafe", ("os.system",), "joblib-like, payload first",
             lambda: payload("os", "system", p=4)),
        Case("garbage_then_pickle.pkl", m, "error", (),
             "an os.system pickle after 8 bytes that are not a pickle",
             lambda: b"\x00\x01GARBAG" + payload("os", "system"),
             "the payload is not reached: pickletools stops at the first invalid opcode, "
             "so the file is an error, not unsafe"),
        Case("joblib_array_then_payload.joblib", m, "error", (),
             "joblib-like: raw array bytes inside the pickle, payload after them",
             lambda: joblib_like(call("os", "system", "id", 4) + b"."),
             "the raw array bytes stop the opcode walk; scanning past them needs joblib's "
             "array layout, so the file is an error, not unsafe"),
        Case("ext_opcode.pkl", m, "safe", (), "EXT1 opcode (copyreg extension registry)",
             lambda: EXT_PICKLE,
             "EXT opcodes name no module; they run code only in a process that registered the "
             "code with copyreg.add_extension, and no scanner reports them"),
    ]
    cases += [
        Case(f"plain_p{p}.pkl", b, "safe", (), f"dict of plain values, protocol {p}",
             lambda p=p: dumps({"a": [1, 2.0, "x", None, True], "b": (b"y", 3)}, p))
        for p in range(6)
    ]
    cases += [
        Case("ordereddict.pkl", b, "safe", (), "collections.OrderedDict",
             lambda: dumps(OrderedDict(a=1, b=[2, 3]), 2)),
        Case("numpy_p2.pkl", b, "safe", (), "a numpy array, protocol 2 (_reconstruct)",
             lambda: dumps(np.arange(6, dtype=np.float32).reshape(2, 3), 2)),
        Case("numpy_p5.pickle", b, "safe", (), "a numpy array, protocol 5 (_frombuffer)",
             lambda: dumps(np.arange(6, dtype=np.float32), 5)),
        Case("numpy_scalar_dtype.pkl", b, "safe", (), "numpy scalars and dtypes",
             lambda: dumps([np.float32(1.5), np.dtype("int64")], 4)),
        Case("torch_zip_benign.pt", b, "safe", (), "torch zip layout of a state dict",
             lambda: torch_zip(torch_data_pkl())),
        Case("torch_legacy_benign.pth", b, "safe", (), "legacy torch.save layout",
             lambda: torch_legacy(torch_data_pkl())),
        Case("npy_float.npy", b, "safe", (), ".npy of floats (no pickle inside)",
             lambda: npy_save(np.linspace(0, 1, 8))),
        Case("npy_object_benign.npy", b, "safe", (), ".npy object array of plain values",
             lambda: npy_save(np.array([1, "a", None], dtype=object))),
        Case("npz_benign.npz", b, "safe", (), ".npz of a float and an object array",
             lambda: zip_of({"a.npy": npy_save(np.ones(3)),
                             "b.npy": npy_save(np.array([{"k": 1}], dtype=object))},
                            zipfile.ZIP_DEFLATED)),
        Case("joblib_array.joblib", b, "error", (), "joblib-like with a raw numpy array inside",
             lambda: joblib_like(b"."),
             "the raw array bytes inside joblib's pickle stop the opcode walk"),
        Case("torch_other_class.bin", b, "suspicious", (),
             "a checkpoint pickling a class outside the allowlist (harmless, but unknown)",
             lambda: proto(2) + glob("transformers.training_args", "TrainingArguments", 2)
             + b")\x81."),
    ]
    cases += [
        Case("empty.pkl", x, "error", (), "an empty file", lambda: b""),
        Case("truncated.pkl", x, "error", (), "a pickle cut in half",
             lambda: dumps({"k": list(range(50))}, 4)[:60]),
        Case("not_a_pickle.pt", x, "error", (), "text named .pt",
             lambda: b"version https://git-lfs.github.com/spec/v1\n"),
        Case("corrupt_zip.pt", x, "error", (), "a zip local header and then junk",
             lambda: b"PK\x03\x04" + b"\x14" * 40),
        Case("zip_bomb.pt", x, "error", (),
             "120 MB of valid opcodes deflated to ~120 KB (a zip and opcode bomb)", _bomb),
    ]
    return cases


CASES: tuple[Case, ...] = tuple(_cases())


def build(folder: Path, names: set[str] | None = None) -> list[tuple[Case, Path]]:
    """Write the corpus (or the cases in ``names``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for case in CASES:
        if names is not None and case.name not in names:
            continue
        path = folder / case.name
        path.write_bytes(case.build())
        out.append((case, path))
    return out
