"""GGUF: files written by gguf-py's GGUFWriter, read by our header reader and held to
gguf-py's own reader (names, shapes, types, offsets, key/values) and dequantizer."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as T
from paraminspect import dtypes
from paraminspect.errors import CheckpointError
from paraminspect.formats.gguf import GGML_NAMES, ggml_dtype
from paraminspect.formats.opening import open_checkpoint
from tests.conftest import run_cli
from tests.hostile_gguf import F32, GGUF_HOSTILE, gguf_bytes, tensor_info

N_TOKENS = 3000
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def write_model(path: Path, *, big: bool = False, template: str = CHAT_TEMPLATE) -> dict[str, np.ndarray]:
    """A small llama-shaped GGUF with realistic keys and a few-thousand-token vocabulary;
    returns the float tensors written (name -> array in torch order)."""
    endian = gguf.GGUFEndian.BIG if big else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(path, "llama", endianess=endian)
    writer.add_name("tiny-llama")
    writer.add_block_count(2)
    writer.add_context_length(4096)
    writer.add_embedding_length(256)
    writer.add_feed_forward_length(512)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(7)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"tok{i}\u0120x" for i in range(N_TOKENS)])
    writer.add_token_types([1] * N_TOKENS)
    writer.add_token_merges([f"t o{i}" for i in range(N_TOKENS // 2)])
    writer.add_bos_token_id(1)
    writer.add_add_bos_token(True)
    writer.add_chat_template(template)
    writer.add_array("test.nested", [[1, 2], [3, 4, 5]])
    writer.add_float64("test.f64", 2.5)
    writer.add_int8("test.i8", -3)
    rng = np.random.default_rng(0)
    written: dict[str, np.ndarray] = {}

    def plain(name: str, array: np.ndarray) -> None:
        writer.add_tensor(name, array)
        written[name] = array

    plain("token_embd.weight", rng.standard_normal((64, 256)).astype(np.float32))
    for b in range(2):
        x = rng.standard_normal((64, 256)).astype(np.float32)
        for name, kind in (("attn_q", T.Q8_0), ("attn_k", T.Q4_0), ("attn_v", T.Q5_1), ("attn_output", T.BF16)):
            q = gguf.quants.quantize(x, kind)
            writer.add_tensor(f"blk.{b}.{name}.weight", q, raw_shape=q.shape, raw_dtype=kind)
        plain(f"blk.{b}.attn_norm.weight", rng.standard_normal(256).astype(np.float16))
        plain(f"blk.{b}.ffn_up.weight", rng.standard_normal((512, 256)).astype(np.float32))
    plain("output_norm.weight", rng.standard_normal(256).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_model(path)


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("gguf") / "tiny-be.gguf"
    return path, write_model(path, big=True)


def _reader_value(field: Any) -> Any:
    value = field.contents()
    return value


def test_block_table_matches_gguf_py() -> None:
    for kind, (block, size) in gguf.constants.GGML_QUANT_SIZES.items():
        dtype = ggml_dtype(int(kind))
        assert GGML_NAMES[int(kind)] == kind.name
        if dtype.blocked:
            assert (dtype.block, dtype.block_bytes) == (block, size), kind.name
            assert dtype.nbytes(block * 7) == 7 * size
            assert dtype.bits_per_weight == size * 8 / block
        else:
            assert (block, dtype.itemsize) == (1, size), kind.name


def test_existing_dtypes_keep_their_sizes() -> None:
    for dtype in dtypes.BY_NAME.values():
        assert not dtype.blocked
        assert dtype.nbytes(10) == (10 * dtype.bits + 7) // 8
        assert dtype.bits_per_weight == dtype.bits


@pytest.mark.parametrize("which", ["model", "big_model"])
def test_listing_matches_gguf_reader(which: str, request: pytest.FixtureRequest) -> None:
    path, _ = request.getfixturevalue(which)
    reader = gguf.GGUFReader(path)
    ckpt = open_checkpoint(path)
    assert ckpt.format == "gguf"
    assert list(ckpt.tensors) == [t.name for t in reader.tensors]
    for t in reader.tensors:
        ref = ckpt.tensors[t.name]
        assert ref.shape == tuple(int(d) for d in reversed(t.shape.tolist()))
        assert GGML_NAMES[int(t.tensor_type)] == t.tensor_type.name
        assert ggml_dtype(int(t.tensor_type)) == ref.dtype
        assert ref.byte_range() == (t.data_offset, t.data_offset + t.n_bytes)
        assert ref.nbytes == t.n_bytes
        assert ref.storage.byteorder == ("big" if which == "big_model" else "little")


@pytest.mark.parametrize("which", ["model", "big_model"])
def test_key_values_match_gguf_reader(which: str, request: pytest.FixtureRequest) -> None:
    path, _ = request.getfixturevalue(which)
    reader = gguf.GGUFReader(path)
    meta = open_checkpoint(path).file_metadata
    expected = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(meta) == list(expected)
    for key, field in expected.items():
        kind, value = meta[key]
        types = field.types
        if types[0] == gguf.GGUFValueType.ARRAY:
            inner = "ARRAY" if types[1] == gguf.GGUFValueType.ARRAY else types[1].name
            if inner == "ARRAY":
                inner = f"[{types[2].name}]"
            assert kind == f"[{inner}]", key
        else:
            assert kind == types[0].name, key
        want = field.contents()
        if kind.startswith("[["):  # gguf-py flattens arrays of arrays
            value = [x for inner in value for x in inner]
        if kind in ("FLOAT32", "[FLOAT32]"):
            np.testing.assert_array_equal(np.float32(value), np.float32(want))
        else:
            assert value == want, key
    assert len(meta["tokenizer.ggml.tokens"][1]) == N_TOKENS


@pytest.mark.parametrize("which", ["model", "big_model"])
def test_plain_values_match_what_was_written(which: str, request: pytest.FixtureRequest) -> None:
    path, written = request.getfixturevalue(which)
    for name, array in written.items():
        result = run_cli("get", path, name, "--format", "json")
        assert result.code == 0, result.err
        got = np.array(json.loads(result.out)["entries"][0]["values"], dtype=np.float64)
        np.testing.assert_array_equal(got, array.astype(np.float64))


def _handmade(path: Path, type_id: int, dims: list[int], data: bytes) -> None:
    path.write_bytes(gguf_bytes(tensors=[tensor_info("a", [4], F32, 0), tensor_info("b", dims, type_id, 32)], data=data))


def test_unknown_type_id_is_listed_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "u.gguf"
    _handmade(path, 99, [8, 2], b"\0" * 32 + b"\1" * 64)
    result = run_cli("shapes", path, "--format", "json")
    assert result.code == 0, result.err
    rows = {r["name"]: r for r in json.loads(result.out)["tensors"]}
    assert rows["b"]["dtype"] == "ggml_type_99"
    assert rows["b"]["shape"] == [2, 8]
    assert rows["b"]["bytes"] is None
    assert rows["a"]["bytes"] == 16
    values = run_cli("get", path, "b")
    assert values.code == 2
    assert "cannot decode ggml_type_99" in values.err and values.err.count("\n") == 1


@pytest.mark.parametrize("case", sorted(GGUF_HOSTILE))
def test_hostile_gguf_is_one_clear_error(tmp_path: Path, case: str) -> None:
    build, reason = GGUF_HOSTILE[case]
    path = tmp_path / "x.gguf"
    build(path, tmp_path / "marker")
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_scan_of_a_clean_gguf(model: tuple[Path, Any]) -> None:
    result = run_cli("scan", model[0], "--format", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["files"][0]["format"] == "gguf"
    assert doc["files"][0]["status"] == "clean"


def test_scan_flags_template_injection_trailing_data_and_appended_zip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    write_model(bad, template="{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.popen('id') }}")
    result = run_cli("scan", bad, "--format", "json")
    assert result.code == 1, result.err
    names = {r["name"] for r in json.loads(result.out)["files"][0]["references"]}
    assert {"__class__", "__mro__", "__subclasses__", "__globals__"} <= names
    clean = tmp_path / "clean.gguf"
    write_model(clean)
    for tail, kind in ((b"hello" * 10, "trailing-data"), (b"PK\x03\x04" + b"\0" * 40, "appended-zip")):
        target = tmp_path / f"{kind}.gguf"
        target.write_bytes(clean.read_bytes() + tail)
        result = run_cli("scan", target, "--format", "json")
        assert result.code == 1
        refs = json.loads(result.out)["files"][0]["references"]
        assert [r["kind"] for r in refs] == [kind]
        assert refs[0]["positions"] == [clean.stat().st_size]
        # the file still opens: llama.cpp ignores what follows the data
        assert run_cli("shapes", target).code == 0


def test_truncated_gguf_is_refused_by_us_and_gguf_py(model: tuple[Path, Any], tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(model[0].read_bytes()[:-100])
    with pytest.raises(Exception):  # noqa: B017 - gguf-py raises whatever numpy raises
        gguf.GGUFReader(cut)
    result = run_cli("shapes", cut)
    assert result.code == 2 and "truncated?" in result.err


def test_version_2_reads_like_version_3(tmp_path: Path) -> None:
    path = tmp_path / "v2.gguf"
    data = struct.pack("<4f", 1, 2, 3, 4) + b"\0" * 16
    path.write_bytes(gguf_bytes(tensors=[tensor_info("w", [4], F32, 0)], data=data, version=2))
    np.testing.assert_array_equal(gguf.GGUFReader(path).tensors[0].data, [1, 2, 3, 4])
    result = run_cli("get", path, "w", "--format", "json")
    assert result.code == 0, result.err
