"""`paraminspect diff` against a script that torch.loads both files and compares key by key.

    .venv/bin/python benchmarks/bench_diff.py [--repeat N]

Cases, on the cached ~1 GiB checkpoint (64 x fp32 [4096, 1024] + small tensors):
  1. two .pt files differing in one element (a copy of the cached file with
     four bytes of one tensor patched), exit 1 expected;
  2. the .pt against the .safetensors of the same weights, exit 0 expected;
  3. two .pt files in which every value differs by a factor 1.001 (what a
     fine-tuning step does), exit 1 expected;
  4. `--structure` on case 1 (names/dtypes/shapes only), against a torch
     script that loads with mmap=True and compares dtypes and shapes.

Goals (issue 4): >= 8x faster than the torch script, peak RSS <= 128 MiB.
The patched copy goes to a temporary directory (the cache may be shared) and
is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
from pathlib import Path

from common import PARAMINSPECT, big_checkpoints, markdown_table, python_script, run_timed

TORCH_DIFF = """
import sys, torch
def load(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, weights_only=True)
a, b = load(sys.argv[1]), load(sys.argv[2])
changed = sorted(set(a) ^ set(b))
for name in a.keys() & b.keys():
    x, y = a[name], b[name]
    if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
        changed.append(name)
print(len(changed), "names differ")
sys.exit(1 if changed else 0)
"""

TORCH_STRUCTURE = """
import sys, torch
a = torch.load(sys.argv[1], mmap=True, weights_only=True)
b = torch.load(sys.argv[2], mmap=True, weights_only=True)
changed = sorted(set(a) ^ set(b))
changed += [n for n in a.keys() & b.keys() if (a[n].dtype, a[n].shape) != (b[n].dtype, b[n].shape)]
print(len(changed), "names differ")
sys.exit(1 if changed else 0)
"""

PATCHED_TENSOR = "layers.40.weight"
PATCHED_ELEMENT = 1_234_567


PATCH_SCRIPT = """
import shutil, struct, sys
from paraminspect import open_checkpoint
source, target, name, element = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ref = open_checkpoint(source).tensors[name]
shutil.copyfile(source, target)
offset = ref.byte_range()[0] + element * ref.dtype.itemsize
with open(target, "r+b") as fh:
    fh.seek(offset)
    (value,) = struct.unpack("<f", fh.read(4))
    fh.seek(offset)
    fh.write(struct.pack("<f", value + 0.5))
"""


PERTURB_SCRIPT = """
import shutil, sys
import numpy as np
from paraminspect import open_checkpoint
source, target = sys.argv[1], sys.argv[2]
refs = open_checkpoint(source).tensors
shutil.copyfile(source, target)
for ref in refs.values():  # every float32 element scaled by (1 + 1e-3): all differ
    begin, end = ref.byte_range()
    values = np.memmap(target, dtype="<f4", mode="r+", offset=begin, shape=((end - begin) // 4,))
    values *= np.float32(1.001)
    values.flush()
    del values
"""


def patched_copy(source: Path, directory: Path) -> Path:
    """A byte-for-byte copy of ``source`` with one float32 element of one tensor changed.

    Done in a child process: the parent must stay small, because each measured
    child's peak RSS starts from the parent's RSS at fork.
    """
    target = directory / "patched.pt"
    argv = [*python_script(PATCH_SCRIPT), str(source), str(target), PATCHED_TENSOR, str(PATCHED_ELEMENT)]
    subprocess.run(argv, check=True)
    return target


def perturbed_copy(source: Path, directory: Path) -> Path:
    """A copy of ``source`` in which every value differs slightly (a fine-tuning step)."""
    target = directory / "perturbed.pt"
    subprocess.run([*python_script(PERTURB_SCRIPT), str(source), str(target)], check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    big = big_checkpoints()
    before = f"{os.getloadavg()[0]:.2f}"
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
        patched = patched_copy(big["pt"], Path(tmp))
        perturbed = perturbed_copy(big["pt"], Path(tmp))
        cases = [
            (".pt vs .pt, one element differs", str(big["pt"]), str(patched), [], TORCH_DIFF),
            (".pt vs .safetensors, equal", str(big["pt"]), str(big["safetensors"]), [], TORCH_DIFF),
            (".pt vs .pt, every value differs", str(big["pt"]), str(perturbed), [], TORCH_DIFF),
            (".pt vs .pt --structure (vs mmap=True)", str(big["pt"]), str(patched), ["--structure"], TORCH_STRUCTURE),
        ]
        for label, a, b, extra, baseline in cases:
            ours = run_timed("paraminspect", [PARAMINSPECT, "diff", a, b, "-q", *extra], repeat)
            base = run_timed("torch script", [*python_script(baseline), a, b], repeat)
            rows.append(
                [
                    label,
                    f"{ours.median_s:.2f} s ({ours.median_cpu_s:.2f} s CPU)",
                    f"{ours.peak_rss_mib:.0f} MiB",
                    f"{base.median_s:.2f} s ({base.median_cpu_s:.2f} s CPU)",
                    f"{base.peak_rss_mib:.0f} MiB",
                    f"{base.median_s / ours.median_s:.1f}x ({base.median_cpu_s / ours.median_cpu_s:.1f}x CPU)",
                ]
            )
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    headers = ["case", "paraminspect diff", "peak RSS", "torch.load + compare", "peak RSS", "speed-up"]
    print(markdown_table(headers, rows))
    print(f"\n(benchmark parent peak RSS {parent:.0f} MiB: a floor under every child's figure;")
    print(f" load average before/after: {before} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
