"""numpy ``.npy`` and ``.npz`` (np.save, np.savez, np.savez_compressed), np.load as the oracle."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from paraminspect import CheckpointError, Opaque, Value, open_checkpoint
from paraminspect.data.arrays import iter_chunks, read_array, read_indices
from paraminspect.formats.npy import parse_literal
from tests.conftest import run_cli
from tests.hostile_build import Call, touch

# Every numeric dtype np.save writes, in both byte orders where it has one.
NUMERIC = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"]
ONE_BYTE = ("?", "i1", "u1")
DESCRS = [f"{order}{code}" for code in NUMERIC for order in ("<", ">") if not (code in ONE_BYTE and order == ">")]


def _sample(descr: str, shape: tuple[int, ...] = (3, 4, 5)) -> np.ndarray:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(shape) * 50
    if np.dtype(descr).kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(descr)


def _same(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal shape and equal values bit for bit (native byte order on both sides)."""
    expected = expected.astype(expected.dtype.newbyteorder("="))
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes()


@pytest.mark.parametrize("fortran", [False, True], ids=["C", "F"])
@pytest.mark.parametrize("descr", DESCRS)
def test_npy_every_dtype_both_byte_orders(tmp_path: Path, descr: str, fortran: bool) -> None:
    array = _sample(descr)
    array = np.asfortranarray(array) if fortran else array
    np.save(tmp_path / "w.npy", array)
    expected = np.load(tmp_path / "w.npy")
    ref = open_checkpoint(tmp_path / "w.npy").tensors["w"]
    assert ref.dtype.numpy == expected.dtype.newbyteorder("=").name
    assert ref.shape == expected.shape
    assert ref.strides == tuple(s // expected.itemsize for s in expected.strides)  # Fortran: reversed
    assert ref.storage.byteorder == ("big" if expected.dtype.byteorder == ">" else "little")
    _same(read_array(ref), expected)
    _same(np.concatenate(list(iter_chunks(ref, 7))).reshape(expected.shape), expected)
    _same(read_indices(ref, [[0, 2], [1], [0, 4]]), expected[np.ix_([0, 2], [1], [0, 4])])


def test_npy_versions_scalars_and_empty(tmp_path: Path) -> None:
    cases = {"scalar": np.float32(3.5), "empty": np.zeros((0, 4), ">i2"), "one": np.arange(1.0)}
    for name, value in cases.items():
        np.save(tmp_path / f"{name}.npy", value)
    for version in ((2, 0), (3, 0)):
        path = tmp_path / f"v{version[0]}.npy"
        with path.open("wb") as fh:
            np.lib.format.write_array(fh, np.arange(6, dtype="<i8").reshape(2, 3), version=version)
        cases[path.stem] = np.load(path)
        assert open_checkpoint(path).metadata["npy_version"] == f"{version[0]}.0"
    for name in cases:
        ref = open_checkpoint(tmp_path / f"{name}.npy").tensors[name]
        _same(read_array(ref), np.load(tmp_path / f"{name}.npy"))


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_npz_members_named_and_read_like_np_load(tmp_path: Path, compressed: bool) -> None:
    arrays = {
        "dense.weight": _sample("<f4", (64, 300)),
        "dense.bias": _sample(">f8", (300,)),
        "emb": np.asfortranarray(_sample("<i2", (40, 30))),
        "flags": np.array([True, False, True]),
        "empty": np.zeros((0,), "u8"),
    }
    path = tmp_path / "w.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    expected = np.load(path)
    ckpt = open_checkpoint(path)
    assert ckpt.format == "npz"
    assert list(ckpt.tensors) == expected.files == list(arrays)
    for name in expected.files:
        ref = ckpt.tensors[name]
        assert (ref.storage.packing is not None) == compressed, name
        _same(read_array(ref), expected[name])
        if ref.numel:
            _same(np.concatenate(list(iter_chunks(ref, 1000))).reshape(ref.shape), expected[name])
            corner = [[0, ref.shape[0] - 1], *([[0, n - 1] for n in ref.shape[1:]])]
            _same(read_indices(ref, corner), expected[name][np.ix_(*corner)])


def test_npz_through_the_cli_get_stats_diff_convert(tmp_path: Path) -> None:
    weight = _sample("<f4", (50, 40))
    np.savez_compressed(tmp_path / "a.npz", **{"dense.weight": weight, "dense.bias": np.arange(40, dtype=">f4")})
    changed = weight.copy()
    changed[3, 4] += 1
    np.savez(tmp_path / "b.npz", **{"dense.weight": changed, "dense.bias": np.arange(40, dtype="<f4")})
    result = run_cli("stats", tmp_path / "a.npz", "--format", "json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)["tensors"]}
    assert rows["dense.weight"]["max"] == pytest.approx(float(weight.max()))
    assert rows["dense.bias"]["mean"] == pytest.approx(19.5)
    result = run_cli("get", tmp_path / "a.npz", "dense.bias", "--format", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["entries"][0]["values"] == np.arange(40).tolist()
    result = run_cli("diff", tmp_path / "a.npz", tmp_path / "b.npz", "--format", "json")
    assert result.code == 1, result.err
    statuses = {e["name"]: e["status"] for e in json.loads(result.out)["entries"]}
    assert statuses == {"dense.weight": "values_changed", "dense.bias": "equal"}  # big- vs little-endian: equal
    result = run_cli("convert", tmp_path / "a.npz", tmp_path / "a.safetensors")
    assert result.code == 0, result.err
    from safetensors.numpy import load_file

    converted = load_file(tmp_path / "a.safetensors")
    _same(converted["dense.weight"], weight)
    _same(converted["dense.bias"], np.arange(40, dtype=">f4"))


def test_object_arrays_are_placeholders_never_unpickled_and_scan_flags_them(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = np.array([Call(os.system, touch(marker))], dtype=object)
    np.save(tmp_path / "o.npy", hostile, allow_pickle=True)
    np.savez_compressed(tmp_path / "o.npz", w=np.ones(3, "f4"), o=hostile)
    for name in ("o.npy", "o.npz"):
        ckpt = open_checkpoint(tmp_path / name)
        placeholder = ckpt.entries["o"]
        assert isinstance(placeholder, Value) and isinstance(placeholder.value, Opaque)
        assert placeholder.value.qualname == "numpy.ndarray[pickled objects]"
        for command in ("tree", "shapes"):
            assert run_cli(command, tmp_path / name).code == 0
        result = run_cli("scan", tmp_path / name, "--format", "json")
        assert result.code == 1
        names = {r["name"] for f in json.loads(result.out)["files"] for r in f["references"]}
        assert "posix.system" in names or "os.system" in names
    _same(read_array(open_checkpoint(tmp_path / "o.npz").tensors["w"]), np.ones(3, "f4"))
    assert not marker.exists()
    assert run_cli("scan", tmp_path / "o.npz", "--format", "json").code == 1


def _npy_bytes(header: bytes, data: bytes = b"", version: int = 1) -> bytes:
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(header)) + header + data


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", "needs 4,000 bytes but 8 follow"),
        (b"__import__('os').system('true')", "not a plain literal"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", "exactly 'descr'"),
        (b"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", "the key 'descr' twice"),
        (b"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", "not True or False"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "non-negative"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': 2}", "non-negative"),
        (b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", "structured dtype"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", "ends in the middle"),
        (b"[" * 60_000, "nests deeper than 8"),
    ],
)
def test_npy_hostile_headers(tmp_path: Path, header: bytes, reason: str) -> None:
    path = tmp_path / "h.npy"
    path.write_bytes(_npy_bytes(header, b"\0" * 8, version=2))
    with pytest.raises(CheckpointError, match=reason.replace("(", r"\(")):
        open_checkpoint(path)


def test_npy_header_length_bounded_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "h.npy"
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{")
    result = run_cli("shapes", path)
    assert result.code == 2
    reason = ".npy header length 4,294,967,280 is over the 65,536-byte limit"
    assert result.err == f"paraminspect: error: {path}: {reason}\n"


def test_literal_parser_reads_what_numpy_writes() -> None:
    for array in (np.zeros((2, 3), ">c16"), np.zeros((), "u1"), np.asfortranarray(np.zeros((4, 5)))):
        header = np.lib.format.header_data_from_array_1_0(array)
        text = repr({k: header[k] for k in ("descr", "fortran_order", "shape")})
        import ast

        assert parse_literal(text) == ast.literal_eval(text)
    assert parse_literal("{'shape': (3L, 4L), }") == {"shape": (3, 4)}  # Python 2 era files


def _rewrite_sizes(path: Path, declared: int) -> None:
    """Make the only member's declared (uncompressed) size ``declared``, in both headers."""
    data = bytearray(path.read_bytes())
    for signature, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = data.index(signature)
        data[start + at : start + at + 4] = struct.pack("<I", declared)
    path.write_bytes(bytes(data))


def test_deflate_bomb_stops_at_declared_size(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    big = np.zeros(1 << 22, "u1")  # 4 MiB of zeros: a few KiB compressed
    np.savez_compressed(path, w=big)
    # Claim only 1,024 elements: the header must then agree, so rewrite the header's shape too.
    raw = zipfile.ZipFile(path).read("w.npy")
    header_len = 10 + struct.unpack("<H", raw[8:10])[0]
    small_header = raw[:header_len].replace(b"(4194304,)", b"(1024,)   ")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", small_header + raw[header_len:])
    _rewrite_sizes(path, header_len + 1024)
    ckpt = open_checkpoint(path)  # listing inflates only the header
    assert ckpt.tensors["w"].shape == (1024,)
    result = run_cli("stats", path)
    assert result.code == 2
    reason = "'w': compressed data inflates past its declared size (1,152 bytes)"
    assert result.err == f"paraminspect: error: {path}: {reason}\n"


def test_deflated_member_shorter_than_declared(tmp_path: Path) -> None:
    path = tmp_path / "short.npz"
    np.savez_compressed(path, w=np.arange(100, dtype="<f8"))
    raw = zipfile.ZipFile(path).read("w.npy").replace(b"(100,)", b"(101,)")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", raw)
    _rewrite_sizes(path, len(raw) + 8)  # the header's extra element is declared, but never compressed
    ref = open_checkpoint(path).tensors["w"]
    with pytest.raises(CheckpointError, match="compressed data ends after 928 of its declared 936 bytes"):
        read_array(ref)
