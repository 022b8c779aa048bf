"""Edit benchmarks on the ~1 GiB checkpoints (issue 5).

rename/drop/extract of the safetensors file against `cp` of the same file
(and `cp` + `sync`, since every paraminspect write is fsynced); convert of the
.pt file to safetensors against torch.load + safetensors.torch.save_file.
Every edit also re-opens and checksums its output before replacing anything.
Contenders run round-robin; the table gives median wall and CPU (user + system) seconds.

    .venv/bin/python benchmarks/bench_edit.py [--repeat N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, HERE, PARAMINSPECT, PYTHON, Measurement, markdown_table, python_script, run_interleaved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # Build/find the files in a child process: common.big_checkpoints() imports torch,
    # and children forked from a big parent report the parent's peak RSS as their own.
    setup = f"import sys; sys.path.insert(0, {str(HERE)!r}); from common import big_checkpoints; big_checkpoints()"
    subprocess.run([PYTHON, "-c", setup], check=True)
    st, pt = CACHE / "big_1g.safetensors", CACHE / "big_1g.pt"
    # Each contender overwrites its own previous output, as `cp` does: replacing a
    # 1 GiB file costs more than replacing extract's small one, so no output is shared.
    outs = {k: st.parent / f"bench_{k}.safetensors" for k in ("cp", "cp_sync", "rename", "drop", "extract", "convert")}
    out_cp = outs["cp"]
    r = args.repeat
    # Round-robin: on a shared machine, load bursts then hit every contender alike.
    edits = run_interleaved(
        [
            ("cp", ["cp", str(st), str(out_cp)]),
            ("cp + sync", ["sh", "-c", f"cp '{st}' '{outs['cp_sync']}' && sync '{outs['cp_sync']}'"]),
            (
                "paraminspect rename --add-prefix m.",
                [PARAMINSPECT, "rename", str(st), "--add-prefix", "m.", "-o", str(outs["rename"]), "--force"],
            ),
            (
                "paraminspect drop 'layers.0.*'",
                [PARAMINSPECT, "drop", str(st), "layers.0.*", "-o", str(outs["drop"]), "--force"],
            ),
            (
                "paraminspect extract 'layers.1*'",
                [PARAMINSPECT, "extract", str(st), "layers.1*", "-o", str(outs["extract"]), "--force"],
            ),
        ],
        repeat=r,
    )
    baseline = (
        "import sys, torch; from safetensors.torch import save_file; "
        "save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])"
    )
    converts = run_interleaved(
        [
            ("torch.load + save_file", [*python_script(baseline), str(pt), str(outs["convert"])]),
            ("paraminspect convert", [PARAMINSPECT, "convert", str(pt), str(outs["convert"]), "--force"]),
        ],
        repeat=r,
    )
    for path in outs.values():
        path.unlink(missing_ok=True)
    print(table(edits, "cp", "x cp"))
    print()
    print(table(converts, "torch.load + save_file", "speed-up"))


def table(rows: list[Measurement], base_label: str, ratio_title: str) -> str:
    base = next(m for m in rows if m.label == base_label)
    body = []
    for m in rows:
        ratio = m.median_s / base.median_s if ratio_title.startswith("x") else base.median_s / m.median_s
        body.append([m.label, f"{m.median_s:.2f}", f"{ratio:.2f}", f"{m.median_cpu_s:.2f}", f"{m.peak_rss_mib:.0f}"])
    return markdown_table(["command", "median s", ratio_title, "CPU s", "peak RSS MiB"], body)


if __name__ == "__main__":
    main()
