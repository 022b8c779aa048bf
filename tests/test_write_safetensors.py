"""The streaming safetensors writer, with torch and the safetensors library as oracles."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.conftest import SAMPLES, run_cli, run_script

# Every dtype both torch.save and safetensors hold.
DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.uint16,
    torch.float16,
    torch.bfloat16,
    torch.int32,
    torch.uint32,
    torch.float32,
    torch.float64,
    torch.int64,
    torch.uint64,
    torch.complex64,
    torch.float8_e5m2,
    torch.float8_e4m3fn,
    torch.float8_e5m2fnuz,
    torch.float8_e4m3fnuz,
    torch.float8_e8m0fnu,
]


def every_dtype_state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    for i, dtype in enumerate(DTYPES):
        raw = torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8, generator=generator)
        if dtype == torch.bool:
            state[f"t{i}.{dtype}"] = raw[..., 0] > 127
        else:
            width = torch.empty(0, dtype=dtype).element_size()
            state[f"t{i}.{dtype}"] = raw.view(dtype) if width <= 4 else torch.cat([raw, raw], -1).view(dtype)
    state["scalar"] = torch.tensor(2.5)
    state["empty"] = torch.zeros(0, 3)
    return state


def bits(t: torch.Tensor) -> torch.Tensor:
    """Compare bit patterns (NaN == NaN, -0 != +0)."""
    return t.contiguous().reshape(-1).view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8).reshape(-1)


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for name, left in a.items():
        right = b[name]
        assert left.dtype == right.dtype, name
        assert left.shape == right.shape, name
        assert torch.equal(bits(left), bits(right)), name


def test_convert_is_byte_identical_to_safetensors_save_file(tmp_path: Path) -> None:
    state = every_dtype_state()
    torch.save(state, tmp_path / "all.pt")
    save_file(state, str(tmp_path / "official.safetensors"))
    result = run_cli("convert", tmp_path / "all.pt", tmp_path / "ours.safetensors")
    assert result.code == 0, result.err
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "official.safetensors").read_bytes()


def test_output_opens_with_safetensors_and_torch_bit_identical(tmp_path: Path) -> None:
    state = every_dtype_state()
    # A transposed view and a slice: the writer must materialise them contiguously.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state["view.t"] = base.t()
    state["view.slice"] = base[1:3, 2:5]
    torch.save(state, tmp_path / "in.pt")
    assert run_cli("convert", tmp_path / "in.pt", tmp_path / "out.safetensors").code == 0
    loaded = load_file(str(tmp_path / "out.safetensors"))
    assert_bit_identical({k: v.contiguous() for k, v in state.items()}, loaded)
    with safe_open(str(tmp_path / "out.safetensors"), framework="numpy") as f:
        assert sorted(f.keys()) == sorted(state)


@pytest.mark.parametrize("via", ["safetensors"])
def test_round_trip_pt_safetensors_pt_is_exact(tmp_path: Path, via: str) -> None:
    state = every_dtype_state()
    torch.save(state, tmp_path / "a.pt")
    assert run_cli("convert", tmp_path / "a.pt", tmp_path / f"b.{via}").code == 0
    assert run_cli("convert", tmp_path / f"b.{via}", tmp_path / "c.pt").code == 0
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert_bit_identical(state, back)


def header(path: Path) -> dict[str, object]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    parsed: dict[str, object] = json.loads(raw[8 : 8 + n])
    return parsed


def test_tied_weights_stored_once_with_save_model_metadata(tmp_path: Path) -> None:
    out = tmp_path / "tied.safetensors"
    assert run_cli("convert", SAMPLES / "tied.pt", out).code == 0
    ours, official = header(out), header(SAMPLES / "tied.safetensors")  # written by save_model
    assert ours == official
    # Back to .pt: the tie is a shared tensor again.
    assert run_cli("convert", out, tmp_path / "tied.pt").code == 0
    back = torch.load(tmp_path / "tied.pt", weights_only=True)
    assert back["2.weight"].data_ptr() == back["4.weight"].data_ptr()
    assert_bit_identical(torch.load(SAMPLES / "tied.pt", weights_only=True), back)


def test_safetensors_metadata_survives_rename(tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    save_file({"enc.w": torch.ones(2), "dec.w": torch.zeros(3)}, str(src), metadata={"format": "pt"})
    assert run_cli("rename", src, "enc.=encoder.", "-o", tmp_path / "r.safetensors").code == 0
    h = header(tmp_path / "r.safetensors")
    assert h["__metadata__"] == {"format": "pt"}
    assert sorted(k for k in h if k != "__metadata__") == ["dec.w", "encoder.w"]


def test_convert_to_safetensors_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from paraminspect.cli import main; "
        f"rc = main(['convert', {str(SAMPLES / 'mlp.pt')!r}, {str(tmp_path / 'o.safetensors')!r}]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_pinned_summary_text(tmp_path: Path) -> None:
    out = tmp_path / "mlp.safetensors"
    proc = run_script("rename", SAMPLES / "mlp.safetensors", "0.=first.", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (
        f"rename: wrote {out} (safetensors, 4 tensors, 460 B), verified\n"
        "  renamed   0.bias -> first.bias\n"
        "  renamed   0.weight -> first.weight\n"
    )


def test_copy_in_short_odd_chunks_is_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries (and the checksum carried across them) and thread count do not change the bytes."""
    from paraminspect.edit.writers import copying
    from paraminspect.edit.writers import safetensors as safetensors_write

    src = SAMPLES / "rgnet.safetensors"
    assert run_cli("rename", src, "0.=zero.", "-o", tmp_path / "b.safetensors").code == 0
    monkeypatch.setattr(copying, "CHUNK_BYTES", 7)  # many short chunks, odd size
    monkeypatch.setattr(safetensors_write, "COPY_THREADS", 1)  # and one copying thread, not two
    assert run_cli("rename", src, "0.=zero.", "-o", tmp_path / "a.safetensors").code == 0
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    original, renamed = load_file(str(src)), load_file(str(tmp_path / "a.safetensors"))
    assert all(torch.equal(v, renamed["zero." + k[2:] if k.startswith("0.") else k]) for k, v in original.items())


def test_without_preadv_the_pread_fallback_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Platforms without os.preadv use os.pread."""
    monkeypatch.delattr(os, "preadv")
    src = SAMPLES / "rgnet.safetensors"
    assert run_cli("drop", src, "1", "-o", tmp_path / "a.safetensors").code == 0
    assert load_file(str(tmp_path / "a.safetensors")).keys() == {
        k for k in load_file(str(src)) if not k.startswith("1.")
    }
