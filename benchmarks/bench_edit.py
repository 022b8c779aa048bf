"""Edit benchmarks on the ~1 GiB checkpoints (issue 5).

rename/drop/extract of the safetensors file against `cp` of the same file
(and `cp` + `sync`, since every paraminspect write is fsynced); convert of the
.pt file to safetensors against torch.load + safetensors.torch.save_file.
Every edit also re-opens and checksums its output before replacing anything.

    .venv/bin/python benchmarks/bench_edit.py [--repeat N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, HERE, PARAMINSPECT, PYTHON, Measurement, markdown_table, python_script, run_timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # Build/find the files in a child process: common.big_checkpoints() imports torch,
    # and children forked from a big parent report the parent's peak RSS as their own.
    setup = f"import sys; sys.path.insert(0, {str(HERE)!r}); from common import big_checkpoints; big_checkpoints()"
    subprocess.run([PYTHON, "-c", setup], check=True)
    st, pt = CACHE / "big_1g.safetensors", CACHE / "big_1g.pt"
    out = st.parent / "bench_out.safetensors"
    out_cp = st.parent / "bench_cp.safetensors"
    r = args.repeat
    edits = [
        run_timed("cp", ["cp", str(st), str(out_cp)], repeat=r),
        run_timed("cp + sync", ["sh", "-c", f"cp '{st}' '{out_cp}' && sync '{out_cp}'"], repeat=r),
        run_timed(
            "paraminspect rename --add-prefix m.",
            [PARAMINSPECT, "rename", str(st), "--add-prefix", "m.", "-o", str(out), "--force"],
            repeat=r,
        ),
        run_timed(
            "paraminspect drop 'layers.0.*'",
            [PARAMINSPECT, "drop", str(st), "layers.0.*", "-o", str(out), "--force"],
            repeat=r,
        ),
        run_timed(
            "paraminspect extract 'layers.1*'",
            [PARAMINSPECT, "extract", str(st), "layers.1*", "-o", str(out), "--force"],
            repeat=r,
        ),
    ]
    baseline = (
        "import sys, torch; from safetensors.torch import save_file; "
        "save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])"
    )
    converts = [
        run_timed("torch.load + save_file", [*python_script(baseline), str(pt), str(out)], repeat=r),
        run_timed("paraminspect convert", [PARAMINSPECT, "convert", str(pt), str(out), "--force"], repeat=r),
    ]
    for path in (out, out_cp):
        path.unlink(missing_ok=True)
    print(table(edits, "cp", "x cp"))
    print()
    print(table(converts, "torch.load + save_file", "speed-up"))


def table(rows: list[Measurement], base_label: str, ratio_title: str) -> str:
    base = next(m for m in rows if m.label == base_label)
    body = []
    for m in rows:
        ratio = m.median_s / base.median_s if ratio_title.startswith("x") else base.median_s / m.median_s
        body.append([m.label, f"{m.median_s:.2f}", f"{ratio:.2f}", f"{m.peak_rss_mib:.0f}"])
    return markdown_table(["command", "median s", ratio_title, "peak RSS MiB"], body)


if __name__ == "__main__":
    main()
