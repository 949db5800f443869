"""Scan pickle-based model files for the globals they import, without ever unpickling them.

The opcode walk and the blocklist are picklescan's (the scanner the Hugging Face Hub runs, chosen
by ``scripts/bench_scanners.py``, see docs/scanning.md). This module adds what the measurement
showed picklescan lacks: the format dispatch (PyTorch zip and legacy layouts, ``.npy``/``.npz``,
zips nested in zips), bounds on memory and work (large opcode arguments are skipped, not read;
opcode count and zip sizes are capped), a parse failure reported as ``error`` rather than passed
as clean, and a few dangerous and benign globals picklescan does not list (``EXTRA_DANGEROUS``,
``EXTRA_SAFE``). Nothing is imported from, called in or loaded out of a scanned file.
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

import numpy as np
from picklescan import scanner as _ps
from picklescan.relaxed_zipfile import RelaxedZipFile
from picklescan.torch import MAGIC_NUMBER as TORCH_MAGIC_NUMBER

__all__ = ["EXTENSIONS", "is_scannable", "scan_file", "summarise"]

SCANNER = f"picklescan {version('picklescan')}"

# Pickle-based formats, by extension. picklescan also reads .dat/.data as pickles, but on model
# hubs those are mostly other binaries (dlib, Kaldi, ...), and .zip/.7z are generic archives.
EXTENSIONS = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill",
                        ".npy", ".npz"})
TORCH_EXTENSIONS = frozenset({".bin", ".pt", ".pth", ".ckpt"})

# Globals that reach code execution and that picklescan 1.0.5 does not list as dangerous
# ({module: names}, "*" for the whole module and its submodules).
EXTRA_DANGEROUS: dict[str, frozenset[str] | str] = {
    "builtins": frozenset({"__import__"}),
    "__builtin__": frozenset({"__import__"}),
    "importlib": "*", "zipimport": "*", "site": "*", "codeop": "*", "code": "*",
    "inspect": frozenset({"getattr_static"}),
    "marshal": frozenset({"loads", "load"}),
    "types": frozenset({"FunctionType", "LambdaType"}),
    "_posixsubprocess": "*", "_ctypes": "*", "multiprocessing": "*",
    "torch.hub": "*",
    "dill._dill": frozenset({"_create_code", "_create_function"}),
    "joblib": frozenset({"load"}), "joblib.numpy_pickle": frozenset({"load"}),
}
# Globals that only rebuild data and that picklescan 1.0.5 calls merely suspicious: what plain
# pickles of bytes (protocol < 3), numpy arrays/scalars and torch state dicts import.
EXTRA_SAFE: dict[str, frozenset[str]] = {
    "_codecs": frozenset({"encode"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "torch._utils": frozenset({"_rebuild_parameter", "_rebuild_parameter_with_state",
                               "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3",
                               "_rebuild_qtensor", "_rebuild_device_tensor_from_numpy"}),
    "torch": frozenset({"Size", "device", "float16", "float32", "float64", "bfloat16", "half",
                        "float", "double", "int8", "int16", "int32", "int64", "uint8", "bool",
                        "long", "complex64", "complex128", "UntypedStorage"}),
}

# Bounds: a file can be many GB, a zip member can be a bomb.
ELIDE_BYTES = 1 << 20            # an opcode argument longer than this is skipped, not read
MAX_OPCODES = 2_000_000          # reads per pickle, >= opcodes: picklescan keeps ~100 B each
MAX_RETAINED_BYTES = 64 << 20    # argument bytes read into memory per pickle
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_DEPTH = 3
MAX_ZIP_RATIO = 200              # uncompressed / compressed size of a pickle member over ...
ZIP_RATIO_FLOOR = 16 << 20       # ... this size is a bomb
TORCH_LEGACY_PICKLES = 5         # magic, protocol, sys info, state, storage keys

# joblib writes the bytes of a numpy array raw into the pickle stream after this object.
JOBLIB_ARRAY = ("joblib.numpy_pickle", "NumpyArrayWrapper")

PICKLE_MAGIC = tuple(b"\x80" + bytes([p]) for p in range(2, 6))
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
NUMPY_MAGIC = b"\x93NUMPY"

Result = dict[str, Any]
# What reading a corrupt file raises (zipfile: RuntimeError for encryption, NotImplementedError
# for an unknown compression; numpy and pickletools: ValueError).
UNREADABLE: tuple[type[Exception], ...] = (OSError, ValueError, EOFError, zipfile.BadZipFile,
                                           NotImplementedError, RuntimeError)


class ScanLimit(Exception):
    """A bound on the scan's memory or work was reached."""


class _Elided(bytes):
    """An opcode argument that was skipped: it claims the skipped length and holds nothing, so
    pickletools's length checks pass and its decoders see an empty value."""

    size: int

    def __new__(cls, size: int, stands_in: bytes = b"") -> _Elided:
        obj = super().__new__(cls, stands_in)
        obj.size = size
        return obj

    def __len__(self) -> int:
        return self.size


class _Bounded(io.RawIOBase):
    """The stream picklescan walks: counts opcodes and retained bytes, skips long arguments,
    and serves picklescan's one-byte look-ahead (``read(1)`` then ``seek(-1, 1)``) itself, as a
    backward seek in a zip member would decompress it again from the start."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.reads = 0
        self.retained = 0
        self.limit: str | None = None
        self._last: bytes | None = b""  # the last byte read (None: the end), for seek(-1, 1)
        self._back = b""   # a byte pushed back by that seek

    def _count(self, data: bytes) -> bytes:
        self.reads += 1
        self.retained += len(data)
        if self.reads > MAX_OPCODES:
            self.limit = f"more than {MAX_OPCODES:,} opcodes in one pickle"
        elif self.retained > MAX_RETAINED_BYTES:
            self.limit = f"more than {MAX_RETAINED_BYTES >> 20} MiB of pickle arguments"
        if self.limit:
            raise ScanLimit(self.limit)
        self._last = data[-1:] if data else None
        return data

    def read(self, size: int | None = -1) -> bytes:
        if self.limit:
            return b""  # picklescan reads on after a failure: let it see the end
        back, self._back = self._back, b""
        if size is None or size < 0 or size > ELIDE_BYTES:
            self._last = b""
            want = None if size is None or size < 0 else size - len(back)
            return _Elided(len(back) + self._skip(want))
        if back:
            size -= len(back)
        return self._count(back + (self.raw.read(size) if size else b""))

    def readline(self, size: int | None = -1) -> bytes:
        if self.limit:
            return b""
        back, self._back = self._back, b""
        line = back if back == b"\n" else back + self.raw.readline(ELIDE_BYTES + 1)
        if len(line) <= ELIDE_BYTES or line.endswith(b"\n"):
            return self._count(line)
        skipped = len(line)
        while not line.endswith(b"\n") and line:
            line = self.raw.readline(ELIDE_BYTES)
            skipped += len(line)
        self._last = b""
        # Stands in as an empty quoted string, so every text-opcode reader accepts it.
        return _Elided(skipped, b"''\n" if line else b"")

    def _skip(self, size: int | None) -> int:
        if size is not None and _is_real_file(self.raw):
            start = self.raw.tell()
            end = self.raw.seek(0, os.SEEK_END)
            target = min(start + size, end)
            self.raw.seek(target)
            return target - start
        skipped = 0
        while size is None or skipped < size:
            want = ELIDE_BYTES if size is None else min(ELIDE_BYTES, size - skipped)
            chunk = self.raw.read(want)
            if not chunk:
                break
            skipped += len(chunk)
        return skipped

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR and offset == -1 and not self._back:
            if self._last is None:  # at the end: the look-ahead found nothing, nothing to undo
                return self.tell()
            if self._last:
                self._back, self._last = self._last, b""
                return self.tell()
        if whence == os.SEEK_CUR:
            offset -= len(self._back)
        self._back = self._last = b""
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell() - len(self._back)

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


@dataclass
class _Scan:
    globals: set[tuple[str, str]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    members: int = 0

    def pickles(self, raw: IO[bytes], where: str, count: int | None = None) -> None:
        """Walk the pickle(s) at ``raw``'s position: all stacked ones, or ``count`` of them."""
        stream = _Bounded(raw)
        for _ in range(count or 1):
            stream.reads = stream.retained = 0  # the bounds are per pickle
            try:
                self.globals |= _ps._list_globals(stream, multiple_pickles=count is None)
            except _ps.GenOpsError as exc:
                found = exc.globals or set()
                self.globals |= found
                why = stream.limit or exc.msg
                if JOBLIB_ARRAY in found and not stream.limit:
                    why = f"joblib's raw array bytes stop the opcode walk ({why})"
                self.problems.append(f"{where}: {why}")
                return
            except ScanLimit as exc:
                self.problems.append(f"{where}: {exc}")
                return

    def numpy(self, raw: IO[bytes], where: str) -> None:
        """A ``.npy``: the header is a Python literal read by numpy; only object arrays hold a
        pickle after it."""
        major, _ = np.lib.format.read_magic(raw)
        if major not in (1, 2, 3):
            raise ValueError(f"unknown .npy format version {major}")
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        _, _, dtype = read_header(raw)
        if dtype.hasobject:
            self.pickles(raw, where, count=1)

    def zip(self, raw: IO[bytes], where: str, depth: int) -> None:
        if depth > MAX_ZIP_DEPTH:
            self.problems.append(f"{where}: zips nested deeper than {MAX_ZIP_DEPTH}")
            return
        declared = _zip_entries(raw)
        if declared + self.members > MAX_ZIP_MEMBERS:
            raise ScanLimit(f"more than {MAX_ZIP_MEMBERS:,} zip members")
        with RelaxedZipFile(raw) as archive:
            infos = archive.infolist()
            self.members += len(infos)
            for info in infos:
                if info.is_dir():
                    continue
                try:
                    self.member(archive, info, f"{where}:{info.filename}", depth)
                except UNREADABLE as exc:  # one bad member must not hide the others
                    self.problems.append(f"{where}:{info.filename}: {type(exc).__name__}: {exc}")

    def member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str,
               depth: int) -> None:
        ext = PurePosixPath(info.filename).suffix.lower()
        with archive.open(info) as fh:
            magic = fh.read(8)
        is_pickle = ext in _ps._pickle_file_extensions or magic.startswith(PICKLE_MAGIC)
        is_numpy = ext == ".npy" or magic.startswith(NUMPY_MAGIC)
        is_zip = magic.startswith(ZIP_MAGIC)
        if not (is_pickle or is_numpy or is_zip):
            return  # tensor storages and other data: never unpickled by a loader
        if (info.file_size > ZIP_RATIO_FLOOR
                and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1)):
            self.problems.append(f"{where}: compression ratio over {MAX_ZIP_RATIO} (zip bomb)")
            return
        with archive.open(info) as fh:
            if is_zip:
                self.zip(fh, where, depth + 1)
            elif is_numpy:
                self.numpy(fh, where)
            else:
                self.pickles(fh, where)


def _is_real_file(raw: IO[bytes]) -> bool:
    """A file on disk, where seeking is cheap (in a zip member it means decompressing)."""
    try:
        raw.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _zip_entries(raw: IO[bytes]) -> int:
    """The entry count a zip's end record declares, read before zipfile lists every entry."""
    start = raw.tell()
    try:
        end = zipfile._EndRecData(raw)  # type: ignore[attr-defined]
    finally:
        raw.seek(start)
    if not end:
        raise zipfile.BadZipFile("no zip end-of-central-directory record")
    return int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]


def is_scannable(path: str) -> bool:
    """Whether a package file is a pickle-based format this module scans (by extension)."""
    return PurePosixPath(path).suffix.lower() in EXTENSIONS


def _listed(table: Mapping[str, Any], module: str, name: str) -> bool:
    names = table.get(module)
    if names is None and "." in module:  # a "*" module covers its submodules
        parts = module.split(".")
        if any(table.get(".".join(parts[:i])) == "*" for i in range(1, len(parts))):
            return True
    return names is not None and (names == "*" or name in names)


def is_dangerous(module: str, name: str) -> bool:
    """picklescan's dangerous list, ours, and names a scanner could not resolve."""
    return ("unknown" in (module, name) or _listed(_ps._unsafe_globals, module, name)
            or _listed(EXTRA_DANGEROUS, module, name))


def is_safe(module: str, name: str) -> bool:
    return _listed(_ps._safe_globals, module, name) or _listed(EXTRA_SAFE, module, name)


def scan_file(fs_path: Path, name: str) -> Result:
    """Scan the file at ``fs_path`` (``name``: its path in the package, whose extension gives
    the format). Never raises for bad input: an unreadable file is an ``error`` with a reason."""
    scan = _Scan()
    error: str | None = None
    try:
        with fs_path.open("rb") as fh:
            magic = fh.read(8)
            fh.seek(0)
            ext = PurePosixPath(name).suffix.lower()
            if not magic:
                error = "empty file"
            elif magic.startswith(ZIP_MAGIC):
                scan.zip(fh, name, depth=0)
            elif magic.startswith(NUMPY_MAGIC):
                scan.numpy(fh, name)
            elif ext in TORCH_EXTENSIONS and _torch_legacy(fh):
                scan.pickles(fh, name, count=TORCH_LEGACY_PICKLES)
            else:
                scan.pickles(fh, name)
    except ScanLimit as exc:
        error = str(exc)
    except UNREADABLE as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a scanner bug must not lose the rest of a package's scan
        error = f"unexpected {type(exc).__name__}: {exc}"
    names = sorted({f"{m}.{n}" for m, n in scan.globals})
    dangerous = sorted({f"{m}.{n}" for m, n in scan.globals if is_dangerous(m, n)})
    result: Result = {"globals": names, "dangerous": dangerous, "scanner": SCANNER}
    if dangerous:
        result["status"] = "unsafe"
    elif error or scan.problems:
        result["status"] = "error"
        result["reason"] = "; ".join(([error] if error else []) + scan.problems)[:500]
    elif any(not is_safe(m, n) for m, n in scan.globals):
        result["status"] = "suspicious"
    else:
        result["status"] = "safe"
    return result


def _torch_legacy(fh: IO[bytes]) -> bool:
    """Whether the file starts with the legacy ``torch.save`` magic-number pickle."""
    stream = _Bounded(fh)
    try:
        for op, arg, _ in pickletools.genops(cast(IO[bytes], stream)):
            if stream.reads > 64:
                break
            if op.name in ("BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG"):
                return bool(arg == TORCH_MAGIC_NUMBER)
    except (ValueError, ScanLimit):
        pass
    finally:
        fh.seek(0)
    return False


def summarise(scans: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """A package's scan summary from its files' scans."""
    out = {"scanned": 0, "unsafe": 0, "suspicious": 0, "errors": 0}
    for s in scans:
        out["scanned"] += 1
        status = s.get("status")
        if status == "unsafe":
            out["unsafe"] += 1
        elif status == "suspicious":
            out["suspicious"] += 1
        elif status == "error":
            out["errors"] += 1
    return out
