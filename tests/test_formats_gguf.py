"""GGUF: files written by gguf-py's GGUFWriter, read by our header reader and held to
gguf-py's own reader (names, shapes, types, offsets, key/values) and dequantizer."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from safetensors.numpy import save_file

from paraminspect import dtypes
from paraminspect.data import ggml, ggmlpeek, peek
from paraminspect.data.arrays import iter_chunks, read_array, read_indices
from paraminspect.errors import CheckpointError
from paraminspect.formats.gguf import GGML_NAMES, ggml_dtype
from paraminspect.formats.opening import open_checkpoint
from paraminspect.output.printing import PrintOptions, python_values, shown_indices, tensor_text
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
    infos = [tensor_info("a", [4], F32, 0), tensor_info("b", dims, type_id, 32)]
    path.write_bytes(gguf_bytes(tensors=infos, data=data))


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
    payload = "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.popen('id') }}"
    write_model(bad, template=payload)
    result = run_cli("scan", bad, "--format", "json")
    assert result.code == 1, result.err
    flagged = "hold chat templates with injection patterns"
    assert result.err == f"paraminspect: scan: 1 of 1 file(s) {flagged}\n"
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


# Byte offsets of the float16 scales (and mins) in each type's block; MXFP4's E8M0 exponent at 0.
SCALES = {
    "Q4_0": [0],
    "Q4_1": [0, 2],
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q8_0": [0],
    "Q2_K": [80, 82],
    "Q3_K": [108],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
}


def random_blocks(name: str, rows: int, row_blocks: int, *, finite: bool) -> np.ndarray:
    """Random stored bytes of a ``rows x (row_blocks blocks)`` tensor; with ``finite``, the
    scales are set to ordinary float16 values (random bytes make some inf or nan)."""
    kind = T[name]
    size = gguf.constants.GGML_QUANT_SIZES[kind][1]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    raw = rng.integers(0, 256, (rows * row_blocks, size), dtype=np.uint8)
    if finite and name == "MXFP4":
        raw[:, 0] = rng.integers(110, 135, rows * row_blocks)
    elif finite:
        for at in SCALES[name]:
            raw[:, at : at + 2] = rng.standard_normal((rows * row_blocks, 1)).astype("<f2").view(np.uint8)
    return raw.reshape(rows, row_blocks * size)


def write_quantized(path: Path, tensors: dict[str, tuple[str, np.ndarray]], *, big: bool = False) -> None:
    endian = gguf.GGUFEndian.BIG if big else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(path, "llama", endianess=endian)
    for name, (kind, raw) in tensors.items():
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=T[kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_decoded_types_are_the_decoders() -> None:
    assert set(ggml.DECODERS) == dtypes.GGML_DECODED
    assert {d.name for d in dtypes.GGML_QUANT.values() if d.numpy} == set(ggml.DECODERS)


@pytest.mark.parametrize("name", sorted(ggml.DECODERS))
@pytest.mark.parametrize("big", [False, True])
def test_dequantized_values_match_gguf_quants(name: str, big: bool, tmp_path: Path) -> None:
    raw = random_blocks(name, 6, 3, finite=False)  # any bytes: inf and nan scales included
    path = tmp_path / "q.gguf"
    write_quantized(path, {"w": (name, raw)}, big=big)
    with np.errstate(all="ignore"):
        expected = gguf.quants.dequantize(raw, T[name])
    ref = open_checkpoint(path).tensors["w"]
    assert ref.shape == expected.shape
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(read_array(ref), expected)
        # whole-block reads for chunks that cut blocks anywhere, and for scattered elements
        chunks = list(iter_chunks(ref, 1000))
        assert [len(c) for c in chunks[:-1]] == [1000] * (len(chunks) - 1)
        np.testing.assert_array_equal(np.concatenate(chunks), expected.reshape(-1))
        rows, cols = [0, 5, 2], [1, ref.shape[1] - 1, 257 % ref.shape[1], 40]
        np.testing.assert_array_equal(read_indices(ref, [rows, cols]), expected[np.ix_(rows, cols)])


@pytest.mark.parametrize("name", sorted(ggml.DECODERS))
@pytest.mark.parametrize("finite", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_standard_library_dequantizer_is_numpys_bit_for_bit(name: str, finite: bool, big: bool, tmp_path: Path) -> None:
    """peek's few shown values (ggmlpeek) equal ggml.py's, signed zeros, inf and nan included,
    for every shown pattern of a matrix and of a 3-D tensor."""
    assert set(ggmlpeek.DECODERS) == set(ggml.DECODERS)
    raw = random_blocks(name, 8, 768 // dtypes.GGML_BY_NAME[name].block, finite=finite)  # 8 x 768 weights
    path = tmp_path / "q.gguf"
    write_quantized(path, {"w": (name, raw), "cube": (name, raw[:6].reshape(2, 3, -1))}, big=big)
    for ref in open_checkpoint(path).tensors.values():
        assert peek.can_peek(ref)
        everything = [list(range(n)) for n in ref.shape]
        shown = shown_indices(ref.shape, PrintOptions())
        assert shown is not None and shown != everything
        with np.errstate(all="ignore"):
            assert repr(peek.read_shown(ref, everything)) == repr(python_values(read_array(ref), ref.dtype.name))
            for indices in (shown, [[n - 1, 0] for n in ref.shape]):
                expected = python_values(read_indices(ref, indices), ref.dtype.name)
                assert repr(peek.read_shown(ref, indices)) == repr(expected)


def test_default_get_of_a_quantized_tensor_prints_numpys_values_without_numpy(tmp_path: Path) -> None:
    """A summarised get of a K-quant matrix dequantizes its 36 corners with the standard
    library: the text is what the whole numpy-decoded tensor prints, and numpy is never loaded."""
    path = tmp_path / "q.gguf"
    write_quantized(path, {"w": ("Q4_K", random_blocks("Q4_K", 16, 4, finite=True))})
    ref = open_checkpoint(path).tensors["w"]
    result = run_cli("get", path, "w")
    assert result.code == 0, result.err
    assert result.out == f"w  Q4_K [16, 1024]\n{tensor_text(read_array(ref), 'Q4_K', shape=ref.shape)}\n"
    code = (
        "import sys; from paraminspect.cli import main; "
        f"assert main(['get', {str(path)!r}, 'w']) == 0; "
        "assert 'numpy' not in sys.modules, 'numpy was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == result.out


@pytest.mark.parametrize("name", ["Q4_K", "Q8_0", "MXFP4"])
def test_get_stats_and_diff_on_quantized_tensors(name: str, tmp_path: Path) -> None:
    raw = random_blocks(name, 8, 2, finite=True)
    path = tmp_path / "q.gguf"
    write_quantized(path, {"blk.0.w": (name, raw)})
    expected = gguf.quants.dequantize(raw, T[name]).astype(np.float32)
    assert np.isfinite(expected).all()
    got = run_cli("get", path, "blk.0.w", "--format", "json")
    assert got.code == 0, got.err
    np.testing.assert_array_equal(np.array(json.loads(got.out)["entries"][0]["values"], np.float32), expected)
    text = run_cli("get", path, "blk.0.w")
    assert text.code == 0 and text.out.startswith(f"blk.0.w  {name} [8, {expected.shape[1]}]\ntensor([[")
    # printed as torch prints the dequantized float32 tensor: 4 decimals (or sci), no dtype suffix
    assert "dtype=" not in text.out and not re.search(r"\.\d{5}", text.out)
    stats = run_cli("stats", path, "--format", "json")
    assert stats.code == 0, stats.err
    row = json.loads(stats.out)["tensors"][0]
    assert row["min"] == float(expected.min()) and row["max"] == float(expected.max())
    assert row["mean"] == pytest.approx(float(expected.astype(np.float64).mean()), rel=1e-6)
    same = tmp_path / "same.safetensors"
    save_file({"blk.0.w": expected}, same)
    assert run_cli("diff", path, same).code == 1  # dtype changed, values equal
    doc = json.loads(run_cli("diff", path, same, "--format", "json").out)
    assert doc["counts"]["values_changed"] == 0
    moved = expected.copy()
    moved[3, 7] += 0.5
    other = tmp_path / "moved.safetensors"
    save_file({"blk.0.w": moved}, other)
    entry = json.loads(run_cli("diff", path, other, "--format", "json").out)["entries"][0]
    assert (entry["differing"], entry["index"], entry["max_abs_diff"]) == (1, [3, 7], 0.5)


def test_undecodable_type_lists_but_refuses_values(tmp_path: Path) -> None:
    path = tmp_path / "iq.gguf"
    raw = np.random.default_rng(0).integers(0, 256, (2, 66), dtype=np.uint8)
    write_quantized(path, {"a": ("IQ2_XXS", raw), "b": ("Q8_0", random_blocks("Q8_0", 2, 8, finite=True))})
    shapes = json.loads(run_cli("shapes", path, "--format", "json").out)["tensors"]
    assert [(r["name"], r["ggml_type"], r["shape"], r["bytes"], r["bpw"]) for r in shapes] == [
        ("a", "IQ2_XXS", [2, 256], 132, 2.0625),
        ("b", "Q8_0", [2, 256], 544, 8.5),
    ]
    result = run_cli("get", path, "a")
    assert result.code == 2
    assert result.err.endswith("cannot decode IQ2_XXS values (a GGUF type paraminspect does not dequantize yet)\n")
    assert run_cli("get", path, "b").code == 0
    stats = run_cli("stats", path)
    assert stats.code == 0 and "a: cannot decode IQ2_XXS values; skipped" in stats.err


def test_shapes_table_and_block_totals(model: tuple[Path, Any]) -> None:
    path, _ = model
    reader = gguf.GGUFReader(path)
    table = run_cli("shapes", path).out.splitlines()
    assert table[0].split() == ["name", "dtype", "ggml", "type", "bits/weight", "shape", "numel", "bytes"]
    for t in reader.tensors:
        row = next(line for line in table if line.startswith(t.name + " "))
        bpw = gguf.constants.GGML_QUANT_SIZES[t.tensor_type]
        assert row.split()[2:4] == [t.tensor_type.name, f"{bpw[1] * 8 / bpw[0]:g}"]
    doc = json.loads(run_cli("shapes", path, "--by-prefix", "2", "--format", "json").out)
    blocks = {p["prefix"]: p for p in doc["prefixes"]}
    for b in ("blk.0", "blk.1"):
        mine = [t for t in reader.tensors if t.name.startswith(b + ".")]
        assert (blocks[b]["tensors"], blocks[b]["params"], blocks[b]["bytes"]) == (
            len(mine),
            sum(int(t.n_elements) for t in mine),
            sum(int(t.n_bytes) for t in mine),
        )


def write_split(folder: Path, per_file: int) -> dict[str, np.ndarray]:
    folder.mkdir()
    writer = gguf.GGUFWriter(folder / "m.gguf", "llama", split_max_tensors=per_file)
    writer.add_block_count(5)
    writer.add_token_list([f"t{i}" for i in range(100)])
    written = {}
    for i in range(5):
        written[f"blk.{i}.w"] = np.random.default_rng(i).standard_normal((4, 32)).astype(np.float32)
        writer.add_tensor(f"blk.{i}.w", written[f"blk.{i}.w"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


def test_split_model_opens_as_one_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "split"
    written = write_split(folder, 2)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    expected = [(t.name, f) for f in files for t in gguf.GGUFReader(f).tensors]
    for target in (folder, files[0], files[1]):
        ckpt = open_checkpoint(target)
        assert [(name, ref.storage.path.name) for name, ref in ckpt.tensors.items()] == [
            (name, f.name) for name, f in expected
        ]
        assert ckpt.file_metadata["general.architecture"] == ("STRING", "llama")
        np.testing.assert_array_equal(read_array(ckpt.tensors["blk.4.w"]), written["blk.4.w"])
    result = run_cli("shapes", folder, "--format", "json")
    assert result.code == 0 and json.loads(result.out)["total"]["tensors"] == 5
    files[1].unlink()
    missing = run_cli("shapes", files[0])
    assert missing.code == 2 and "split m-00002-of-00003.gguf of this GGUF model is missing" in missing.err


def test_split_that_lies_about_its_tensor_count(tmp_path: Path) -> None:
    folder = tmp_path / "split"
    write_split(folder, 3)
    first = folder / "m-00001-of-00002.gguf"
    raw = bytearray(first.read_bytes())
    key = gguf.GGUFReader(first).fields["split.tensors.count"]
    at = key.offset + sum(part.nbytes for part in key.parts[:-1])  # the value: the field's last part
    raw[at : at + 4] = struct.pack("<i", 6)
    first.write_bytes(bytes(raw))
    result = run_cli("shapes", first)
    assert result.code == 2 and "the splits hold 5 tensors but split.tensors.count says 6" in result.err


def test_check_against_a_golden_shapes_file(model: tuple[Path, Any], tmp_path: Path) -> None:
    path, _ = model
    golden = tmp_path / "golden.json"
    golden.write_text(run_cli("shapes", path, "--format", "json").out)
    assert run_cli("check", path, "--expect", golden).code == 0
    reader = gguf.GGUFReader(path)
    dequantized = {
        t.name: gguf.quants.dequantize(t.data, t.tensor_type)
        .astype(np.float32)
        .reshape(tuple(int(d) for d in reversed(t.shape.tolist())))
        for t in reader.tensors
    }
    other = tmp_path / "deq.safetensors"
    save_file(dequantized, other)
    drift = run_cli("check", other, "--expect", golden, "--format", "json")
    assert drift.code == 1
    assert json.loads(drift.out)["counts"]["dtype_changed"] == sum(t.tensor_type != T.F32 for t in reader.tensors)


def test_tree_of_a_gguf(model: tuple[Path, Any]) -> None:
    path, _ = model
    reader = gguf.GGUFReader(path)
    result = run_cli("tree", path)
    assert result.code == 0, result.err
    params = sum(int(t.n_elements) for t in reader.tensors)
    assert result.out.splitlines()[0].startswith(
        f"{path}  (gguf: {len(reader.tensors)} tensors, {params / 1000:.1f}K params"
    )
    assert "└── blk" in result.out or "├── blk" in result.out


def test_many_key_values_are_bounded_before_they_are_built(tmp_path: Path) -> None:
    from paraminspect.limits import Limits
    from tests.hostile_gguf import U8, kv

    path = tmp_path / "kvs.gguf"
    path.write_bytes(gguf_bytes([kv(f"k{i}", U8, b"\1") for i in range(20_000)]))
    assert len(gguf.GGUFReader(path).fields) >= 20_000  # a valid file, only large
    assert len(open_checkpoint(path).file_metadata) == 20_000
    with pytest.raises(CheckpointError, match="holds more values than a header within the 1,000,000-byte"):
        open_checkpoint(path, limits=Limits(max_header_bytes=1_000_000))
