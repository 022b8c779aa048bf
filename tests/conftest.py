"""Shared fixtures: sample paths, a CLI runner (in-process and as a subprocess)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from paraminspect.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str | Path) -> Result:
    """Run the CLI in-process, capturing stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


def run_script(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would."""
    exe = shutil.which("paraminspect", path=str(Path(sys.executable).parent))
    assert exe, "paraminspect console script is not installed next to this python"
    command = [exe, *map(str, args)]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def cli():  # type: ignore[no-untyped-def]
    return run_cli
