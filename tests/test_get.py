"""``get``: values equal torch.load's for every dtype and view, text equals str(tensor)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paraminspect import CheckpointError, open_checkpoint
from paraminspect.data import peek
from paraminspect.data.arrays import read_array, read_indices
from paraminspect.inspect.get import report
from paraminspect.output.printing import PrintOptions, python_values
from tests.conftest import SAMPLES, run_cli, run_script
from tests.test_formats_torchzip import DTYPES


def _with_nonfinite(dtype: torch.dtype) -> torch.Tensor:
    base = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    if dtype.is_floating_point or dtype.is_complex:
        base[0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    return base.to(dtype)


def _json_expected(t: torch.Tensor) -> object:
    """torch's own tolist(), in the JSON conventions (NaN/Inf strings, complex pairs)."""

    def convert(v: object) -> object:
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, complex):
            return [convert(v.real), convert(v.imag)]
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return v

    return convert(t.tolist())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_and_view_matches_torch(tmp_path: Path, dtype: torch.dtype) -> None:
    base = _with_nonfinite(dtype)
    sd = {"whole": base, "t": base.t(), "cols": base[1:4, ::2], "scalar": base[1, 1], "empty": base[:0]}
    torch.save(sd, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    result = run_cli("get", tmp_path / "m.pt", *sd, "--format", "json")
    assert result.code == 0, result.err
    entries = json.loads(result.out)["entries"]
    assert [e["name"] for e in entries] == list(sd)
    text = run_cli("get", tmp_path / "m.pt", *sd).out
    blocks = text.split("\n\n")
    for entry, block, (name, expected) in zip(entries, blocks, loaded.items(), strict=True):
        assert entry["dtype"] == str(dtype).removeprefix("torch.")
        assert entry["shape"] == list(expected.shape)
        # Exact: float64 widening of the stored bits, as tensor.tolist() gives.
        assert entry["values"] == _json_expected(expected), name
        header = f"{name}  {entry['dtype']} [{', '.join(map(str, expected.shape))}]"
        assert block.rstrip("\n") == f"{header}\n{expected!s}", name


def test_pinned_sample_output() -> None:
    result = run_cli("get", SAMPLES / "mlp.pt", "2.bias")
    assert result.out == "2.bias  float32 [1]\ntensor([-0.1568])\n"
    proc = run_script("get", SAMPLES / "mlp.safetensors", "2.bias", "--format", "csv")
    assert proc.stdout == "name,index,value\n2.bias,[0],-0.15679916739463806\n"


def test_index_form_and_subtree_follow_the_chapter() -> None:
    rgnet = torch.load(SAMPLES / "rgnet.pt", weights_only=True)
    result = run_cli("get", SAMPLES / "rgnet.pt", "[0][1][0].bias")
    assert result.out == f"0.block 1.0.bias  float32 [8]\n{rgnet['0.block 1.0.bias']}\n"
    subtree = json.loads(run_cli("get", SAMPLES / "rgnet.safetensors", "0.block 1", "-f", "json").out)["entries"]
    # safetensors writers reorder tensors, so its names come in natural order.
    assert [e["name"] for e in subtree] == sorted(n for n in rgnet if n.startswith("0.block 1."))
    for e in subtree:
        assert e["values"] == rgnet[e["name"]].tolist()


def test_non_tensor_leaves_print_as_values() -> None:
    result = run_cli("get", SAMPLES / "trainer_checkpoint.pt", "epoch", "optimizer.param_groups.0.betas", "args")
    assert result.out == (
        "epoch  int\n3\n\noptimizer.param_groups.0.betas  tuple\n(0.9, 0.999)\n\n"
        "args  argparse.Namespace\n<object argparse.Namespace>\n\nargs.lr  float\n0.001\n\n"
        "args.batch_size  int\n2\n"
    )
    doc = json.loads(run_cli("get", SAMPLES / "trainer_checkpoint.pt", "epoch", "-f", "json").out)
    assert doc["entries"] == [{"name": "epoch", "kind": "value", "type": "int", "value": 3}]


def test_large_tensor_reads_only_the_corners_and_prints_like_torch(tmp_path: Path) -> None:
    t = torch.randn(3000, 50, generator=torch.Generator().manual_seed(3)).t()  # a transposed view
    save_file({"w": t.contiguous(), "b": torch.arange(2000)}, tmp_path / "m.safetensors")
    torch.save({"w": t}, tmp_path / "m.pt")
    for path in (tmp_path / "m.pt", tmp_path / "m.safetensors"):
        entry = report(open_checkpoint(path), ["w"]).entries[0]
        assert [len(row) for row in entry.array] == [6] * 6 and not entry.complete
        assert run_cli("get", path, "w").out == f"w  float32 [50, 3000]\n{t}\n"
    with torch._tensor_str.printoptions(threshold=math.inf, precision=2):
        expected = str(torch.arange(2000))
    full = run_cli("get", tmp_path / "m.safetensors", "b", "--full", "--precision", "2")
    assert full.out == f"b  int64 [2000]\n{expected}\n"
    entry = report(open_checkpoint(tmp_path / "m.pt"), ["w"], PrintOptions(), every_value=True).entries[0]
    assert entry.complete and entry.array.shape == (50, 3000)


def test_unknown_name_suggests_the_closest() -> None:
    proc = run_script("get", SAMPLES / "mlp.pt", "2.bais")
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr == f"paraminspect: error: {SAMPLES / 'mlp.pt'}: no name matches '2.bais'; did you mean '2.bias'?\n"
    )


def test_get_and_stats_never_import_torch() -> None:
    code = (
        "import sys; from paraminspect.cli import main; "
        f"assert main(['get', {str(SAMPLES / 'mlp.pt')!r}, '0', '-f', 'json']) == 0; "
        f"assert main(['get', {str(SAMPLES / 'rgnet.safetensors')!r}, '[0][1]']) == 0; "
        f"assert main(['stats', {str(SAMPLES / 'trainer_checkpoint.pt')!r}, '--by-prefix', '1']) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_standard_library_peek_equals_numpy_decoding(tmp_path: Path, dtype: torch.dtype) -> None:
    base = _with_nonfinite(dtype)
    torch.save({"t": base.t(), "cols": base[1:4, ::2], "scalar": base[1, 1]}, tmp_path / "m.pt")
    for ref in open_checkpoint(tmp_path / "m.pt").tensors.values():
        if not peek.can_peek(ref):
            continue
        everything = [list(range(n)) for n in ref.shape]
        assert repr(peek.read_shown(ref, everything)) == repr(python_values(read_array(ref), ref.dtype.name))
        corner = [[0, n - 1] for n in ref.shape]
        assert repr(peek.read_shown(ref, corner)) == repr(python_values(read_indices(ref, corner), ref.dtype.name))


def test_default_get_does_not_import_numpy() -> None:
    """Printing a few values needs no numpy: it would double get's start-up time."""
    code = (
        "import sys; from paraminspect.cli import main; "
        f"assert main(['get', {str(SAMPLES / 'rgnet.pt')!r}, '0']) == 0; "
        "assert 'numpy' not in sys.modules, 'numpy was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    torch.save({"evil\x1b[31m.w\n": torch.ones(2)}, tmp_path / "m.pt")
    result = run_cli("get", tmp_path / "m.pt", "evil*")
    assert result.out == "evil\\x1b[31m.w\\n  float32 [2]\ntensor([1., 1.])\n"
    doc = json.loads(run_cli("get", tmp_path / "m.pt", "evil*", "-f", "json").out)
    assert doc["entries"][0]["name"] == "evil\x1b[31m.w\n"  # JSON escapes it itself, exactly


def test_safetensors_every_dtype_matches_torch(tmp_path: Path) -> None:
    """The same values through the safetensors reader (it has no complex128)."""
    tensors = {str(d).removeprefix("torch."): _with_nonfinite(d) for d in DTYPES if d is not torch.complex128}
    save_file(tensors, tmp_path / "m.safetensors")
    entries = json.loads(run_cli("get", tmp_path / "m.safetensors", "*", "-f", "json").out)["entries"]
    assert {e["name"] for e in entries} == set(tensors)
    for entry in entries:
        expected = tensors[entry["name"]]
        assert entry["values"] == _json_expected(expected), entry["name"]
    text = run_cli("get", tmp_path / "m.safetensors", "*").out
    for block in text.rstrip("\n").split("\n\n"):
        header, body = block.split("\n", 1)
        assert body == str(tensors[header.split("  ")[0]]), header


def test_truncated_data_fails_before_any_output(tmp_path: Path) -> None:
    """The header may look whole while the data is cut short: JSON/CSV check every
    tensor's byte range up front rather than stopping half-way through the output."""
    save_file({"a": torch.ones(10), "b": torch.ones(100)}, tmp_path / "m.safetensors")
    ckpt = open_checkpoint(tmp_path / "m.safetensors")
    with open(tmp_path / "m.safetensors", "r+b") as fh:
        fh.truncate(fh.seek(0, 2) - 8)
    for stream in (True, False):
        with pytest.raises(CheckpointError, match="past the end of the file"):
            report(ckpt, ["a", "b"], stream=stream)


def test_csv_parses_back_to_torch_values(tmp_path: Path) -> None:
    import csv
    import io

    sd = {
        'w,"odd"': torch.randn(3, 4),
        "c": torch.tensor([1 + 2j, 3 - 4j]),
        "s": torch.tensor(2.5),
        "b": torch.arange(3),
    }
    torch.save(sd, tmp_path / "m.pt")
    out = run_script("get", tmp_path / "m.pt", *sd, "-f", "csv").stdout
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["name", "index", "value"]
    expected = [["name", "index", "value"]]
    for name, t in sd.items():
        for index in (
            (list(i) for i in torch.cartesian_prod(*(torch.arange(n) for n in t.shape)).reshape(t.numel(), -1).tolist())
            if t.dim()
            else [[]]
        ):
            v = t[tuple(index)].item()
            cell = json.dumps([v.real, v.imag]) if isinstance(v, complex) else str(v)
            expected.append([name, "[" + ", ".join(map(str, index)) + "]", cell])
    assert rows == expected


def test_every_reader_feeds_get_and_stats(tmp_path: Path) -> None:
    """Values come through the shared model, whatever format holds them: legacy and sharded too."""
    torch.manual_seed(0)
    sd = {"a.w": torch.randn(40, 50), "a.b": torch.randn(5).bfloat16(), "c": torch.arange(7)}
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file({"a.w": sd["a.w"]}, tmp_path / "s1.safetensors")
    save_file({"a.b": sd["a.b"], "c": sd["c"]}, tmp_path / "s2.safetensors")
    weight_map = {"a.w": "s1.safetensors", "a.b": "s2.safetensors", "c": "s2.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for path in (tmp_path / "legacy.pt", tmp_path / "model.safetensors.index.json"):
        entries = json.loads(run_cli("get", path, "a.w", "a.b", "c", "-f", "json").out)["entries"]
        assert [e["values"] for e in entries] == [t.tolist() for t in sd.values()], path
        assert run_cli("get", path, "a.w").out == f"a.w  float32 [40, 50]\n{sd['a.w']!s}\n"
        total = json.loads(run_cli("stats", path, "-f", "json").out)["total"]
        assert total["numel"] == 2012 and total["max"] == max(t.max().item() for t in sd.values())
