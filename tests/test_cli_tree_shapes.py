"""tree and shapes through the CLI: exact output per format, as users see it."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import SAMPLES, run_cli, run_script

MLP_SHAPES_TABLE = """\
name               dtype    shape      numel    bytes
-----------------  -------  -------  -------  -------
0.weight           float32  [8, 4]        32    128 B
0.bias             float32  [8]            8     32 B
2.weight           float32  [1, 8]         8     32 B
2.bias             float32  [1]            1      4 B
-----------------  -------  -------  -------  -------
total (4 tensors)                         49    196 B
"""


def test_shapes_table_is_exact() -> None:
    result = run_cli("shapes", SAMPLES / "mlp.pt")
    assert (result.code, result.out, result.err) == (0, MLP_SHAPES_TABLE, "")


def test_shapes_json_schema() -> None:
    result = run_cli("shapes", SAMPLES / "tied.safetensors", "--format", "json")
    doc = json.loads(result.out)
    assert set(doc) == {"file", "format", "root", "tensors", "total", "metadata"}
    assert doc["root"] == ""  # the whole file; --root or an automatic choice names a key
    assert doc["format"] == "safetensors"
    assert doc["tensors"][0] == {
        "name": "0.bias",
        "dtype": "float32",
        "shape": [8],
        "numel": 8,
        "bytes": 32,
        "tied_to": None,
    }
    ties = {t["name"]: t["tied_to"] for t in doc["tensors"] if t["tied_to"]}
    assert ties == {"4.bias": "2.bias", "4.weight": "2.weight"}
    assert doc["total"] == {"tensors": 8, "unique": 6, "numel": 121, "bytes": 484}


def test_shapes_csv_has_exact_numbers_and_no_total_row() -> None:
    result = run_cli("shapes", SAMPLES / "rgnet.pt", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert len(rows) == 18
    assert rows[0] == {
        "name": "0.block 0.0.weight",
        "dtype": "float32",
        "shape": "[8, 4]",
        "numel": "32",
        "bytes": "128",
        "tied_to": "",
    }


def test_shapes_markdown() -> None:
    result = run_cli("shapes", SAMPLES / "mlp.pt", "2.*", "--format", "markdown")
    assert result.out == (
        "| name              | dtype   | shape   |   numel |   bytes |\n"
        "|-------------------|---------|---------|---------|---------|\n"
        "| 2.weight          | float32 | [1, 8]  |       8 |    32 B |\n"
        "| 2.bias            | float32 | [1]     |       1 |     4 B |\n"
        "| total (2 tensors) |         |         |       9 |    36 B |\n"
    )


def test_patterns_glob_prefix_and_regex() -> None:
    def names(*args: str) -> list[str]:
        out = run_cli("shapes", SAMPLES / "rgnet.pt", *args, "--format", "json").out
        return [t["name"] for t in json.loads(out)["tensors"]]

    assert names("*.bias")[:2] == ["0.block 0.0.bias", "0.block 0.2.bias"]
    assert names("0.block 1") == ["0.block 1.0.weight", "0.block 1.0.bias", "0.block 1.2.weight", "0.block 1.2.bias"]
    assert names("--regex", r"^1\.") == ["1.weight", "1.bias"]
    assert run_cli("shapes", SAMPLES / "rgnet.pt", "0.block 9").code == 2


def test_pt_keeps_saved_order_safetensors_is_natural(tmp_path: Path) -> None:
    sd = {f"layers.{i}.w": torch.zeros(1) for i in (10, 2, 1)}
    torch.save(sd, tmp_path / "m.pt")
    save_file(sd, tmp_path / "m.safetensors")

    def names(path: Path, *extra: str) -> list[str]:
        return [t["name"] for t in json.loads(run_cli("shapes", path, "-f", "json", *extra).out)["tensors"]]

    assert names(tmp_path / "m.pt") == ["layers.10.w", "layers.2.w", "layers.1.w"]
    assert names(tmp_path / "m.pt", "--sort") == ["layers.1.w", "layers.2.w", "layers.10.w"]
    assert names(tmp_path / "m.safetensors") == ["layers.1.w", "layers.2.w", "layers.10.w"]


def test_format_is_detected_by_content_not_suffix(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes((SAMPLES / "mlp.safetensors").read_bytes())
    (tmp_path / "weights.safetensors").write_bytes((SAMPLES / "mlp.pt").read_bytes())
    assert json.loads(run_cli("shapes", tmp_path / "weights.bin", "-f", "json").out)["format"] == "safetensors"
    assert json.loads(run_cli("shapes", tmp_path / "weights.safetensors", "-f", "json").out)["format"] == "torch-zip"


RGNET_TREE_DEPTH_2 = """\
{path}  (torch-zip: 18 tensors, 309 params, 1.2 KiB)
├── 0  (304 params, 1.2 KiB)
│   ├── block 0  (76 params, 304 B, 4 tensors folded)
│   ├── block 1  (76 params, 304 B, 4 tensors folded)
│   ├── block 2  (76 params, 304 B, 4 tensors folded)
│   └── block 3  (76 params, 304 B, 4 tensors folded)
└── 1  (5 params, 20 B)
    ├── weight  float32 [1, 4]
    └── bias  float32 [1]
"""


def test_tree_depth_folds_and_names_with_spaces() -> None:
    result = run_cli("tree", SAMPLES / "rgnet.pt", "--depth", "2")
    assert result.out == RGNET_TREE_DEPTH_2.format(path=SAMPLES / "rgnet.pt")


def test_tree_shows_ties_without_double_counting() -> None:
    out = run_cli("tree", SAMPLES / "tied.pt").out
    assert "(torch-zip: 8 tensors, 121 params, 484 B)" in out
    assert "│   ├── weight  float32 [8, 8]  (tied to 2.weight)" in out


def test_tree_json_is_nested() -> None:
    doc = json.loads(run_cli("tree", SAMPLES / "rgnet.pt", "--format", "json").out)
    assert (doc["tensors"], doc["params"], doc["bytes"]) == (18, 309, 1236)
    block1 = doc["tree"]["children"][0]["children"][1]
    assert (block1["name"], block1["path"], block1["params"]) == ("block 1", "0.block 1", 76)
    bias = block1["children"][0]["children"][1]
    assert bias == {
        "name": "bias",
        "path": "0.block 1.0.bias",
        "kind": "tensor",
        "dtype": "float32",
        "shape": [8],
        "numel": 8,
        "bytes": 32,
        "tied_to": None,
    }


def test_tree_shows_values_and_placeholders() -> None:
    out = run_cli("tree", SAMPLES / "trainer_checkpoint.pt").out
    assert "├── epoch  = 3\n" in out
    assert "└── args  <object argparse.Namespace>\n" in out
    assert "betas  = (0.9, 0.999)" in out


def test_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    save_file({"evil\x1b[31m\nname": torch.zeros(1)}, tmp_path / "e.safetensors")
    for command in ("tree", "shapes"):
        out = run_cli(command, tmp_path / "e.safetensors").out
        assert "\x1b" not in out and "evil\\x1b[31m\\nname" in out
    doc = json.loads(run_cli("shapes", tmp_path / "e.safetensors", "-f", "json").out)
    assert doc["tensors"][0]["name"] == "evil\x1b[31m\nname"  # JSON carries the real name, escaped by JSON


def test_read_only_commands_never_import_torch() -> None:
    code = (
        "import sys\n"
        "from paraminspect.cli import main\n"
        "for path in sys.argv[1:]:\n"
        "    assert main(['tree', path]) == 0 and main(['shapes', path]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported on a header-only path'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(SAMPLES / "tied.pt"), str(SAMPLES / "tied.safetensors")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_installed_script_and_python_dash_m() -> None:
    result = run_script("shapes", SAMPLES / "mlp.pt")
    assert (result.returncode, result.stdout, result.stderr) == (0, MLP_SHAPES_TABLE, "")
    proc = subprocess.run(
        [sys.executable, "-m", "paraminspect", "shapes", str(SAMPLES / "mlp.pt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout == MLP_SHAPES_TABLE


def test_closed_pipe_is_success() -> None:
    script = run_script("--version").args[0]
    proc = subprocess.run(
        f"'{script}' tree '{SAMPLES / 'rgnet.pt'}' | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        executable="/bin/bash",
        env={**os.environ, "PIPESTATUS_CHECK": "1"},
    )
    assert proc.stderr == ""
    status = subprocess.run(
        f"'{script}' tree '{SAMPLES / 'rgnet.pt'}' | head -c 10 > /dev/null; echo ${{PIPESTATUS[0]}}",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        executable="/bin/bash",
    )
    assert status.stdout.strip() == "0" and "Traceback" not in status.stderr


@pytest.mark.parametrize("no_color, coloured", [(None, True), ("1", False)])
def test_colour_only_on_a_tty_without_no_color(no_color: str | None, coloured: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color:
        env["NO_COLOR"] = no_color
    script = run_script("--version").args[0]
    leader, follower = pty.openpty()
    proc = subprocess.Popen([script, "tree", str(SAMPLES / "mlp.pt")], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(leader)
    assert (b"\x1b[" in b"".join(chunks)) is coloured
    assert "\x1b[" not in run_script("tree", SAMPLES / "mlp.pt").stdout  # a pipe never gets colour
