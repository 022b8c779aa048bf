"""`paraminspect shapes` of quantized models against the same models unquantized,
on header-only sparse files shaped like real checkpoints (tests/quant_sparse.py):
Llama-3.1-8B 4-bit GPTQ (963 storage tensors for 291 weights) and Qwen3-30B-A3B
W4A16 compressed-tensors (55,875 storage tensors for 18,819; each quantized
linear's ``weight_shape`` descriptor is read, 18,624 reads of 16 bytes).

    .venv/bin/python benchmarks/bench_quant.py [--repeat N]

Goal (issue 14): quantized / unquantized <= 1.2. ``--raw`` lists the same
quantized file as stored: its time against the quantized one is what recognition
itself costs, over reading a header three times the size. The last column is the
floor under the ratio: how much longer json.loads alone (C, no checks, no objects of
ours) takes on the quantized header than on the unquantized one, as a share of the
unquantized command's whole time; 1.2 is out of reach when that share is over 0.2.
"""

from __future__ import annotations

import argparse
import gc
import json
import struct
import sys
import time

from common import CACHE, HERE, PARAMINSPECT, markdown_table, run_interleaved

sys.path.insert(0, str(HERE.parent))
from tests import quant_sparse  # the fixtures the tests count exactly


def _fixtures() -> dict[str, tuple[str, str]]:
    """model -> (quantized file, unquantized file), built once into the cache."""
    CACHE.mkdir(exist_ok=True)
    out: dict[str, tuple[str, str]] = {}
    for model, build in (("llama-3.1-8b gptq 4-bit", "llama"), ("qwen3-30b-a3b ct w4a16", "moe")):
        folder_q, folder_f = CACHE / f"quant_{build}", CACHE / f"float_{build}"
        for folder in (folder_q, folder_f):
            folder.mkdir(exist_ok=True)
        q, f = folder_q / "model.safetensors", folder_f / "model.safetensors"
        if not (q.exists() and f.exists()):
            if build == "llama":
                quant_sparse.llama_8b(q, gptq_bits=4)
                quant_sparse.llama_8b(f, gptq_bits=None)
                config = {**quant_sparse.LLAMA_8B, "quantization_config": {"quant_method": "gptq", "bits": 4}}
            else:
                quant_sparse.qwen3_moe(q, quantized=True)
                quant_sparse.qwen3_moe(f, quantized=False)
                config = quant_sparse.qwen3_moe_config()
            (folder_q / "config.json").write_text(json.dumps(config))
        out[model] = (str(q), str(f))
    return out


def _json_seconds(path: str, repeat: int = 5) -> float:
    """Fastest json.loads of a safetensors file's header, in this process, with the
    collector off as the command has it while reading."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        raw = fh.read(length)
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            json.loads(raw)
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    rows: list[list[str]] = []
    for model, (quantized, plain) in _fixtures().items():
        q, raw, f = run_interleaved(
            [
                ("quantized", [PARAMINSPECT, "shapes", quantized]),
                ("quantized --raw", [PARAMINSPECT, "shapes", "--raw", quantized]),
                ("unquantized", [PARAMINSPECT, "shapes", plain]),
            ],
            repeat=repeat,
        )
        rows.append(
            [
                model,
                f"{q.median_s * 1000:.0f} ms (cpu {q.median_cpu_s * 1000:.0f})",
                f"{raw.median_s * 1000:.0f} ms (cpu {raw.median_cpu_s * 1000:.0f})",
                f"{f.median_s * 1000:.0f} ms (cpu {f.median_cpu_s * 1000:.0f})",
                f"{q.median_s / f.median_s:.2f} (cpu {q.median_cpu_s / f.median_cpu_s:.2f})",
                f"{q.median_s / raw.median_s:.2f}",
                f"{q.peak_rss_mib:.0f} / {f.peak_rss_mib:.0f} MiB",
                f"{(_json_seconds(quantized) - _json_seconds(plain)) / f.median_s:.2f}",
            ]
        )
    headers = ["model", "shapes", "shapes --raw", "unquantized", "ratio (goal <= 1.2)", "vs --raw", "peak RSS q / f"]
    headers.append("json.loads q - f / unquantized")
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
