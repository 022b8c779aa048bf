"""Header-only fixtures shaped like real checkpoints (tests/quant_sparse.py), and the
start-up rule: ``shapes`` of an unquantized file never imports the recognisers.

Expected counts come from the models' published configs (the formulas in
quant_sparse.py, checked against the published totals), never from paraminspect.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import quant_sparse
from tests.conftest import run_cli

RECOGNISERS = (
    "paraminspect.quant.recognise",
    "paraminspect.quant.packed",
    "paraminspect.quant.others",
    "paraminspect.quant.fp4",
    "paraminspect.quant.config",
    "paraminspect.quant.small",
    "paraminspect.quant.common",
)


def _moe(tmp_path: Path, layers: int) -> None:
    c = {**quant_sparse.QWEN3_30B_A3B, "num_hidden_layers": layers}
    stored = quant_sparse.qwen3_moe(tmp_path / "model.safetensors", layers=layers)
    (tmp_path / "config.json").write_text(json.dumps(quant_sparse.qwen3_moe_config()))
    result = run_cli("shapes", "-f", "json", tmp_path / "model.safetensors")
    assert result.code == 0 and result.err == ""
    doc = json.loads(result.out)
    assert doc["total"]["numel"] == quant_sparse.qwen3_moe_params(c) and doc["total"]["bytes"] == stored
    experts = c["num_experts"]
    assert doc["total"]["tensors"] == 3 + layers * (4 + 2 + 1 + 3 * experts + 2)
    rows = {r["name"]: r for r in doc["tensors"]}
    down = rows[f"model.layers.{layers - 1}.mlp.experts.127.down_proj.weight"]
    assert (down["logical_dtype"], down["logical_shape"], down["scheme"]) == (
        "int4",
        [c["hidden_size"], c["moe_intermediate_size"]],
        "compressed-tensors g128",
    )
    assert "scheme" not in rows["model.layers.0.mlp.gate.weight"]


@pytest.mark.slow
def test_compressed_tensors_moe_header_only_count(tmp_path: Path) -> None:
    """Qwen3-30B-A3B at W4A16 (pack-quantized, 18,624 quantized linears): its 30.5B exactly."""
    assert quant_sparse.qwen3_moe_params(quant_sparse.QWEN3_30B_A3B) == 30_532_122_624
    _moe(tmp_path, quant_sparse.QWEN3_30B_A3B["num_hidden_layers"])


def test_compressed_tensors_moe_first_layers_count(tmp_path: Path) -> None:
    """The same MoE cut to its first 3 layers (1,164 quantized linears), in the default run."""
    _moe(tmp_path, 3)


def _imported(path: Path) -> list[str]:
    code = (
        "import sys, io, contextlib\n"
        "from paraminspect.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['shapes', sys.argv[1]]) == 0\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('paraminspect.quant')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_shapes_of_an_unquantized_file_imports_no_recogniser(tmp_path: Path) -> None:
    quant_sparse.llama_8b(tmp_path / "float.safetensors", gptq_bits=None)
    quant_sparse.llama_8b(tmp_path / "gptq.safetensors", gptq_bits=4)
    plain = _imported(tmp_path / "float.safetensors")
    assert not set(RECOGNISERS) & set(plain), plain
    quantized = _imported(tmp_path / "gptq.safetensors")
    assert {"paraminspect.quant.recognise", "paraminspect.quant.packed"} <= set(quantized)


def test_llama_float_and_gptq_fixtures_count_the_same(tmp_path: Path) -> None:
    for bits in (None, 4, 8):
        path = tmp_path / f"m{bits}.safetensors"
        quant_sparse.llama_8b(path, gptq_bits=bits)
        total = json.loads(run_cli("shapes", "-f", "json", path).out)["total"]
        assert total["numel"] == quant_sparse.llama_params(quant_sparse.LLAMA_8B) == 8_030_261_248


def test_descriptors_read_in_runs_give_each_its_own_values(tmp_path: Path) -> None:
    """weight_shape tensors read together (near ones merged into one read, far ones
    apart) each come back as written."""
    import numpy as np
    from safetensors.numpy import save_file

    from paraminspect.formats.opening import open_checkpoint
    from paraminspect.quant.small import integers_many

    tensors: dict[str, np.ndarray] = {}
    for n in range(40):
        tensors[f"m{n:02d}.weight_shape"] = np.array([n + 1, 7 * n + 3], dtype=np.int64)
        if n % 10 == 0:  # int64 too, so sorted in between: gaps of 80 B, 80 KB, 160 KB, 240 KB
            tensors[f"m{n:02d}.pad"] = np.zeros(n * 1000 + 10, dtype=np.int64)
    save_file(tensors, str(tmp_path / "d.safetensors"))
    ckpt = open_checkpoint(tmp_path / "d.safetensors")
    names = [n for n in ckpt.tensors if n.endswith("weight_shape")]
    got = integers_many([ckpt.tensors[n] for n in names])
    assert got == [tuple(int(x) for x in tensors[n]) for n in names]
    assert integers_many([ckpt.tensors["m00.pad"]]) == [None]  # too many values for a shape
