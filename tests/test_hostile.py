"""The hostile corpus, each file under every relevant command, each run in a forked
child with a memory cap and a timeout: the expected exit code, exactly one stderr
line, no traceback, no code run, bounded time and memory, torch never imported."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import run_hostile_jobs
from tests.hostile_corpus import Case, corpus

CASES = corpus()
MAX_SECONDS = 10.0
HANG_SECONDS = 30.0
MAX_RSS_MIB = 700.0


def _commands(case: Case) -> tuple[str, ...]:
    return case.commands if "scan" in case.commands else (*case.commands, "scan")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "pwned"
    jobs = []
    for case in CASES:
        path = root / f"{case.id}.pt"
        case.build(path, marker)
        jobs.extend({"id": f"{case.id}:{c}", "argv": [c, str(path)]} for c in _commands(case))
    return {"root": root, "marker": marker, **run_hostile_jobs(root, jobs, timeout=600)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_file(outcomes: dict[str, Any], case: Case) -> None:
    path = outcomes["root"] / f"{case.id}.pt"
    for command in _commands(case):
        result = outcomes[f"{case.id}:{command}"]
        scanning = command == "scan"
        code = case.scan_code if scanning and case.scan_code is not None else case.code
        reason = case.scan_reason if scanning and case.scan_code is not None else case.reason
        where = f"{command}: {result}"
        assert result["signal"] is None, where
        assert result["code"] == code, where
        assert "Traceback" not in result["err"], where
        lines = result["err"].splitlines()
        if code == 0:
            assert lines == [], where
        else:
            assert len(lines) == 1, where
            prefix = "paraminspect: scan: " if code == 1 else f"paraminspect: error: {path}: "
            assert lines[0].startswith(prefix), where
            assert reason in lines[0], where
        if code == 2 and not scanning:
            assert result["out"] == "", where
        assert "\x1b" not in result["out"], where
        # CPU time: on a shared machine, wall time measures the other jobs too.
        assert result["cpu_seconds"] < MAX_SECONDS, where
        assert result["seconds"] < HANG_SECONDS, where
        assert result["maxrss_mib"] < MAX_RSS_MIB, where
    assert not outcomes["marker"].exists()
    assert outcomes["torch"] is False


def test_inert_placeholders_are_shown_for_code_the_pickle_wanted(outcomes: dict[str, Any]) -> None:
    assert "<object posix.system>" in outcomes["global_os_system:tree"]["out"]
    assert "<object builtins.eval>" in outcomes["stack_global_eval:tree"]["out"]
    assert "<object builtins.bytearray>" in outcomes["bytearray_2gib:tree"]["out"]
    assert "└── 0  <object <cycle>>" in outcomes["self_referencing_list:tree"]["out"]
    scan = outcomes["getattr_chain:scan"]["out"]
    assert "builtins.getattr" in scan and "builtins.__import__" in scan
    assert "<extension code 1>" in outcomes["ext_codes:scan"]["out"]
