"""Start-up cost of `paraminspect shapes` on a small file, for one or more source trees.

    .venv/bin/python benchmarks/bench_startup.py [--repeat N] [TREE ...]

Each TREE is a checkout of the project (default: this one); runs are interleaved
so load from other users hits every tree alike. Besides wall and CPU time it
reports how many modules the command imports, a count that does not move with
machine noise: a layout change that drags numpy or a command family onto the
header-only path shows up there first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from common import HERE, PYTHON, markdown_table, run_interleaved

SAMPLE = HERE.parent / "sample_models"

_COUNT_IMPORTS = """
import io, sys, contextlib
from paraminspect.cli import run
sys.argv = ["paraminspect", "shapes", sys.argv[1]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        run()
    except SystemExit:
        pass
ours = sorted(m for m in sys.modules if m.startswith("paraminspect"))
heavy = sorted(m for m in ("numpy", "ml_dtypes", "torch", "typer") if m in sys.modules)
print(__import__("json").dumps({"all": len(sys.modules), "ours": len(ours), "heavy": heavy}))
"""


def _imports(tree: Path, sample: Path) -> dict[str, object]:
    proc = subprocess.run(
        [PYTHON, "-c", _COUNT_IMPORTS, str(sample)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        cwd=tree,  # python -c puts the working directory first on sys.path
    )
    counts: dict[str, object] = json.loads(proc.stdout)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("trees", nargs="*", type=Path, default=[HERE.parent])
    args = parser.parse_args()
    rows: list[list[str]] = []
    for sample in (SAMPLE / "mlp.safetensors", SAMPLE / "mlp.pt"):
        contenders = [
            (
                str(tree),
                ["env", "-C", str(tree), f"PYTHONPATH={tree}", PYTHON, "-m", "paraminspect", "shapes", str(sample)],
            )
            for tree in args.trees
        ]
        for tree, m in zip(args.trees, run_interleaved(contenders, repeat=args.repeat), strict=True):
            counts = _imports(tree, sample)
            rows.append(
                [
                    sample.name,
                    str(tree),
                    f"{m.median_s * 1000:.0f} ms",
                    f"{m.median_cpu_s * 1000:.0f} ms",
                    f"{m.peak_rss_mib:.0f} MiB",
                    f"{counts['all']} ({counts['ours']} ours)",
                    ", ".join(counts["heavy"]) or "none",  # type: ignore[arg-type]
                ]
            )
    print(markdown_table(["file", "tree", "wall", "cpu", "peak RSS", "modules imported", "heavy imports"], rows))


if __name__ == "__main__":
    main()
