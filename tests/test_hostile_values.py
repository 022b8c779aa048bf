"""Hostile inputs that must be read correctly, not just refused: big-endian archives,
names carrying terminal escapes; and the safetensors corpus against the official loader."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from paraminspect import open_checkpoint
from paraminspect.data.arrays import iter_chunks, read_array
from tests.conftest import run_cli, run_script
from tests.hostile_safetensors import SAFETENSORS_JSON_QUIRKS, SAFETENSORS_OFFICIAL

BIG_ENDIAN_DTYPES = {
    "f32": torch.float32,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "f64": torch.float64,
    "i16": torch.int16,
    "i64": torch.int64,
    "c64": torch.complex64,
    "u8": torch.uint8,
}


def _to_big_endian(source: Path, target: Path, itemsizes: dict[str, int]) -> None:
    """Rewrite a little-endian torch.save archive as a big-endian machine would have written it."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            name = info.filename.split("/", 1)[1]
            if name == "byteorder":
                data = b"big"
            elif name.startswith("data/"):
                width = itemsizes[name.split("/")[1]]
                data = np.frombuffer(data, dtype=f"u{width}").byteswap().tobytes() if width > 1 else data
            dst.writestr(info.filename, data)


def test_big_endian_archive_decodes_to_torchs_values(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    state = {}
    for name, dtype in BIG_ENDIAN_DTYPES.items():
        base = torch.randn(3, 5, generator=generator, dtype=torch.float64) * 100
        state[name] = base.to(dtype)
    state["f32_t"] = state["f32"].t()  # a strided view over a swapped storage
    torch.save(state, tmp_path / "little.pt")
    # Storage keys are handed out in pickling order, one per tensor here (the view shares "0").
    # complex64 swaps per 4-byte component, as torch does.
    sizes = {str(i): (4 if d is torch.complex64 else d.itemsize) for i, d in enumerate(BIG_ENDIAN_DTYPES.values())}
    _to_big_endian(tmp_path / "little.pt", tmp_path / "big.pt", sizes)
    expected = torch.load(tmp_path / "big.pt", weights_only=True)  # torch swaps on load
    for name, tensor in state.items():
        assert torch.equal(expected[name], tensor), name
    tensors = open_checkpoint(tmp_path / "big.pt").tensors
    for name, tensor in state.items():
        want = tensor.float().numpy() if tensor.dtype is torch.bfloat16 else tensor.numpy()
        got = read_array(tensors[name])
        assert got.dtype.isnative, name
        np.testing.assert_array_equal(got.astype(want.dtype), want, err_msg=name)
        chunks = np.concatenate(list(iter_chunks(tensors[name], chunk_elements=4)))
        np.testing.assert_array_equal(chunks.astype(want.dtype), want.reshape(-1), err_msg=name)


NASTY = "evil\x1b[31m.red\nline\r.bell\x07"


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_names_with_escapes_and_newlines_print_escaped(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"n.{fmt}"
    state = {NASTY: torch.ones(2), "ok": torch.zeros(1)}
    if fmt == "pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    for command in ("tree", "shapes"):
        result = run_script(command, path)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\x07" not in result.stdout
        assert "\\x1b[31m" in result.stdout and "\\n" in result.stdout
        lines = result.stdout.splitlines()
        if command == "shapes":  # header, rule, two rows, rule, total
            assert len(lines) == 6 and lines[2].startswith("evil\\x1b[31m.red\\nline\\r.bell\\x07  float32  [2]")
        else:  # title, then the nodes 'evil\x1b[31m', 'red\nline\r', 'bell\x07' and 'ok'
            assert [line.split("── ")[1].split()[0] for line in lines[1:]] == [
                "evil\\x1b[31m",
                "red\\nline\\r",
                "bell\\x07",
                "ok",
            ]
    doc = json.loads(run_cli("shapes", "--format", "json", path).out)
    assert {t["name"] for t in doc["tensors"]} == {NASTY, "ok"}  # JSON keeps the exact name


@pytest.mark.parametrize("case", sorted(SAFETENSORS_OFFICIAL))
def test_official_loader_refuses_the_same_safetensors_defects(tmp_path: Path, case: str) -> None:
    build, _ = SAFETENSORS_OFFICIAL[case]
    path = tmp_path / "x.safetensors"
    build(path, tmp_path / "marker")
    with pytest.raises(SafetensorError), safe_open(str(path), framework="numpy") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            f.get_slice(name)


@pytest.mark.parametrize("case", sorted(SAFETENSORS_JSON_QUIRKS))
def test_json_quirks_are_refused_in_process(tmp_path: Path, case: str) -> None:
    build, reason = SAFETENSORS_JSON_QUIRKS[case]
    path = tmp_path / "x.safetensors"
    build(path, tmp_path / "marker")
    result = run_cli("shapes", path)
    assert result.code == 2 and reason in result.err
