"""`paraminspect get` and `stats` on the ~1 GiB checkpoint, against torch.

    .venv/bin/python benchmarks/bench_values.py [--repeat N]

Goals (issue 3): `get` of one 16 MiB tensor >= 8x faster than
torch.load(mmap=True, weights_only=True) + indexing + print; `stats` over the
whole 1 GiB file with peak RSS <= 128 MiB. Each contender is a whole process.
"""

from __future__ import annotations

import argparse
import statistics

from common import PARAMINSPECT, Measurement, big_checkpoints, markdown_table, python_script, run_timed

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


def interleaved(contenders: dict[str, list[str]], repeat: int) -> dict[str, Measurement]:
    """Alternate the contenders run by run (after one warm-up each), so that load
    from other processes on this shared machine falls on all of them alike."""
    for label, argv in contenders.items():
        run_timed(label, argv, repeat=1, warmup=0)
    runs: dict[str, list[Measurement]] = {label: [] for label in contenders}
    for _ in range(repeat):
        for label, argv in contenders.items():
            runs[label].append(run_timed(label, argv, repeat=1, warmup=0))
    return {
        label: Measurement(label, statistics.median(m.median_s for m in ms), max(m.peak_rss_mib for m in ms))
        for label, ms in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
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
