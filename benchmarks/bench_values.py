"""`paraminspect get` and `stats` on the ~1 GiB checkpoint, against torch.

    .venv/bin/python benchmarks/bench_values.py [--repeat N]

Goals (issue 3): `get` of one 16 MiB tensor >= 8x faster than
torch.load(mmap=True, weights_only=True) + indexing + print; `stats` over the
whole 1 GiB file with peak RSS <= 128 MiB. Each contender is a whole process.
"""

from __future__ import annotations

import argparse

from common import PARAMINSPECT, big_checkpoints, markdown_table, python_script, run_timed

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
        ours = run_timed("get", [PARAMINSPECT, "get", str(big[fmt]), NAME], repeat)
        base = run_timed(label, [*python_script(code), str(big[fmt]), NAME], repeat)
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
        ours = run_timed("stats", [PARAMINSPECT, "stats", str(big[fmt])], stats_repeat)
        row = [
            f"stats (all 192 tensors), .{fmt} 1 GiB",
            f"{ours.median_s * 1000:.0f} ms",
            f"{ours.peak_rss_mib:.0f} MiB",
        ]
        if fmt == "pt":
            base = run_timed("torch stats", [*python_script(TORCH_STATS), str(big[fmt])], stats_repeat)
            label = "torch.load(mmap=True) + per-tensor float64 ops"
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
