"""Quantized layouts recognised from headers (issue 14): logical dtype and shape,
exact parameter counts, bits per weight from the stored bytes, one row per weight.

Layouts are built with numpy (tests/quant_layouts.py) and written by safetensors;
torch's own quantized tensors by torch.save. Expected numbers come from the
arrays written (numpy nbytes, the float matrix's shape) or from torch, never
from paraminspect.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests import quant_layouts as layouts
from tests.conftest import run_cli
from tests.quant_sparse import LLAMA_8B, llama_8b, llama_params

OUT, IN = 64, 256

CASES = {
    # name: (builder, logical dtype, scheme label, storage leaves)
    "gptq": (lambda w: layouts.gptq(w, 4, 128, "l."), "int4", "gptq g128", ["qweight", "qzeros", "scales", "g_idx"]),
    "gptq8": (lambda w: layouts.gptq(w, 8, 64, "l."), "int8", "gptq g64", ["qweight", "qzeros", "scales", "g_idx"]),
    "awq": (lambda w: layouts.awq(w, 128, "l."), "int4", "awq g128", ["qweight", "qzeros", "scales"]),
    "ct": (
        lambda w: layouts.compressed(w, 4, 32, "l."),
        "int4",
        "compressed-tensors g32",
        ["weight_packed", "weight_shape", "weight_scale"],
    ),
    "mlx": (lambda w: layouts.mlx(w, 4, 64, "l."), "int4", "mlx g64", ["weight", "scales", "biases"]),
    "int8": (lambda w: layouts.bnb_int8(w, "l."), "int8", "bnb int8", ["weight", "SCB"]),
    "nf4": (
        lambda w: layouts.bnb_nf4(w, 64, "l."),
        "nf4",
        "bnb nf4 b64",
        ["weight", "weight.absmax", "weight.quant_map", "weight.quant_state.bitsandbytes__nf4"],
    ),
    "fp8": (lambda w: layouts.fp8(w, "l."), "float8_e4m3fn", "fp8 channel", ["weight", "weight_scale"]),
}


def _write(tmp_path: Path, case: str) -> tuple[Path, dict[str, np.ndarray]]:
    builder = CASES[case][0]
    tensors, _ = builder(layouts.matrix(OUT, IN))
    tensors["l.bias"] = np.arange(OUT, dtype=np.float32)
    path = tmp_path / f"{case}.safetensors"
    save_file(tensors, str(path))
    return path, tensors


@pytest.mark.parametrize("case", list(CASES))
def test_each_layout_is_one_logical_row(tmp_path: Path, case: str) -> None:
    _, dtype, label, leaves = CASES[case]
    path, tensors = _write(tmp_path, case)
    result = run_cli("shapes", "-f", "json", path)
    assert result.code == 0, result.err
    rows = {r["name"]: r for r in json.loads(result.out)["tensors"]}
    assert sorted(rows) == ["l.bias", "l.weight"]
    row = rows["l.weight"]
    storage = [f"l.{leaf}" for leaf in leaves]
    stored = sum(tensors[n].nbytes for n in storage)
    assert row["logical_dtype"] == row["dtype"] == dtype
    assert row["logical_shape"] == row["shape"] == [OUT, IN]
    assert row["numel"] == OUT * IN
    assert row["bytes"] == stored
    assert row["bits_per_weight"] == pytest.approx(stored * 8 / (OUT * IN))
    assert row["scheme"] == label
    assert sorted(row["storage"]) == sorted(storage)
    total = json.loads(result.out)["total"]
    assert total["numel"] == OUT * IN + OUT
    assert total["bytes"] == sum(a.nbytes for a in tensors.values())  # storage bytes stay exact


@pytest.mark.parametrize("case", ["gptq", "nf4"])
def test_raw_shows_the_stored_tensors(tmp_path: Path, case: str) -> None:
    from safetensors import safe_open

    path, _ = _write(tmp_path, case)
    result = run_cli("shapes", "--raw", "-f", "json", path)
    rows = json.loads(result.out)["tensors"]
    with safe_open(str(path), framework="numpy") as f:
        expected = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    assert {r["name"]: r["shape"] for r in rows} == expected
    assert all("scheme" not in r for r in rows)


def test_tree_line_and_totals(tmp_path: Path) -> None:
    path, tensors = _write(tmp_path, "gptq")
    stored = sum(a.nbytes for n, a in tensors.items() if n != "l.bias")
    bpw = round(stored * 8 / (OUT * IN), 2)
    result = run_cli("tree", path)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert f"    └── weight  int4 [{OUT}, {IN}]  (gptq g128, {bpw:g} bpw)" in lines
    assert f"({OUT * IN + OUT} params" in lines[0] or "16.4K params" in lines[0]
    doc = json.loads(run_cli("tree", "-f", "json", path).out)
    assert doc["params"] == OUT * IN + OUT and doc["tensors"] == 2
    weight = next(c for c in doc["tree"]["children"][0]["children"] if c["name"] == "weight")
    assert weight["storage"] == ["l.qweight", "l.qzeros", "l.scales", "l.g_idx"] or sorted(weight["storage"]) == sorted(
        ["l.qweight", "l.qzeros", "l.scales", "l.g_idx"]
    )


def test_by_prefix_and_max_params_count_logical_parameters(tmp_path: Path) -> None:
    path, tensors = _write(tmp_path, "awq")
    doc = json.loads(run_cli("shapes", "--by-prefix", "1", "-f", "json", path).out)
    assert doc["total"]["params"] == OUT * IN + OUT
    assert doc["total"]["bytes"] == sum(a.nbytes for a in tensors.values())
    spec = tmp_path / "spec.json"
    spec.write_text(run_cli("shapes", "-f", "json", path).out)
    ok = run_cli("check", path, "--expect", spec, "--max-params", str(OUT * IN + OUT))
    over = run_cli("check", path, "--expect", spec, "--max-params", str(OUT * IN + OUT - 1), "-f", "json")
    assert ok.code == 0, ok.out + ok.err
    assert over.code == 1 and json.loads(over.out)["params"] == OUT * IN + OUT
    # The logical weight is checked as shapes lists it; --raw checks the stored tensors.
    logical = json.loads(run_cli("check", path, "--expect", spec, "-f", "json").out)
    assert logical["ok"] and logical["counts"]["matching"] == 2
    raw_spec = tmp_path / "raw.json"
    raw_spec.write_text(run_cli("shapes", "--raw", "-f", "json", path).out)
    assert run_cli("check", "--raw", path, "--expect", raw_spec).code == 0
    drift = json.loads(run_cli("check", path, "--expect", raw_spec, "-f", "json").out)
    assert drift["counts"]["missing"] == 3 and drift["counts"]["unexpected"] == 1


def test_a_layout_that_does_not_add_up_stays_storage(tmp_path: Path) -> None:
    tensors, _ = layouts.gptq(layouts.matrix(OUT, IN), 4, 128, "l.")
    tensors["l.scales"] = tensors["l.scales"][:, :-1].copy()  # one output column short
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "gptq", "bits": 4}}))
    result = run_cli("shapes", "-f", "json", tmp_path / "bad.safetensors")
    names = [r["name"] for r in json.loads(result.out)["tensors"]]
    assert sorted(names) == sorted(tensors)
    assert "shown as stored" in result.err


def test_config_that_disagrees_with_the_tensors_gets_a_note(tmp_path: Path) -> None:
    tensors, _ = layouts.gptq(layouts.matrix(OUT, IN), 4, 128, "l.")
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}})
    )
    result = run_cli("shapes", "-f", "json", tmp_path / "model.safetensors")
    assert json.loads(result.out)["tensors"][0]["scheme"] == "gptq g128"
    assert "config says awq, tensors are packed as gptq; read as gptq" in result.err
    assert result.err.startswith(f"paraminspect: note: {tmp_path / 'model.safetensors'}: ")


def test_config_bits_and_group_size_are_used(tmp_path: Path) -> None:
    # 4-bit group 64 and 8-bit group 32 give the same MLX shapes: only the config tells.
    tensors, _ = layouts.mlx(layouts.matrix(OUT, IN), 8, 32, "l.")
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"quantization": {"group_size": 32, "bits": 8}}))
    row = json.loads(run_cli("shapes", "-f", "json", tmp_path / "model.safetensors").out)["tensors"][0]
    assert (row["logical_dtype"], row["logical_shape"], row["scheme"]) == ("int8", [OUT, IN], "mlx g32")


def test_torch_quantized_tensors_have_logical_dtype_and_shape(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = torch.randn(6, 10)
        sd = {
            "pt": torch.quantize_per_tensor(a, 0.05, 7, torch.quint8),
            "pc": torch.quantize_per_channel(a, torch.rand(6) + 0.1, torch.arange(6), 0, torch.qint8),
            "f": torch.ones(3),
        }
    torch.save(sd, tmp_path / "q.pt")
    doc = json.loads(run_cli("shapes", "-f", "json", tmp_path / "q.pt").out)
    rows = {r["name"]: r for r in doc["tensors"]}
    for name in ("pt", "pc"):
        q = sd[name]
        assert rows[name]["logical_dtype"] == str(q.dtype).removeprefix("torch.")
        assert rows[name]["logical_shape"] == list(q.shape) and rows[name]["numel"] == q.numel()
    scales = sd["pc"].q_per_channel_scales()
    zeros = sd["pc"].q_per_channel_zero_points()
    per_channel = sd["pc"].numel() * 1 + scales.numel() * scales.element_size() + zeros.numel() * zeros.element_size()
    assert rows["pc"]["bytes"] == per_channel
    assert rows["pt"]["scheme"] == "torch per-tensor affine"
    assert doc["total"]["numel"] == sd["pt"].numel() + sd["pc"].numel() + 3


def test_llama_31_8b_gptq_header_only_parameter_count(tmp_path: Path) -> None:
    """A sparse file with Llama-3.1-8B's 4-bit GPTQ header: the logical count is exact."""
    c = LLAMA_8B
    assert llama_params(c) == 8_030_261_248
    h = c["hidden_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    path = tmp_path / "model.safetensors"
    offset = llama_8b(path, gptq_bits=4, group=128)  # sparse: no tensor byte is written or read
    (tmp_path / "config.json").write_text(
        json.dumps({**c, "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}})
    )
    doc = json.loads(run_cli("shapes", "-f", "json", path).out)
    assert doc["total"]["numel"] == llama_params(c)
    assert doc["total"]["bytes"] == offset
    assert doc["total"]["tensors"] == 2 + 1 + c["num_hidden_layers"] * (7 + 2)
    q = next(r for r in doc["tensors"] if r["name"] == "model.layers.0.self_attn.k_proj.weight")
    assert (q["logical_dtype"], q["logical_shape"], q["scheme"]) == ("int4", [kv, h], "gptq g128")
    sizes = json.loads(run_cli("shapes", "--by-prefix", "2", "-f", "json", path).out)
    assert sizes["total"]["params"] == llama_params(c) and sizes["total"]["bytes"] == offset


def test_recognition_is_header_only(tmp_path: Path) -> None:
    """tree and shapes of quantized files (a descriptor read included) never import numpy or torch."""
    import subprocess
    import sys

    paths = [_write(tmp_path, case)[0] for case in ("gptq", "ct", "nf4", "mlx")]
    code = (
        "import sys\n"
        "from paraminspect.cli import main\n"
        "for path in sys.argv[1:]:\n"
        "    assert main(['tree', path]) == 0 and main(['shapes', '-f', 'json', path]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported on a header-only path'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"scheme"') == 4


def test_a_real_tensor_of_the_logical_name_keeps_everything_stored(tmp_path: Path) -> None:
    tensors, _ = layouts.compressed(layouts.matrix(OUT, IN), 4, 32, "l.")
    tensors["l.weight"] = np.zeros((OUT, IN), dtype=np.float16)  # never hide a tensor behind a logical row
    save_file(tensors, str(tmp_path / "both.safetensors"))
    rows = json.loads(run_cli("shapes", "-f", "json", tmp_path / "both.safetensors").out)["tensors"]
    assert sorted(r["name"] for r in rows) == sorted(tensors)
    assert all("scheme" not in r for r in rows)
