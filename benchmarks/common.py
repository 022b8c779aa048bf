"""Shared benchmark helpers: cached test checkpoints and whole-process measurement.

Every benchmark runs each contender as a separate process (as a user would),
several times, and reports the median wall time and the peak RSS of the child.
"""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Measure the tool as installed: byte-compiled. An editable install leaves the
# package as source, and with PYTHONDONTWRITEBYTECODE set every measured run
# would pay ~20 ms to compile it again.
compileall.compile_dir(HERE.parent / "paraminspect", quiet=1)
CACHE = HERE / ".cache"
PYTHON = sys.executable
PARAMINSPECT = str(Path(PYTHON).parent / "paraminspect")


@dataclass(frozen=True)
class Measurement:
    label: str
    median_s: float
    peak_rss_mib: float
    # user + system CPU seconds: steadier than wall time on a shared machine
    median_cpu_s: float = 0.0


# A minimal launcher (python -S, no imports beyond os/sys/time) forks and execs
# the command. Measuring from this small process matters: a forked child's peak
# RSS starts at its parent's size, so forking from a benchmark that has imported
# torch would report torch's footprint for every contender.
_LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])  # PATH lookup: contenders such as cp are given by name
    finally:
        os._exit(127)  # exec failed: never let a 0-second non-run pass as a measurement
_, status, usage = os.wait4(pid, 0)
cpu = usage.ru_utime + usage.ru_stime
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status), cpu)
"""


def run_timed(
    label: str, argv: list[str], repeat: int = 5, warmup: int = 1, ok_codes: tuple[int, ...] = (0, 1)
) -> Measurement:
    """Median wall time and max peak RSS of ``argv`` run ``repeat`` times (after warm-up)."""
    times: list[float] = []
    cpu: list[float] = []
    peak = 0.0
    for i in range(warmup + repeat):
        proc = subprocess.run([PYTHON, "-S", "-c", _LAUNCHER, *argv], capture_output=True, text=True, check=False)
        elapsed, rss_kib, code, cpu_s = proc.stdout.split()
        if int(code) == 127 or int(code) not in ok_codes:
            raise SystemExit(f"{label}: {' '.join(argv)} failed ({code}): {proc.stderr}")
        if i >= warmup:
            times.append(float(elapsed))
            cpu.append(float(cpu_s))
            peak = max(peak, int(rss_kib) / 1024)  # Linux reports KiB
    return Measurement(label, statistics.median(times), peak, statistics.median(cpu))


def run_interleaved(contenders: list[tuple[str, list[str]]], repeat: int = 5, warmup: int = 1) -> list[Measurement]:
    """Like :func:`run_timed` for several commands, run round-robin (one run of each per round),
    so a burst of load from other users of the machine hits every contender alike."""
    runs: dict[str, list[Measurement]] = {label: [] for label, _ in contenders}
    for i in range(warmup + repeat):
        for label, argv in contenders:
            m = run_timed(label, argv, repeat=1, warmup=0)
            if i >= warmup:
                runs[label].append(m)
    return [
        Measurement(
            label,
            statistics.median(m.median_s for m in ms),
            max(m.peak_rss_mib for m in ms),
            statistics.median(m.median_cpu_s for m in ms),
        )
        for label, ms in runs.items()
    ]


def python_script(code: str) -> list[str]:
    return [PYTHON, "-c", code]


def _write_pair(stem: str, big_shape: tuple[int, int], count: int) -> dict[str, Path]:
    """A state dict of ``count`` fp32 matrices plus small tensors, saved in both formats."""
    pt, st = CACHE / f"{stem}.pt", CACHE / f"{stem}.safetensors"
    if pt.exists() and st.exists():
        # Before importing torch: children forked from a process that imported it
        # inherit its ~200 MiB peak RSS, which would then show in every measurement.
        return {"pt": pt, "safetensors": st}
    import torch
    from safetensors.torch import save_file

    CACHE.mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    for i in range(count):
        state[f"layers.{i}.weight"] = torch.randn(big_shape, generator=generator)
        state[f"layers.{i}.bias"] = torch.randn(big_shape[0], generator=generator)
        state[f"layers.{i}.norm.weight"] = torch.ones(big_shape[1])
    # Write under temporary names and rename: concurrent benchmark runs share the cache.
    torch.save(state, pt.with_suffix(".pt.tmp"))
    save_file(state, str(st.with_suffix(".safetensors.tmp")))
    pt.with_suffix(".pt.tmp").replace(pt)
    st.with_suffix(".safetensors.tmp").replace(st)
    return {"pt": pt, "safetensors": st}


def big_checkpoints() -> dict[str, Path]:
    """~1 GiB: 64 x fp32 [4096, 1024] plus small tensors (192 tensors), both formats."""
    return _write_pair("big_1g", (4096, 1024), 64)


def small_checkpoints() -> dict[str, Path]:
    """~10 MiB sibling with the same tensor count and names."""
    return _write_pair("small_10m", (200, 200), 64)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, rule, *body])
