"""The layout's import contracts hold, and each one fails when its rule is broken.

A contract that never fails proves nothing, so every rule in
``[tool.importlinter]`` is shown to catch one planted import in a copy of the
package. Expected verdicts come from import-linter, not from paraminspect.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# (module file to plant in, the planted line, the contract that must break)
PLANTED = [
    ("formats/safetensors.py", "from paraminspect.inspect import tree", "formats-below-commands"),
    ("formats/safetensors.py", "from paraminspect.inspect import tree", "layers"),
    ("output/report.py", "from paraminspect.formats import opening", "layers"),
    ("inspect/tree.py", "from paraminspect.compare import diff", "layers"),
    ("parallel.py", "from paraminspect.io import source", "layers"),
    ("naming/select.py", "from paraminspect.naming import order", "acyclic"),
    ("formats/magic.py", "import numpy", "header-only-path"),
    ("io/source.py", "import ml_dtypes", "header-only-path"),
    ("compare/tolerance.py", "import torch", "torch-only-in-pt-writer"),
    ("output/render.py", "import typer", "typer-only-in-cli"),
]


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "paraminspect", tmp_path / "paraminspect", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(where: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--no-cache", *(a for c in contracts for a in ("--contract", c))]
    return subprocess.run(
        args,
        cwd=where,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold_on_the_package() -> None:
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(("module", "line", "contract"), PLANTED, ids=[f"{c}:{m}" for m, _, c in PLANTED])
def test_a_planted_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = _copy(tmp_path)
    assert _lint(tree, contract).returncode == 0  # the copy itself keeps the contract
    target = tree / "paraminspect" / module
    # Planted inside a function: lazy imports count too (only module level is ruff's business).
    target.write_text(target.read_text() + f"\n\ndef _planted() -> None:\n    {line}  # noqa\n")
    ast.parse(target.read_text())
    proc = _lint(tree, contract)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BROKEN" in proc.stdout and "1 broken" in proc.stdout


def test_the_root_holds_only_the_face_and_the_core() -> None:
    modules = sorted(p.name for p in (ROOT / "paraminspect").glob("*.py"))
    assert modules == [
        "__init__.py",
        "__main__.py",
        "dtypes.py",
        "errors.py",
        "interrupts.py",
        "inttext.py",
        "lazy.py",
        "limits.py",
        "parallel.py",
    ]
    for package in (ROOT / "paraminspect").rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(package.read_text()))
        assert doc and len(doc) > 80, f"{package} says what its folder owns"
