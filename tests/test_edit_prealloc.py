"""The GGUF writer reserves its data section's blocks before copying (writers/prealloc.py):
exactly that range, on ext4 only, and the file is byte for byte what it is without it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gguf
import pytest

from paraminspect.edit.writers import gguf as gguf_write
from paraminspect.edit.writers import prealloc
from tests.conftest import run_cli
from tests.test_formats_gguf import write_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "m.gguf"
    write_model(path)
    return path


def test_the_data_section_is_reserved_and_no_byte_changes(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []

    def recording(fd: int, begin: int, nbytes: int) -> None:
        calls.append((begin, nbytes))
        prealloc.preallocate(fd, begin, nbytes)

    monkeypatch.setattr(gguf_write, "preallocate", recording)
    with_it, without = tmp_path / "with.gguf", tmp_path / "without.gguf"
    assert run_cli("set-meta", model, "general.name", "x", "-o", with_it).code == 0
    monkeypatch.setattr(gguf_write, "preallocate", lambda *args: None)
    assert run_cli("set-meta", model, "general.name", "x", "-o", without).code == 0
    assert with_it.read_bytes() == without.read_bytes()
    data = gguf.GGUFReader(with_it).data_offset
    assert calls == [(data, with_it.stat().st_size - data)]  # to the last byte, none beyond


def test_a_failing_reservation_is_only_a_missed_hint(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fns = prealloc._libc()
    if fns is None:
        pytest.skip("no fstatfs/fallocate here")

    def failing(*args: Any) -> int:
        return -1  # as fallocate(2) on a full disk or a filesystem without it

    monkeypatch.setitem(prealloc._calls, "fns", (fns[0], failing))
    monkeypatch.setattr(prealloc, "on_ext4", lambda fd: True)
    out = tmp_path / "out.gguf"
    assert run_cli("set-meta", model, "general.name", "x", "-o", out).code == 0
    assert gguf.GGUFReader(out).fields["general.name"].contents() == "x"


def test_only_ext4_files_are_reserved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read, write = os.pipe()
    try:
        assert not prealloc.on_ext4(read)  # a pipe: pipefs
    finally:
        os.close(read)
        os.close(write)
    fns = prealloc._libc()
    if fns is None:
        pytest.skip("no fstatfs/fallocate here")
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setitem(prealloc._calls, "fns", (fns[0], lambda *args: calls.append(args) or 0))
    monkeypatch.setattr(prealloc, "on_ext4", lambda fd: False)
    with open(tmp_path / "f", "wb") as fh:
        prealloc.preallocate(fh.fileno(), 0, 1 << 20)
    assert calls == []
