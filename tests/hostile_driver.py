"""Run CLI invocations on hostile files, each in a forked child with a memory cap and a timeout.

    python -m tests.hostile_driver JOBS.json RESULTS.json

One fresh interpreter (no torch) imports paraminspect once; every job forks
from it, so each runs isolated under RLIMIT_AS and an alarm at in-process
speed. Results record exit code, stdout, stderr, wall time, peak RSS and the
signal that ended the child, if any.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

import paraminspect.cli

MIB = 1 << 20


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(argv: list[str], out: int, err: int, headroom: int, timeout: int) -> None:
    os.dup2(out, 1)
    os.dup2(err, 2)
    limit = _vm_size() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.alarm(timeout)
    try:
        code = paraminspect.cli.main(argv)
    except BaseException:
        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_job(job: dict[str, Any], workdir: str) -> dict[str, Any]:
    out_path = os.path.join(workdir, "out")
    err_path = os.path.join(workdir, "err")
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            _child(job["argv"], out.fileno(), err.fileno(), job.get("headroom_mib", 512) * MIB, job.get("timeout", 20))
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {
        "id": job["id"],
        "code": os.waitstatus_to_exitcode(status),
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "out": stdout.decode("utf-8", "replace"),
        "err": stderr.decode("utf-8", "replace"),
        "seconds": elapsed,
        "maxrss_mib": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def _warm_up() -> None:
    """Run each command once on good samples so lazy imports happen before forking."""
    import contextlib
    import io

    samples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_models")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for command in ("tree", "shapes", "scan"):
            for name in ("mlp.pt", "mlp.safetensors"):
                paraminspect.cli.main([command, os.path.join(samples, name)])


def main() -> None:
    jobs_path, results_path = sys.argv[1], sys.argv[2]
    _warm_up()
    with open(jobs_path) as fh:
        jobs = json.load(fh)
    sys.stdout.flush()
    with tempfile.TemporaryDirectory() as workdir:
        results = [run_job(job, workdir) for job in jobs]
    summary = {"results": results, "torch_imported": "torch" in sys.modules}
    with open(results_path, "w") as fh:
        json.dump(summary, fh)


if __name__ == "__main__":
    main()
