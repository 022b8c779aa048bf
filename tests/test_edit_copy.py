"""Unchanged tensors are copied by the kernel (copy_file_range) and verified by comparing the
written bytes with the input's; the Python loop takes over where the kernel cannot copy."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from paraminspect.edit import verify
from paraminspect.edit.writers import copying
from tests.conftest import run_cli


def model(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    state = {"a": rng.standard_normal((64, 32)).astype(np.float32), "b": np.arange(300, dtype=np.int16)}
    save_file(state, path)
    return state


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP])
def test_copy_falls_back_to_the_loop_where_the_kernel_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    state = model(tmp_path / "m.safetensors")
    assert run_cli("rename", tmp_path / "m.safetensors", "a=z", "-o", tmp_path / "kernel.safetensors").code == 0
    calls: list[int] = []

    def refusing(*args: Any) -> int:
        calls.append(code)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "copy_file_range", refusing)
    result = run_cli("rename", tmp_path / "m.safetensors", "a=z", "-o", tmp_path / "loop.safetensors")
    assert result.code == 0, result.err
    assert calls  # the kernel was asked, refused, and the loop copied instead
    assert (tmp_path / "loop.safetensors").read_bytes() == (tmp_path / "kernel.safetensors").read_bytes()
    loaded = load_file(tmp_path / "loop.safetensors")
    np.testing.assert_array_equal(loaded["z"], state["a"])
    np.testing.assert_array_equal(loaded["b"], state["b"])


def test_copy_refused_part_way_is_finished_by_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model(tmp_path / "m.safetensors")
    real = os.copy_file_range
    calls: list[int] = []

    def once(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        calls.append(count)
        if len(calls) > 1:
            raise OSError(errno.EXDEV, "cross-device")
        return real(src, dst, min(count, 100), offset_src, offset_dst)

    monkeypatch.setattr(copying, "KERNEL_STEP", 100)
    monkeypatch.setattr(os, "copy_file_range", once)
    assert run_cli("drop", tmp_path / "m.safetensors", "b", "-o", tmp_path / "out.safetensors").code == 0
    assert len(calls) == 2
    np.testing.assert_array_equal(
        load_file(tmp_path / "out.safetensors")["a"], load_file(tmp_path / "m.safetensors")["a"]
    )


def test_other_copy_errors_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model(tmp_path / "m.safetensors")

    def failing(*args: Any) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "copy_file_range", failing)
    result = run_cli("drop", tmp_path / "m.safetensors", "b", "-o", tmp_path / "out.safetensors")
    assert (result.code, result.out) == (2, "")
    assert result.err == f"paraminspect: error: {tmp_path / 'out.safetensors'}: cannot write (Input/output error)\n"
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_a_copy_that_differs_from_its_input_fails_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model(tmp_path / "m.safetensors")
    real = copying.copy_range

    def damaging(src: Any, begin: int, end: int, dst: int, pos: int, *args: Any, **kwargs: Any) -> int:
        crc = real(src, begin, end, dst, pos, *args, **kwargs)
        os.pwrite(dst, bytes([os.pread(dst, 1, pos + 7)[0] ^ 1]), pos + 7)
        return crc

    monkeypatch.setattr(copying, "copy_range", damaging)
    result = run_cli("drop", tmp_path / "m.safetensors", "b", "-o", tmp_path / "out.safetensors")
    assert (result.code, result.out) == (2, "")
    reason = "written file failed verification: checksum of 'a' differs"
    assert result.err == f"paraminspect: error: {tmp_path / 'out.safetensors'}: {reason}\n"
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_input_data_rewritten_keeping_mtime_after_the_copy_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Size, inode and mtime unchanged, header unchanged: only the data differs from what was copied."""
    path = tmp_path / "m.safetensors"
    model(path)
    original = path.read_bytes()
    real = verify._check_tensors

    def rewritten_first(*args: Any) -> None:
        st = os.stat(path)
        with open(path, "r+b") as fh:
            fh.seek(len(original) - 3)
            fh.write(bytes([original[-3] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        real(*args)

    monkeypatch.setattr(verify, "_check_tensors", rewritten_first)
    result = run_cli("rename", path, "a=z", "-o", tmp_path / "out.safetensors")
    assert (result.code, result.out) == (2, "")
    assert "written file failed verification: checksum of " in result.err
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_same_bytes_compares_every_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paraminspect.formats.opening import open_checkpoint

    state = {"x": np.arange(1000, dtype=np.float32)}
    save_file(state, tmp_path / "a.safetensors")
    state["x"][-1] = -1  # only the last, partial chunk differs
    save_file(state, tmp_path / "b.safetensors")
    monkeypatch.setattr(copying, "CHUNK_BYTES", 384)
    a, b = (open_checkpoint(tmp_path / f"{n}.safetensors").tensors["x"] for n in "ab")
    assert verify.same_bytes((a, a))
    assert not verify.same_bytes((a, b))


@pytest.mark.parametrize("at", [0, 383, 384, 3839, 3840, 3999])
def test_same_bytes_finds_a_difference_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    """Chunks reuse one pair of buffers and the last one overlaps the one before: no byte is skipped."""
    from paraminspect.formats.opening import open_checkpoint

    data = np.arange(4000, dtype=np.uint8)
    save_file({"x": data}, tmp_path / "a.safetensors")
    changed = data.copy()
    changed[at] ^= 0xFF
    save_file({"x": changed}, tmp_path / f"b{at}.safetensors")
    monkeypatch.setattr(copying, "CHUNK_BYTES", 384)
    a, b = (open_checkpoint(tmp_path / name).tensors["x"] for name in ("a.safetensors", f"b{at}.safetensors"))
    assert verify.same_bytes((a, a))
    assert not verify.same_bytes((a, b))
    assert not verify.same_bytes((b, a))
