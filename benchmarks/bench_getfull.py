"""`paraminspect get --full` of one 16 MiB tensor of the ~1 GiB checkpoint: time and peak RSS.

    .venv/bin/python benchmarks/bench_getfull.py [--repeat N] [--command EXE] [--torch]

Goal: the streamed text keeps peak RSS well under 128 MiB (holding every value
as a Python number took ~430 MiB for this tensor) without getting slower.
``--command`` measures another build (e.g. a wrapper running an older
checkout) the same way; ``--torch`` adds torch's own full print for context.
Each contender is a whole process; output goes to /dev/null.
"""

from __future__ import annotations

import argparse

from common import PARAMINSPECT, big_checkpoints, markdown_table, python_script, run_timed

NAME = "layers.7.weight"  # fp32 [4096, 1024]: 16 MiB, 62 MB of text

TORCH_FULL = """
import sys, torch
torch.set_printoptions(profile="full")
sd = torch.load(sys.argv[1], mmap=True, weights_only=True)
print(sd[sys.argv[2]])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--command", default=PARAMINSPECT, help="paraminspect executable to measure")
    parser.add_argument("--torch", action="store_true", help="also time torch.load + print with profile='full'")
    args = parser.parse_args()
    big = big_checkpoints()
    rows: list[list[str]] = []
    for fmt in ("pt", "safetensors"):
        argv = [args.command, "get", str(big[fmt]), NAME, "--full"]
        m = run_timed(f"get --full .{fmt}", argv, repeat=args.repeat)
        task = f"get --full {NAME} (16 MiB), .{fmt} 1 GiB"
        rows.append([task, f"{m.median_s:.2f} s", f"{m.median_cpu_s:.2f} s", f"{m.peak_rss_mib:.0f} MiB"])
    if args.torch:
        m = run_timed("torch", [*python_script(TORCH_FULL), str(big["pt"]), NAME], repeat=args.repeat)
        task = f"torch.load(mmap=True) + print, profile='full' {NAME}, .pt"
        rows.append([task, f"{m.median_s:.2f} s", f"{m.median_cpu_s:.2f} s", f"{m.peak_rss_mib:.0f} MiB"])
    print(markdown_table(["task", "wall (median)", "CPU (median)", "peak RSS"], rows))


if __name__ == "__main__":
    main()
