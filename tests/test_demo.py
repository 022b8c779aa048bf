"""The README's demo command runs cleanly: CI fails if the demo breaks."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_script_runs_every_command() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("$ paraminspect ")]
    assert len(commands) == (ROOT / "scripts" / "demo.sh").read_text().count("\nrun ")
    # The expected non-zero exits: unsafe globals found, and three diffs that find differences.
    assert result.stdout.count("[exit 1]") == 4
    assert "[exit 2]" not in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert "4 dtype changed, 0 shape changed, 0 values changed, 0 equal" in result.stdout
