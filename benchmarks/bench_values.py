"""`paraminspect get` and `stats` on the ~1 GiB checkpoint, against torch.

    .venv/bin/python benchmarks/bench_values.py [--repeat N]

    .venv/bin/python benchmarks/bench_values.py --ratios [--before DIR] [--repeat N]

Goals (issue 3): `get` of one 16 MiB tensor >= 8x faster than
torch.load(mmap=True, weights_only=True) + indexing + print; `stats` over the
whole 1 GiB file with peak RSS <= 128 MiB. Each contender is a whole process.

``--ratios`` (issue 16) puts side by side, on the 1 GiB .safetensors: reading
the file (16 MiB preads, nothing decoded), `stats`, `stats --hist`, `stats
--percentiles 50`, and `stats` of another checkout of the package (``--before``:
a directory holding a ``paraminspect/`` package, e.g. from
``git archive main paraminspect | tar -x -C DIR``); and `diff` of the file
against a copy with every value scaled by 1.001, without and with `--metrics`.
Goals: stats <= 3x the read, --hist <= 1.3x stats, --metrics <= 1.2x diff.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    PARAMINSPECT,
    Measurement,
    big_checkpoints,
    markdown_table,
    python_script,
    run_interleaved,
)

NAME = "layers.7.weight"  # fp32 [4096, 1024]: 16 MiB

TORCH_GET = """
import sys, torch
sd = torch.load(sys.argv[1], mmap=True, weights_only=True)
print(sys.argv[2])
print(sd[sys.argv[2]])
"""

SAFE_OPEN_GET = """
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="pt") as f:
    print(sys.argv[2])
    print(f.get_tensor(sys.argv[2]))
"""

# What a person would write to get the same numbers with torch (finite values,
# float64 accumulation), for context on time and memory.
TORCH_STATS = """
import sys, torch
sd = torch.load(sys.argv[1], mmap=True, weights_only=True)
for name, t in sd.items():
    x = t.double()
    x = x[torch.isfinite(x)]
    print(name, x.min().item(), x.max().item(), x.mean().item(), x.std().item(),
          x.abs().mean().item(), torch.linalg.vector_norm(x).item(), int((t == 0).sum()))
"""


READ = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
buffer = bytearray(16 << 20)
view, offset = memoryview(buffer), 0
while n := os.preadv(fd, [view], offset):
    offset += n
"""

SCALE = """
import shutil, sys
import numpy as np
from paraminspect import open_checkpoint
source, target = sys.argv[1], sys.argv[2]
refs = open_checkpoint(source).tensors
shutil.copyfile(source, target)
for ref in refs.values():  # every float32 element scaled by 1.001: all differ
    begin, end = ref.byte_range()
    values = np.memmap(target, dtype="<f4", mode="r+", offset=begin, shape=((end - begin) // 4,))
    values *= np.float32(1.001)
    values.flush()
    del values
"""


def ratios(repeat: int, before: Path | None) -> None:
    """stats against the read, --hist against stats, diff --metrics against diff (module docstring)."""
    big = big_checkpoints()["safetensors"]
    contenders = {
        "read (16 MiB preads)": [*python_script(READ), str(big)],
        "stats": [PARAMINSPECT, "stats", str(big)],
        "stats --hist": [PARAMINSPECT, "stats", "--hist", str(big)],
        "stats --percentiles 50": [PARAMINSPECT, "stats", "--percentiles", "50", str(big)],
    }
    if before is not None:
        # The console script's entry (paraminspect.cli:run, with its start-up GC handling),
        # imported from ``before``: sys.path's first entry, ahead of this checkout.
        code = f"import sys; sys.path.insert(0, {str(before)!r}); from paraminspect.cli import run; run()"
        contenders["stats (--before)"] = [sys.executable, "-c", code, "stats", str(big)]
    got = interleaved(contenders, repeat)
    base = {"stats": got["read (16 MiB preads)"], "stats --hist": got["stats"]}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        scaled = Path(tmp) / "scaled.safetensors"
        subprocess.run([*python_script(SCALE), str(big), str(scaled)], check=True)
        diffs = interleaved(
            {
                "diff (every value differs)": [PARAMINSPECT, "diff", str(big), str(scaled)],
                "diff --metrics": [PARAMINSPECT, "diff", "--metrics", str(big), str(scaled)],
            },
            repeat,
        )
        shutil.rmtree(tmp, ignore_errors=True)
    got |= diffs
    base["diff --metrics"] = diffs["diff (every value differs)"]
    base["stats (--before)"] = got["stats"]
    rows = []
    for label, m in got.items():
        against = base.get(label)
        ratio = f"{m.median_s / against.median_s:.2f}x {against.label}" if against is not None else ""
        rows.append([label, f"{m.median_s * 1000:.0f} ms", f"{m.peak_rss_mib:.0f} MiB", ratio])
    print(markdown_table(["task (1 GiB .safetensors)", "median", "peak RSS", "ratio"], rows))


def interleaved(contenders: dict[str, list[str]], repeat: int) -> dict[str, Measurement]:
    """:func:`common.run_interleaved` (round-robin after one warm-up each), by label."""
    return {m.label: m for m in run_interleaved(list(contenders.items()), repeat=repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ratios", action="store_true", help="stats/hist/diff --metrics ratios only")
    parser.add_argument("--before", type=Path, help="with --ratios: time stats of this package directory too")
    args = parser.parse_args()
    repeat = args.repeat
    if args.ratios:
        ratios(repeat, args.before)
        return
    big = big_checkpoints()
    rows: list[list[str]] = []
    for fmt, label, code in (
        ("pt", "torch.load(mmap=True, weights_only=True) + index + print", TORCH_GET),
        ("safetensors", 'safe_open(framework="pt").get_tensor + print', SAFE_OPEN_GET),
    ):
        got = interleaved(
            {"ours": [PARAMINSPECT, "get", str(big[fmt]), NAME], "base": [*python_script(code), str(big[fmt]), NAME]},
            repeat,
        )
        ours, base = got["ours"], got["base"]
        rows.append(
            [
                f"get {NAME} (16 MiB), .{fmt} 1 GiB",
                f"{ours.median_s * 1000:.0f} ms",
                f"{ours.peak_rss_mib:.0f} MiB",
                f"{label}: {base.median_s * 1000:.0f} ms, {base.peak_rss_mib:.0f} MiB",
                f"{base.median_s / ours.median_s:.1f}x",
            ]
        )
    stats_repeat = max(1, min(repeat, 3))
    for fmt in ("pt", "safetensors"):
        contenders = {"ours": [PARAMINSPECT, "stats", str(big[fmt])]}
        if fmt == "pt":
            contenders["base"] = [*python_script(TORCH_STATS), str(big[fmt])]
        got = interleaved(contenders, stats_repeat)
        ours = got["ours"]
        row = [
            f"stats (all 192 tensors), .{fmt} 1 GiB",
            f"{ours.median_s * 1000:.0f} ms",
            f"{ours.peak_rss_mib:.0f} MiB",
        ]
        if "base" in got:
            label = "torch.load(mmap=True) + per-tensor float64 ops"
            base = got["base"]
            row += [
                f"{label}: {base.median_s * 1000:.0f} ms, {base.peak_rss_mib:.0f} MiB",
                f"{base.median_s / ours.median_s:.1f}x",
            ]
        else:
            row += ["", ""]
        rows.append(row)
    print(markdown_table(["task", "paraminspect", "peak RSS", "baseline", "speed-up"], rows))


if __name__ == "__main__":
    main()
