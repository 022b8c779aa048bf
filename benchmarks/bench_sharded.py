"""Benchmark: tree and shapes on a sparse sharded model shaped like a 405B transformer.

The model has the tensor names and shapes of Llama 3.1 405B (126 layers, 1,137
bf16 tensors, 191 safetensors shards plus model.safetensors.index.json, about
756 GiB apparent size). Each shard is its real header followed by a hole
(``truncate``), so it takes almost no disk. Goal: tree and shapes <= 0.6 s,
peak RSS <= 64 MiB, i.e. headers only, never data.

    .venv/bin/python benchmarks/bench_sharded.py
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PARAMINSPECT, PYTHON, Measurement, markdown_table, run_timed

# Sparse files take no disk, so a temp directory will do (and it stays out of
# benchmarks/.cache, which worktrees may share through a symlink).
WORKDIR = Path(os.environ.get("PARAMINSPECT_BENCH_DIR", tempfile.gettempdir())) / "paraminspect-sparse-405b"

MLP = Path(__file__).resolve().parent.parent / "sample_models" / "mlp.safetensors"
HIDDEN, FFN, LAYERS, KV, VOCAB, SHARDS = 16384, 53248, 126, 1024, 128256, 191
BF16 = 2


def tensor_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes in model order, as transformers names a Llama."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        shapes += [
            (f"{p}.input_layernorm.weight", (HIDDEN,)),
            (f"{p}.self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
            (f"{p}.self_attn.k_proj.weight", (KV, HIDDEN)),
            (f"{p}.self_attn.v_proj.weight", (KV, HIDDEN)),
            (f"{p}.self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            (f"{p}.post_attention_layernorm.weight", (HIDDEN,)),
            (f"{p}.mlp.gate_proj.weight", (FFN, HIDDEN)),
            (f"{p}.mlp.up_proj.weight", (FFN, HIDDEN)),
            (f"{p}.mlp.down_proj.weight", (HIDDEN, FFN)),
        ]
    return [*shapes, ("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]


def _nbytes(shape: tuple[int, ...]) -> int:
    n = BF16
    for d in shape:
        n *= d
    return n


def build(directory: Path) -> Path:
    """Write the sparse shards and the index (once; cached)."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    shapes = tensor_shapes()
    total = sum(_nbytes(s) for _, s in shapes)
    target = total / SHARDS
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[] for _ in range(SHARDS)]
    done = 0
    for name, shape in shapes:
        groups[min(SHARDS - 1, int(done / target))].append((name, shape))
        done += _nbytes(shape)
    weight_map: dict[str, str] = {}
    for number, group in enumerate(groups, 1):
        file = f"model-{number:05d}-of-{SHARDS:05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape in sorted(group):
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + _nbytes(shape)]}
            offset += _nbytes(shape)
            weight_map[name] = file
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(directory / file, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            fh.truncate(8 + len(raw) + offset)  # a hole: apparent size only
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return directory


def main() -> None:
    directory = build(WORKDIR)
    files = list(directory.iterdir())
    apparent = sum(f.stat().st_size for f in files)
    on_disk = sum(f.stat().st_blocks * 512 for f in files)
    print(
        f"{len(files) - 1} shards, {len(tensor_shapes())} tensors, apparent {apparent / 2**30:.1f} GiB, "
        f"on disk {on_disk / 2**20:.1f} MiB",
        file=sys.stderr,
    )
    target = str(directory)
    runs: list[tuple[Measurement, str]] = [
        (run_timed("paraminspect tree DIR", [PARAMINSPECT, "tree", target]), "<= 0.6 s, <= 64 MiB"),
        (run_timed("paraminspect shapes DIR", [PARAMINSPECT, "shapes", target]), "<= 0.6 s, <= 64 MiB"),
        (run_timed("paraminspect shapes --by-prefix 2", [PARAMINSPECT, "shapes", target, "--by-prefix", "2"]), ""),
        (run_timed("paraminspect shapes -f json", [PARAMINSPECT, "shapes", target, "-f", "json"]), ""),
        (run_timed("paraminspect shapes mlp.safetensors", [PARAMINSPECT, "shapes", str(MLP)]), "CLI start-up floor"),
        (run_timed("python -c pass (interpreter)", [PYTHON, "-c", "pass"]), "floor"),
    ]
    rows = [[m.label, f"{m.median_s:.3f}", f"{m.peak_rss_mib:.1f}", goal] for m, goal in runs]
    print(markdown_table(["command", "median s", "peak RSS MiB", "goal"], rows))


if __name__ == "__main__":
    main()
