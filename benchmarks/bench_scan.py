"""``scan`` and the hostile-input defences, timed as whole processes.

    .venv/bin/python benchmarks/bench_scan.py

Compares ``paraminspect scan`` with torch's own static checker
(``torch.serialization.get_unsafe_globals_in_checkpoint``) on the ~1 GiB
checkpoint and on a 20,000-tensor one (where the pickle, not the data, is
big), times ``scan`` against ``shapes`` on the same 20k tensors as a legacy
file and as 8 .bin shards and on a 2,000-item DCP directory, and shows what
the DAG bomb and memo bomb cost now that they are refused.
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


def legacy_many() -> Path:
    """The 20k-tensor checkpoint in the legacy (pre-1.6) torch.save format."""
    path = CACHE / "many_20k_legacy.pt"
    if not path.exists():
        import torch

        state = {f"model.layers.{i}.mlp.weight": torch.zeros(4) for i in range(20_000)}
        torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def sharded_many() -> Path:
    """The same 20k tensors as 8 torch .bin shards and a pytorch_model.bin.index.json."""
    directory = CACHE / "many_20k_sharded"
    if not directory.exists():
        import json

        import torch

        directory.mkdir(parents=True)
        weight_map = {}
        for shard in range(8):
            name = f"pytorch_model-{shard + 1:05d}-of-00008.bin"
            part = {f"model.layers.{i}.mlp.weight": torch.zeros(4) for i in range(shard, 20_000, 8)}
            torch.save(part, directory / name)
            weight_map.update(dict.fromkeys(part, name))
        (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def dcp_many() -> Path:
    """A DCP directory of 2,000 tensors: 2,000 torch.save zips in one .distcp file."""
    directory = CACHE / "dcp_2k"
    if not directory.exists():
        import warnings

        import torch
        import torch.distributed.checkpoint as dcp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.save({f"layers.{i}.weight": torch.zeros(4) for i in range(2_000)}, checkpoint_id=str(directory))
    return directory


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
        legacy_many()
        sharded_many()
        dcp_many()
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
        ("paraminspect scan (20k tensors, legacy .pt)", [PARAMINSPECT, "scan", str(legacy_many())]),
        ("paraminspect scan (20k tensors, 8 .bin shards)", [PARAMINSPECT, "scan", str(sharded_many())]),
        ("paraminspect shapes (20k tensors, 8 .bin shards)", [PARAMINSPECT, "shapes", str(sharded_many())]),
        ("paraminspect scan (DCP, 2k items)", [PARAMINSPECT, "scan", str(dcp_many())]),
        ("paraminspect shapes (DCP, 2k items)", [PARAMINSPECT, "shapes", str(dcp_many())]),
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
