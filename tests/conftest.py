"""Shared fixtures: sample paths, a CLI runner (in-process and as a subprocess)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from paraminspect.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_hostile_jobs(root: Path, jobs: list[dict[str, Any]], timeout: int) -> dict[str, Any]:
    """Run CLI jobs on hostile files through ``tests.hostile_driver`` (a fresh interpreter,
    each job in a capped child): results by job id, and ``torch``: whether torch was imported."""
    (root / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run(
        [sys.executable, "-m", "tests.hostile_driver", str(root / "jobs.json"), str(root / "results.json")],
        cwd=ROOT,
        check=True,
        timeout=timeout,
    )
    summary = json.loads((root / "results.json").read_text())
    return {"torch": summary["torch_imported"], **{r["id"]: r for r in summary["results"]}}


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
