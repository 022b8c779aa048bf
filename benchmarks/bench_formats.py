"""`paraminspect shapes` of a numpy ``.npz`` (stored) and an ONNX model, ~1 GiB and ~10 MiB,
against listing scripts built on numpy and onnx.

    .venv/bin/python benchmarks/bench_formats.py [--repeat N]

Each file holds 64 fp32 [4096, 1024] matrices (the 10 MiB sibling: [200, 200]) plus a
bias and a norm weight each (192 arrays), written by ``np.savez`` and by
``onnx.save_model`` (initializers in ``raw_data``, no external data). Baselines:
``np.load`` reading each member's shape (it reads the whole array: an npz member cannot
be memory-mapped), numpy's own header reader on each member (``np.lib.format``, the
least numpy can read), and ``onnx.load`` (parses the whole protobuf, 1 GiB of it).

Goals (issue 18): <= 0.15 s on 1 GiB, and the 1 GiB / 10 MiB time ratio near 1 (the
listing reads headers only). The floor is ``shapes`` of a one-tensor safetensors file, run
in the same rounds: the CLI's start-up, which on a loaded machine is most of the time.
CPU time (user + system of the child) is reported beside wall time: it is steadier when
other jobs share the cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import CACHE, PARAMINSPECT, markdown_table, python_script, run_interleaved

NP_LOAD = """
import sys, numpy as np
with np.load(sys.argv[1]) as z:
    for name in z.files:
        a = z[name]
        print(name, a.dtype, a.shape)
"""

NP_HEADERS = """
import sys, zipfile, numpy as np
from numpy.lib import format as fmt
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        with z.open(info) as f:
            version = fmt.read_magic(f)
            shape, fortran, dtype = fmt._read_array_header(f, version)
        print(info.filename[:-4], dtype, shape)
"""

ONNX_LOAD = """
import sys, onnx
model = onnx.load(sys.argv[1], load_external_data=False)
for t in model.graph.initializer:
    print(t.name, t.data_type, list(t.dims))
"""


def _arrays(shape: tuple[int, int], count: int) -> dict[str, object]:
    import numpy as np

    rng = np.random.default_rng(0)
    arrays: dict[str, object] = {}
    for i in range(count):
        arrays[f"layers.{i}.weight"] = rng.standard_normal(shape, dtype=np.float32)
        arrays[f"layers.{i}.bias"] = rng.standard_normal(shape[0], dtype=np.float32)
        arrays[f"layers.{i}.norm.weight"] = np.ones(shape[1], dtype=np.float32)
    return arrays


def _files(stem: str, shape: tuple[int, int], count: int = 64) -> dict[str, Path]:
    """The .npz and .onnx pair (cached: written once, under temporary names, then renamed)."""
    npz, model = CACHE / f"{stem}.npz", CACHE / f"{stem}.onnx"
    if npz.exists() and model.exists():
        return {"npz": npz, "onnx": model}
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    CACHE.mkdir(exist_ok=True)
    arrays = _arrays(shape, count)
    with open(npz.with_suffix(".npz.tmp"), "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    initializers = [numpy_helper.from_array(a, name) for name, a in arrays.items()]  # type: ignore[arg-type]
    graph = helper.make_graph([], "weights", [], [], initializer=initializers)
    onnx.save_model(helper.make_model(graph), str(model.with_suffix(".onnx.tmp")))
    npz.with_suffix(".npz.tmp").replace(npz)
    model.with_suffix(".onnx.tmp").replace(model)
    return {"npz": npz, "onnx": model}


def _floor() -> Path:
    """A one-tensor safetensors file: ``shapes`` of it is the CLI's start-up floor."""
    path = CACHE / "floor.safetensors"
    if not path.exists():
        import numpy as np
        from safetensors.numpy import save_file

        CACHE.mkdir(exist_ok=True)
        save_file({"w": np.zeros(4, dtype=np.float32)}, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    big, small, floor = _files("formats_1g", (4096, 1024)), _files("formats_10m", (200, 200)), _floor()
    rows: list[list[str]] = []
    baselines = {
        "npz": [("np.load", NP_LOAD), ("np.lib.format headers", NP_HEADERS)],
        "onnx": [("onnx.load", ONNX_LOAD)],
    }
    for fmt, contenders in baselines.items():
        runs = run_interleaved(
            [
                ("big", [PARAMINSPECT, "shapes", str(big[fmt])]),
                ("small", [PARAMINSPECT, "shapes", str(small[fmt])]),
                ("floor", [PARAMINSPECT, "shapes", str(floor)]),
                *((label, [*python_script(code), str(big[fmt])]) for label, code in contenders),
            ],
            repeat,
        )
        ours, ours_small, start, bases = runs[0], runs[1], runs[2], runs[3:]
        for base in bases:
            rows.append(
                [
                    f".{fmt} {big[fmt].stat().st_size / 2**30:.2f} GiB",
                    f"{ours.median_s * 1000:.0f} ms ({ours.median_cpu_s * 1000:.0f} ms CPU)",
                    f"{ours.peak_rss_mib:.0f} MiB",
                    f"{ours_small.median_s * 1000:.0f} ms ({ours_small.median_cpu_s * 1000:.0f} ms CPU)",
                    f"{ours.median_cpu_s / ours_small.median_cpu_s:.2f}",
                    f"{start.median_s * 1000:.0f} ms ({start.median_cpu_s * 1000:.0f} ms CPU)",
                    f"{base.label}: {base.median_s * 1000:.0f} ms ({base.median_cpu_s * 1000:.0f} ms CPU),"
                    f" {base.peak_rss_mib:.0f} MiB",
                    f"{base.median_cpu_s / ours.median_cpu_s:.1f}x",
                ]
            )
    headers = [
        "file",
        "paraminspect shapes",
        "peak RSS",
        "10 MiB file",
        "1 GiB / 10 MiB CPU",
        "floor (1-tensor safetensors)",
        "baseline",
        "speed-up (CPU)",
    ]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
