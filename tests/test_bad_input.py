"""Every kind of bad input: exit 2, one line on stderr, no traceback, no code run."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from tests.conftest import SAMPLES, run_cli, run_script


def safetensors_bytes(header: dict[str, object] | bytes, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def torch_zip_with_pickle(path: Path, pkl: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


def assert_clean_error(path: Path, reason: str) -> None:
    for command in ("tree", "shapes"):
        result = run_cli(command, path)
        assert result.code == 2, result
        assert result.out == ""
        lines = result.err.splitlines()
        assert len(lines) == 1, result.err
        assert lines[0].startswith(f"paraminspect: error: {path}: "), lines[0]
        assert reason in lines[0], lines[0]


def test_missing_file(tmp_path: Path) -> None:
    assert_clean_error(tmp_path / "nope.pt", "no such file")


def test_directory(tmp_path: Path) -> None:
    assert_clean_error(tmp_path, "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.pt").write_bytes(b"")
    assert_clean_error(tmp_path / "e.pt", "file is empty")


def test_random_bytes(tmp_path: Path) -> None:
    noise = bytearray(os.urandom(4096))
    noise[8] = 0  # a "{" there (1 run in 256) would make it look like safetensors
    (tmp_path / "r.bin").write_bytes(bytes(noise))
    assert_clean_error(tmp_path / "r.bin", "not a recognised checkpoint")


def test_text_file_named_pt(tmp_path: Path) -> None:
    (tmp_path / "t.pt").write_text("this is not a checkpoint\n")
    assert_clean_error(tmp_path / "t.pt", "not a recognised checkpoint")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_zip(tmp_path: Path, keep: float) -> None:
    data = (SAMPLES / "rgnet.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: int(len(data) * keep)])
    assert_clean_error(tmp_path / "cut.pt", "zip")


def test_zip_that_is_not_a_torch_archive(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "z.pt", "w") as z:
        z.writestr("folder/readme.txt", "hello")
        z.writestr("folder/version", "3\n")
    assert_clean_error(tmp_path / "z.pt", "no folder/data.pkl")


def test_compressed_records_are_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "c.pt", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
        z.writestr("archive/version", "3\n", zipfile.ZIP_STORED)
    assert_clean_error(tmp_path / "c.pt", "compressed")


def test_safetensors_header_longer_than_file(tmp_path: Path) -> None:
    data = safetensors_bytes({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    data = struct.pack("<Q", 10_000) + data[8:]
    (tmp_path / "h.safetensors").write_bytes(data)
    assert_clean_error(tmp_path / "h.safetensors", "runs past the end of the file")


def test_safetensors_bad_json(tmp_path: Path) -> None:
    (tmp_path / "j.safetensors").write_bytes(safetensors_bytes(b'{"a": {"dtype": "F32",'))
    assert_clean_error(tmp_path / "j.safetensors", "not valid JSON")


def test_safetensors_overlapping_offsets(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    (tmp_path / "o.safetensors").write_bytes(safetensors_bytes(header, b"\0" * 12))
    assert_clean_error(tmp_path / "o.safetensors", "overlaps the previous tensor")


def test_safetensors_out_of_range_offsets(tmp_path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    (tmp_path / "r.safetensors").write_bytes(safetensors_bytes(header, b"\0" * 8))
    assert_clean_error(tmp_path / "r.safetensors", "truncated")


def test_safetensors_size_mismatch(tmp_path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}
    (tmp_path / "m.safetensors").write_bytes(safetensors_bytes(header, b"\0" * 8))
    assert_clean_error(tmp_path / "m.safetensors", "needs 12 bytes but data_offsets span 8")


@pytest.mark.parametrize(
    "header, reason",
    [
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}', "twice"),
        (b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}', "NaN"),
        (b'{"a": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}', "not a list of non-negative integers"),
        (b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', "not a list of non-negative integers"),
        (b'{"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}', "unknown dtype"),
        (b'{"__metadata__": {"k": 1}}', "__metadata__ must map strings to strings"),
        (b"{" + b'"a":' * 1 + b"[" * 100_000 + b"]" * 100_000 + b"}", "safetensors header"),
    ],
)
def test_safetensors_headers_pythons_json_would_accept(tmp_path: Path, header: bytes, reason: str) -> None:
    (tmp_path / "x.safetensors").write_bytes(safetensors_bytes(header, b"\0" * 4))
    assert_clean_error(tmp_path / "x.safetensors", reason)


class _RunsCode:
    """Pickles to a call of os.system that would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_pickle_calling_os_system_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch_zip_with_pickle(tmp_path / "evil.pt", pickle.dumps({"x": _RunsCode(marker)}, protocol=2))
    result = run_cli("tree", tmp_path / "evil.pt")
    assert not marker.exists()
    assert result.code == 0  # shown as an inert placeholder, never called
    assert "<object posix.system>" in result.out or "<object os.system>" in result.out
    # Placed where the tensor data would be consumed, it is still only a placeholder.
    torch_zip_with_pickle(tmp_path / "evil2.pt", pickle.dumps(_RunsCode(marker), protocol=2))
    run_cli("shapes", tmp_path / "evil2.pt")
    assert not marker.exists()


def test_persistent_id_that_is_not_a_storage(tmp_path: Path) -> None:
    class P(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("evil", "payload") if obj == "marker" else None

    import io

    buffer = io.BytesIO()
    P(buffer, protocol=2).dump({"a": "marker"})
    torch_zip_with_pickle(tmp_path / "p.pt", buffer.getvalue())
    assert_clean_error(tmp_path / "p.pt", "persistent id is not a storage")


def test_missing_storage_record(tmp_path: Path) -> None:
    torch.save({"a": torch.ones(3)}, tmp_path / "full.pt")
    with zipfile.ZipFile(tmp_path / "full.pt") as src, zipfile.ZipFile(tmp_path / "m.pt", "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("data/0"):
                dst.writestr(info.filename, src.read(info.filename))
    assert_clean_error(tmp_path / "m.pt", "has no record full/data/0")


def test_errors_through_the_installed_script(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_text("hello\n")
    result = run_script("shapes", tmp_path / "x.pt")
    assert result.returncode == 2
    assert result.stdout == ""
    reason = (
        "not a recognised checkpoint (expected torch.save, safetensors, GGUF, numpy .npy/.npz, ONNX,"
        " a sharded *.index.json or a DCP directory)"
    )
    assert result.stderr == f"paraminspect: error: {tmp_path / 'x.pt'}: {reason}\n"
