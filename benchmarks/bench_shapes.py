"""`paraminspect shapes` against listing scripts built on torch.load(mmap=True)
and safe_open(framework="pt"), on a ~1 GiB checkpoint and a ~10 MiB sibling.

    .venv/bin/python benchmarks/bench_shapes.py [--repeat N]

Goals (issue 2): >= 12x faster than the torch baselines on 1 GiB, peak RSS
<= 48 MiB, and 1 GiB / 10 MiB time ratio <= 1.3.
"""

from __future__ import annotations

import argparse

from common import (
    PARAMINSPECT,
    Measurement,
    big_checkpoints,
    markdown_table,
    python_script,
    run_timed,
    small_checkpoints,
)

TORCH_LISTING = """
import sys, torch
sd = torch.load(sys.argv[1], mmap=True, weights_only=True)
for name, t in sd.items():
    print(name, t.dtype, tuple(t.shape), t.numel(), t.numel() * t.element_size())
"""

SAFE_OPEN_LISTING = """
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="pt") as f:
    for name in f.keys():
        s = f.get_slice(name)
        print(name, s.get_dtype(), s.get_shape())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    big, small = big_checkpoints(), small_checkpoints()
    rows: list[list[str]] = []
    for fmt, baseline_label, baseline_code in (
        ("pt", "torch.load(mmap=True)", TORCH_LISTING),
        ("safetensors", 'safe_open(framework="pt")', SAFE_OPEN_LISTING),
    ):
        ours_big = run_timed("paraminspect", [PARAMINSPECT, "shapes", str(big[fmt])], repeat)
        ours_small = run_timed("paraminspect", [PARAMINSPECT, "shapes", str(small[fmt])], repeat)
        base: Measurement = run_timed(baseline_label, [*python_script(baseline_code), str(big[fmt])], repeat)
        rows.append(
            [
                f".{fmt} 1 GiB",
                f"{ours_big.median_s * 1000:.0f} ms",
                f"{ours_big.peak_rss_mib:.0f} MiB",
                f"{baseline_label}: {base.median_s * 1000:.0f} ms, {base.peak_rss_mib:.0f} MiB",
                f"{base.median_s / ours_big.median_s:.1f}x",
                f"{ours_big.median_s / ours_small.median_s:.2f}",
            ]
        )
    headers = ["file", "paraminspect shapes", "peak RSS", "baseline", "speed-up", "1 GiB / 10 MiB time"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
