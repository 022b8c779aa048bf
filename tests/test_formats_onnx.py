"""ONNX models (onnx.save_model, with and without external data), onnx.numpy_helper as the oracle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from paraminspect import CheckpointError, open_checkpoint
from paraminspect.data.arrays import iter_chunks, read_array, read_indices
from tests.conftest import run_cli
from tests.hostile_onnx import field, model, tensor, varint

# numpy / ml_dtypes types with an ONNX equivalent that from_array writes as raw_data.
RAW_TYPES = [
    np.float32,
    np.float64,
    np.float16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
    ml_dtypes.bfloat16,
    ml_dtypes.float8_e4m3fn,
    ml_dtypes.float8_e4m3fnuz,
    ml_dtypes.float8_e5m2,
    ml_dtypes.float8_e5m2fnuz,
    ml_dtypes.float8_e8m0fnu,
]
# Element types helper.make_tensor stores in the typed fields (float_data, int32_data, ...).
TYPED = [
    TensorProto.FLOAT,
    TensorProto.DOUBLE,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.INT8,
    TensorProto.INT16,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.UINT8,
    TensorProto.UINT16,
    TensorProto.UINT32,
    TensorProto.UINT64,
    TensorProto.BOOL,
    TensorProto.COMPLEX64,
    TensorProto.COMPLEX128,
    TensorProto.FLOAT8E4M3FN,
    TensorProto.FLOAT8E5M2,
]


def _values(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(1)
    base = rng.standard_normal(shape) * 4
    kind = np.dtype(dtype).kind
    if kind == "c":
        return (base + 1j * rng.standard_normal(shape)).astype(dtype)
    if kind == "b":
        return base > 0
    if kind == "u":
        return np.abs(base * 1000).astype(dtype)
    if kind == "i":
        return (base * 20).astype(dtype)
    if dtype is ml_dtypes.float8_e8m0fnu:
        return np.abs(base).astype(dtype)
    return base.astype(dtype)


def _model(initializers: list[TensorProto], nodes: list[onnx.NodeProto] | None = None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph(nodes or [helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y], initializers)
    return helper.make_model(graph)


def _bits(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


def _assert_like_onnx(path: Path) -> None:
    """Names in order, dtypes, shapes and every value bit for bit as numpy_helper reads them."""
    model = onnx.load(path)  # loads external data too
    expected = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    got = open_checkpoint(path).tensors
    assert list(got) == list(expected)
    for name, array in expected.items():
        ref = got[name]
        assert ref.shape == array.shape, name
        assert ref.dtype.numpy == array.dtype.name, name
        assert _bits(read_array(ref)) == _bits(array), name
        if ref.numel:
            assert _bits(np.concatenate(list(iter_chunks(ref, 5)))) == _bits(array.reshape(-1)), name
            corner = [[0, n - 1] for n in ref.shape]
            assert _bits(read_indices(ref, corner)) == _bits(array[np.ix_(*corner)]), name


def test_raw_data_every_type(tmp_path: Path) -> None:
    inits = [numpy_helper.from_array(_values(t, (3, 7)), f"raw.{np.dtype(t).name}") for t in RAW_TYPES]
    inits.append(numpy_helper.from_array(np.zeros((0, 3), np.float32), "empty"))
    onnx.save_model(_model(inits), tmp_path / "m.onnx")
    _assert_like_onnx(tmp_path / "m.onnx")


def test_typed_fields_every_type(tmp_path: Path) -> None:
    inits = []
    for data_type in TYPED:
        array = _values(helper.tensor_dtype_to_np_dtype(data_type).type, (4, 5))
        values = array.astype(np.float32) if data_type in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2) else array
        tensor = helper.make_tensor(f"typed.{data_type}", data_type, array.shape, values.reshape(-1).tolist())
        assert not tensor.raw_data
        inits.append(tensor)
    inits.append(helper.make_tensor("negatives", TensorProto.INT64, [3], [-1, -(2**62), 2**62]))
    inits.append(helper.make_tensor("negatives32", TensorProto.INT32, [3], [-1, -(2**31), 2**31 - 1]))
    onnx.save_model(_model(inits), tmp_path / "m.onnx")
    _assert_like_onnx(tmp_path / "m.onnx")


def test_external_data_inside_the_folder(tmp_path: Path) -> None:
    inits = [
        numpy_helper.from_array(_values(np.float32, (64, 32)), "fc.weight"),
        numpy_helper.from_array(_values(np.float16, (300,)), "fc.bias"),
        numpy_helper.from_array(np.arange(3, dtype=np.int64), "small"),  # under the threshold: stays inline
    ]
    (tmp_path / "model").mkdir()
    path = tmp_path / "model" / "m.onnx"
    onnx.save_model(_model(inits), path, save_as_external_data=True, location="weights.bin", size_threshold=64)
    ckpt = open_checkpoint(path)
    assert ckpt.tensors["fc.weight"].storage.path == (tmp_path / "model" / "weights.bin").resolve()
    assert ckpt.tensors["small"].storage.path == path
    _assert_like_onnx(path)
    # one file each (all_tensors_to_one_file=False), and the same values as the inline model
    onnx.save_model(_model(inits), tmp_path / "inline.onnx")
    onnx.save_model(_model(inits), tmp_path / "model" / "each.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=0)  # fmt: skip
    _assert_like_onnx(tmp_path / "model" / "each.onnx")
    result = run_cli("diff", tmp_path / "inline.onnx", path)
    assert result.code == 0, result.out + result.err


def _external(tmp_path: Path, location: str, length: int | None = 16) -> Path:
    tensor = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", None if length is None else str(length))):
        if value is not None:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    (tmp_path / "model").mkdir(exist_ok=True)
    path = tmp_path / "model" / "m.onnx"
    path.write_bytes(_model([tensor]).SerializeToString())
    return path


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("../secret.bin", "leaves the model's directory"),
        ("sub/../../secret.bin", "leaves the model's directory"),
        ("/etc/passwd", "is not a relative path"),
        ("link.bin", "leaves the model's directory"),  # a symlink pointing out of the folder
        ("missing.bin", "external data file 'missing.bin' is missing"),
    ],
)
def test_external_paths_leaving_the_folder_are_refused(tmp_path: Path, location: str, reason: str) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    path = _external(tmp_path, location)
    os.symlink(tmp_path / "secret.bin", tmp_path / "model" / "link.bin")
    result = run_cli("shapes", path)
    assert result.code == 2
    assert result.err.startswith(f"paraminspect: error: {path}: ONNX initializer 'w': ")
    assert reason in result.err and result.err.count("\n") == 1


def test_external_length_must_match(tmp_path: Path) -> None:
    path = _external(tmp_path, "w.bin", length=12)
    (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match="external data is 12 bytes; float32 needs 16"):
        open_checkpoint(path)
    path = _external(tmp_path, "w.bin", length=None)  # no length: to the end of the file
    assert read_array(open_checkpoint(path).tensors["w"]).tolist() == [0.0] * 4


def test_subgraph_initializers_and_strings_are_left_out_of_tensors(tmp_path: Path) -> None:
    inner = helper.make_graph(
        [helper.make_node("Identity", ["inner_w"], ["out"])],
        "then",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.ones(1, np.float32), "inner_w")],
    )
    node = helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner)
    strings = helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"])
    outer = [numpy_helper.from_array(np.array(True), "cond"), strings]
    onnx.save_model(_model(outer, [node]), tmp_path / "m.onnx")
    ckpt = open_checkpoint(tmp_path / "m.onnx")
    assert list(ckpt.entries) == ["cond", "labels"]  # top-level graph only
    assert list(ckpt.tensors) == ["cond"]
    assert str(ckpt.entries["labels"].value) == "<object onnx.TensorProto[STRING]>"  # type: ignore[union-attr]


def test_cli_shapes_stats_scan_convert(tmp_path: Path) -> None:
    weight = _values(np.float32, (8, 4))
    inits = [numpy_helper.from_array(weight, "fc.weight"), helper.make_tensor("steps", TensorProto.INT64, [2], [3, -4])]
    onnx.save_model(_model(inits), tmp_path / "m.onnx")
    result = run_cli("shapes", tmp_path / "m.onnx", "--format", "json")
    assert result.code == 0, result.err
    listed = [(t["name"], t["shape"]) for t in json.loads(result.out)["tensors"]]
    assert listed == [("fc.weight", [8, 4]), ("steps", [2])]
    result = run_cli("get", tmp_path / "m.onnx", "steps", "--format", "json")
    assert json.loads(result.out)["entries"][0]["values"] == [3, -4]
    assert run_cli("scan", tmp_path / "m.onnx").code == 0
    result = run_cli("convert", tmp_path / "m.onnx", tmp_path / "m.safetensors")
    assert result.code == 0, result.err
    from safetensors.numpy import load_file

    converted = load_file(tmp_path / "m.safetensors")
    assert _bits(converted["fc.weight"]) == _bits(weight) and converted["steps"].tolist() == [3, -4]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (varint(1) * 3 + b"\xff" * 10 + b"\x01", "a packed varint is longer than 10 bytes"),
        (varint(1) * 5, "packed varints hold more values than its dims say (4)"),
        (varint(1) * 3 + b"\x81", "the last packed varint is truncated"),
    ],
)
def test_packed_varints_are_checked_when_decoded(tmp_path: Path, payload: bytes, reason: str) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(model(tensor(dims=(4,), data_type=TensorProto.INT64, data=field(7, payload))))
    ref = open_checkpoint(path).tensors["w"]  # listing reads no values
    with pytest.raises(CheckpointError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_array(ref)


def test_varints_decode_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paraminspect.data import packed

    monkeypatch.setattr(packed, "BLOCK", 7)  # varints cut by every block boundary
    values = [0, 1, 127, 128, 2**35, -1, -(2**63), 2**63 - 1, 300, -300]
    onnx.save_model(_model([helper.make_tensor("w", TensorProto.INT64, [10], values)]), tmp_path / "m.onnx")
    ref = open_checkpoint(tmp_path / "m.onnx").tensors["w"]
    assert read_array(ref).tolist() == values
    assert np.concatenate(list(iter_chunks(ref, 3))).tolist() == values
    assert read_indices(ref, [[9, 0, 5]]).tolist() == [-300, 0, -1]
