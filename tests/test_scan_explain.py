"""``scan --explain`` and inconclusive scans (exit 2, never clean)."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from tests.conftest import SAMPLES, run_cli, run_script


class _System:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo owned",))


def _evil(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _System()}, protocol=2))
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")
    return path


def test_a_shell_command_is_explained_as_one(tmp_path: Path) -> None:
    evil = _evil(tmp_path / "evil.pt")
    system = f"{os.system.__module__}.system"  # posix.system here, as pickle names it
    result = run_cli("scan", evil, "--explain", "--unsafe-only")
    assert result.code == 1
    line = result.out.splitlines()[-1]
    assert line.startswith(f"{evil}: {system}: torch.load(weights_only=False) would import ")
    assert f"call {system}: it can run a shell command. Instead: do not load it;" in line
    doc = json.loads(run_cli("scan", evil, "--explain", "-f", "json").out)
    (ref,) = [r for r in doc["files"][0]["references"] if r["status"] == "unsafe"]
    assert "run a shell command" in ref["explanation"]["load"] and "weights_only=True" in ref["explanation"]["instead"]
    plain = json.loads(run_cli("scan", evil, "-f", "json").out)
    assert all("explanation" not in r for r in plain["files"][0]["references"])  # only when asked


def test_training_state_is_told_apart(tmp_path: Path) -> None:
    result = run_cli("scan", SAMPLES / "trainer_checkpoint.pt", "--explain")
    assert result.code == 1
    assert "argparse.Namespace: torch.load(weights_only=False) would rebuild an argparse.Namespace" in result.out
    torch.save({"rng": np.random.default_rng(0).random(3), "w": torch.ones(2)}, tmp_path / "rng.pt")
    result = run_cli("scan", tmp_path / "rng.pt", "--explain", "-f", "json")
    assert result.code == 0  # numpy array data is not a finding
    refs = [r for r in json.loads(result.out)["files"][0]["references"] if r["status"] == "numpy-data"]
    assert refs and all(r["name"].startswith("numpy") for r in refs)
    assert all("runs no code of the file's choosing" in r["explanation"]["load"] for r in refs)


def test_a_scan_that_cannot_finish_is_inconclusive(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes((SAMPLES / "mlp.pt").read_bytes()[:300])
    result = run_script("scan", cut, SAMPLES / "mlp.pt", "-f", "json")
    doc = json.loads(result.stdout)
    assert result.returncode == 2
    assert [f["status"] for f in doc["files"]] == ["inconclusive", "clean"]
    assert doc["summary"]["inconclusive"] == 1 and doc["summary"]["clean"] == 1
    explained = run_cli("scan", cut, "--explain")
    assert explained.code == 2 and "inconclusive" in explained.out.splitlines()[2]
    assert explained.out.splitlines()[-1].startswith(f"{cut}: inconclusive: the scan stopped (")


def test_a_limit_hit_is_inconclusive_not_clean() -> None:
    result = run_cli("--max-pickle-opcodes", "5", "scan", SAMPLES / "mlp.pt", "-f", "json")
    doc = json.loads(result.out)
    assert result.code == 2 and doc["files"][0]["status"] == "inconclusive" and doc["summary"]["clean"] == 0
