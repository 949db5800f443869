"""requirements.txt declares what the code imports, at minimums the tests were run on."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import pkgutil
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import ptmspiders

ROOT = Path(__file__).resolve().parent.parent
# Imported by the code but provided by a listed package (pydantic's core, boto3's botocore),
# or only for tests (a mongomock:// store URI; mongomock is in requirements-dev.txt).
PROVIDED = {"pydantic-core": "pydantic", "botocore": "boto3", "mongomock": "requirements-dev.txt"}


def requirements() -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in
             (ROOT / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def minimum(req: Requirement) -> Version:
    (low,) = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return low


@pytest.mark.parametrize("req", requirements(), ids=str)
def test_the_installed_version_meets_the_declared_minimum(req: Requirement) -> None:
    """The minimums were raised to the releases the suite was run on; the environment must
    meet them (a newer release published later is allowed: pins are minimums, not locks)."""
    installed = Version(md.version(req.name))
    assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed}"
    assert installed >= minimum(req)


def imported_distributions() -> dict[str, set[str]]:
    """Distributions (canonical names) of the third-party top-level modules the package
    imports, with the files that import each."""
    provided_by = md.packages_distributions()
    out: dict[str, set[str]] = {}
    for path in Path(ptmspiders.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in ("ptmspiders", "__future__"):
                    continue
                for dist in provided_by.get(top, [top]):
                    out.setdefault(canonicalize_name(dist), set()).add(path.name)
    return out


def test_every_imported_package_is_declared() -> None:
    declared = {canonicalize_name(r.name) for r in requirements()}
    missing = {d: sorted(files) for d, files in imported_distributions().items()
               if d not in declared and d not in PROVIDED}
    assert not missing, f"imported but not in requirements.txt: {missing}"


def test_every_module_imports() -> None:
    for info in pkgutil.walk_packages(ptmspiders.__path__, "ptmspiders."):
        if not info.name.endswith(".__main__"):  # runs the command line
            importlib.import_module(info.name)
