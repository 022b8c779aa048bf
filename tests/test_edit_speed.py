"""The edit fast paths: recorded zip CRCs, early writeback, the official check alongside ours."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from paraminspect.edit import verify
from paraminspect.edit.writers import safetensors as safetensors_write
from paraminspect.edit.writers import writeback
from paraminspect.formats.opening import open_checkpoint
from tests.conftest import run_cli


def save_pt(path: Path) -> dict[str, torch.Tensor]:
    base = torch.arange(64, dtype=torch.float32)
    state = {
        "whole": torch.randn(8, 16, generator=torch.Generator().manual_seed(0)),
        "part": base[8:40],  # a view: its bytes are part of a bigger record
        "b": torch.tensor([1, 2, 3], dtype=torch.int16),
    }
    torch.save(state, path)
    return state


def test_torch_zip_storages_carry_the_zip_crc(tmp_path: Path) -> None:
    save_pt(tmp_path / "m.pt")
    ckpt = open_checkpoint(tmp_path / "m.pt")
    with zipfile.ZipFile(tmp_path / "m.pt") as zf:
        by_key = {i.filename.rsplit("/", 1)[1]: i for i in zf.infolist() if "/data/" in i.filename}
        for ref in ckpt.tensors.values():
            info = by_key[ref.storage.key]
            assert ref.storage.recorded_crc == info.CRC == zlib.crc32(zf.read(info))
    # The CRC is not part of a storage's identity (tied weights stay tied).
    ref = ckpt.tensors["whole"]
    assert ref.storage == ref.storage.__class__(
        *[getattr(ref.storage, f) for f in ("path", "key", "offset", "nbytes", "dtype")]
    )


def test_convert_uses_recorded_crc_only_for_whole_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = save_pt(tmp_path / "m.pt")
    returned: list[dict[str, int]] = []
    compared: list[tuple[int, int]] = []
    real_write, real_same = safetensors_write.write, verify.same_bytes

    def recording(*args: Any) -> dict[str, int]:
        returned.append(real_write(*args))
        return returned[-1]

    def comparing(pair: Any) -> bool:
        compared.append(pair[1].byte_range())
        return real_same(pair)

    monkeypatch.setattr(safetensors_write, "write", recording)
    monkeypatch.setattr(verify, "same_bytes", comparing)
    result = run_cli("convert", tmp_path / "m.pt", tmp_path / "m.safetensors")
    assert result.code == 0, result.err
    ckpt = open_checkpoint(tmp_path / "m.pt")
    # The whole records carry the zip's CRC; the view, a plain copy, is compared with its source bytes.
    assert returned == [{n: ckpt.tensors[n].storage.recorded_crc for n in ("whole", "b")}]
    assert compared == [ckpt.tensors["part"].byte_range()]
    loaded = load_file(tmp_path / "m.safetensors")
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor)


def test_source_not_matching_its_recorded_crc_fails_and_leaves_nothing(tmp_path: Path) -> None:
    save_pt(tmp_path / "m.pt")
    ref = open_checkpoint(tmp_path / "m.pt").tensors["whole"]
    with open(tmp_path / "m.pt", "r+b") as fh:  # damage the data, not the zip directory
        fh.seek(ref.storage.offset + 5)
        byte = fh.read(1)
        fh.seek(ref.storage.offset + 5)
        fh.write(bytes([byte[0] ^ 0xFF]))
    result = run_cli("convert", tmp_path / "m.pt", tmp_path / "m.safetensors")
    assert result.code == 2
    reason = "written file failed verification: checksum of 'whole' differs"
    assert result.err == f"paraminspect: error: {tmp_path / 'm.safetensors'}: {reason}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_zero_recorded_crc_means_unknown(tmp_path: Path) -> None:
    save_pt(tmp_path / "m.pt")
    ckpt = open_checkpoint(tmp_path / "m.pt")
    storage = ckpt.tensors["whole"].storage
    unknown = storage.__class__(
        storage.path, storage.key, storage.offset, storage.nbytes, storage.dtype, "little", None
    )
    assert unknown == storage
    ref = ckpt.tensors["whole"]
    assert safetensors_write.recorded_crc(ref) == storage.recorded_crc
    assert safetensors_write.recorded_crc(ref.__class__(ref.dtype, ref.shape, ref.strides, unknown)) is None


def test_writeback_hints_cover_every_written_byte_in_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int, int]] = []
    monkeypatch.setitem(writeback._call, "fn", lambda *args: calls.append(args) or 0)
    with writeback.Writeback(7, step=100) as wb:
        first, second = wb.stream(0), wb.stream(1000)
        for _ in range(5):
            first.wrote(50)
        second.wrote(10)  # another writer's run is tracked on its own
        first.flush()
        second.flush()
        first.flush()  # nothing new: no call
    assert calls == [(7, 0, 100, 2), (7, 100, 100, 2), (7, 200, 50, 2), (7, 1000, 10, 2)]


def test_edit_output_is_unchanged_with_real_writeback_and_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_pt(tmp_path / "m.pt")
    monkeypatch.setattr(writeback, "STEP_BYTES", 64)
    assert writeback._sync_file_range() is not None  # Linux: the real call is exercised
    assert run_cli("convert", tmp_path / "m.pt", tmp_path / "a.safetensors").code == 0
    monkeypatch.setitem(writeback._call, "fn", None)
    assert run_cli("convert", tmp_path / "m.pt", tmp_path / "b.safetensors").code == 0
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_official_verdict_still_reported_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_pt(tmp_path / "m.pt")

    def refusing(path: Path, ours: object, where: Path) -> None:
        raise verify.CheckpointError("written file failed verification: safetensors refuses it (test)", where)

    def also_failing(ckpt: object, expected: object, where: Path) -> None:
        raise verify.CheckpointError("written file failed verification: ours", where)

    monkeypatch.setattr(verify, "_official_check", refusing)
    monkeypatch.setattr(verify, "_check_tensors", also_failing)
    result = run_cli("convert", tmp_path / "m.pt", tmp_path / "m.safetensors")
    assert result.code == 2
    assert "safetensors refuses it (test)" in result.err
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_warming_the_official_check_imports_it_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from paraminspect.edit.verify import warm_official_check; warm_official_check().join(); "
        "print('safetensors' in sys.modules, 'numpy' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "True True False\n"
