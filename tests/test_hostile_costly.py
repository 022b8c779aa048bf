"""Costly hostile files (tests/hostile_costly.py), each command in a forked child
(tests/hostile_driver.py): the expected exit and one-line reason, within
2 s and 256 MiB each under default limits (measured generously: a hang guard
on a shared machine, not a benchmark)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import run_hostile_jobs
from tests.hostile_costly import LONG_NAME, MAX_RSS_MIB, MAX_SECONDS, Costly, costly

CASES = costly()
# The bound is for an ordinary machine; the shared test VM runs Python ~4x slower
# (math.prod of one int: 500 ns, against ~60-100 ns). CPU time, not wall time, is
# compared, so other work on the machine does not count against a case.
SLACK = 4.0


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("costly")
    jobs, expected = [], {}
    for case in CASES:
        folder = root / case.id
        folder.mkdir()
        paths = case.build(folder)
        for n, (argv, code, reason) in enumerate(case.jobs):
            job_id = f"{case.id}:{n}"
            args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
            jobs.append({"id": job_id, "argv": args, "headroom_mib": 1024, "timeout": 30})
            expected[job_id] = (args, code, reason)
    return {"expected": expected, **run_hostile_jobs(root, jobs, timeout=900)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_costly_file_is_cheap_or_refused(outcomes: dict[str, Any], case: Costly) -> None:
    for n in range(len(case.jobs)):
        args, code, reason = outcomes["expected"][f"{case.id}:{n}"]
        result = outcomes[f"{case.id}:{n}"]
        where = f"{args}: { {k: v for k, v in result.items() if k != 'out'} } out={result['out'][:300]!r}"
        assert result["signal"] is None, where
        assert result["code"] == code, where
        assert "Traceback" not in result["err"], where
        lines = result["err"].splitlines()
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("paraminspect: error: "), where
            assert reason in lines[0], where
        else:
            assert [line for line in lines if not line.startswith("paraminspect: note: ")] == [], where
        assert result["cpu_seconds"] < MAX_SECONDS * SLACK, where
        assert result["seconds"] < 30, where  # the hang guard, whatever the machine's load
        assert result["maxrss_mib"] < MAX_RSS_MIB, where
    assert outcomes["torch"] is False


def test_long_name_is_printed_once_not_padded_into_every_row(outcomes: dict[str, Any]) -> None:
    shapes = outcomes["long_name:0"]
    assert shapes["code"] == 0
    # 101 rows: before, every row was padded to the 4 MiB name (~400 MiB of output).
    assert len(shapes["out"]) < 2 * LONG_NAME
    assert sum(len(line) > 1000 for line in shapes["out"].splitlines()) == 1
