"""``scan`` and the hostile-input defences, timed as whole processes.

    .venv/bin/python benchmarks/bench_scan.py

Compares ``paraminspect scan`` with torch's own static checker
(``torch.serialization.get_unsafe_globals_in_checkpoint``) on the ~1 GiB
checkpoint and on a 20,000-tensor one (where the pickle, not the data, is
big), and shows what the DAG bomb and memo bomb cost now that they are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import common
from common import PARAMINSPECT, big_checkpoints, markdown_table, python_script, run_timed

# The shared cache may be a link to a directory not created yet; allow another place.
common.CACHE = Path(os.environ.get("PARAMINSPECT_BENCH_CACHE", common.CACHE))
CACHE = common.CACHE


def many_tensors() -> Path:
    path = CACHE / "many_20k.pt"
    if not path.exists():
        import torch

        CACHE.mkdir(exist_ok=True)
        torch.save({f"model.layers.{i}.mlp.weight": torch.zeros(4) for i in range(20_000)}, path)
    return path


def _zip(path: Path, pkl: bytes) -> Path:
    if not path.exists():
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", pkl)
            z.writestr("archive/byteorder", "little")
    return path


def dag_bomb() -> Path:
    out = b"\x80\x02]q\x00"
    for i in range(1, 65):
        out += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
    return _zip(CACHE / "dag_bomb.pt", out + b".")


def memo_bomb() -> Path:
    return _zip(
        CACHE / "memo_bomb.pt", b"\x80\x02]r\xff\xff\xff\x3f."
    )  # LONG_BINPUT 2**30-1: C unpickler would zero 16 GiB


def torch_scan(path: Path) -> list[str]:
    return python_script(f"import torch; torch.serialization.get_unsafe_globals_in_checkpoint({str(path)!r})")


def main() -> None:
    if "--prepare" in sys.argv:  # build with torch in a child, or every forked child inherits its peak RSS
        big_checkpoints()
        many_tensors()
        return
    subprocess.run([sys.executable, __file__, "--prepare"], check=True)
    big = big_checkpoints()
    many = many_tensors()
    cases = [
        ("paraminspect scan (1 GiB .pt)", [PARAMINSPECT, "scan", str(big["pt"])]),
        ("torch get_unsafe_globals_in_checkpoint (1 GiB .pt)", torch_scan(big["pt"])),
        ("paraminspect scan (1 GiB .safetensors)", [PARAMINSPECT, "scan", str(big["safetensors"])]),
        ("paraminspect scan (20k tensors)", [PARAMINSPECT, "scan", str(many)]),
        ("torch get_unsafe_globals_in_checkpoint (20k tensors)", torch_scan(many)),
        ("paraminspect shapes (20k tensors)", [PARAMINSPECT, "shapes", str(many)]),
        ("paraminspect tree (DAG bomb, 2^64 paths)", [PARAMINSPECT, "tree", str(dag_bomb())]),
        ("paraminspect tree (memo bomb, 16 GiB memo)", [PARAMINSPECT, "tree", str(memo_bomb())]),
        ("paraminspect scan (memo bomb)", [PARAMINSPECT, "scan", str(memo_bomb())]),
    ]
    rows = []
    for label, argv in cases:
        m = run_timed(label, argv, repeat=5, warmup=1, ok_codes=(0, 1, 2))
        rows.append([label, f"{m.median_s:.2f} s", f"{m.peak_rss_mib:.0f} MiB"])
    print(markdown_table(["command", "median wall", "peak RSS"], rows))


if __name__ == "__main__":
    main()
