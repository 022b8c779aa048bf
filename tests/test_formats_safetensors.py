"""The safetensors reader: file order, metadata, aliases, and parity with the
official library's validation (every file it refuses, we refuse)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from paraminspect import CheckpointError, open_checkpoint
from paraminspect.dtypes import BY_SAFETENSORS
from tests.conftest import SAMPLES, run_cli


def test_names_dtypes_shapes_match_safe_open(tmp_path: Path) -> None:
    tensors = {
        "b.weight": torch.zeros(3, 4, dtype=torch.bfloat16),
        "a.bias": torch.zeros(7, dtype=torch.float64),
        "c": torch.zeros((), dtype=torch.int8),
        "f8": torch.zeros(5, dtype=torch.float8_e4m3fn),
        "empty": torch.zeros(0, 2),
    }
    save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt", "note": "hi"})
    ckpt = open_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.metadata == {"format": "pt", "note": "hi"}
    with safe_open(tmp_path / "m.safetensors", framework="numpy") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            ref = ckpt.tensors[name]
            piece = f.get_slice(name)
            assert list(ref.shape) == piece.get_shape()
            assert ref.dtype.safetensors == piece.get_dtype()
    assert set(ckpt.tensors) == set(tensors)


def test_tied_aliases_from_save_model_metadata() -> None:
    ckpt = open_checkpoint(SAMPLES / "tied.safetensors")
    assert ckpt.tied_groups() == {"4.weight": "2.weight", "4.bias": "2.bias"}
    assert ckpt.tensors["4.weight"] is ckpt.tensors["2.weight"]


def _file(header: dict[str, object], data: bytes) -> bytes:
    return _file_text(json.dumps(header), data)


def _file_text(text: str, data: bytes) -> bytes:
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


# Dims around the official loader's u64 limits (it multiplies them left to right, then by bits).
_HUGE_DIMS = [1, 2, 2**32 - 1, 2**32, 2**32 + 1, 2**59, 2**61, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**65]
_ESCAPES = [  # JSON text of a name
    r"\ud800",  # a lone high surrogate
    r"\udc00x",  # a lone low surrogate
    r"a\ud800\u0041",  # a high surrogate followed by no low one
    r"\ud83d\ude00",  # a valid pair
    r"\uD800\uDC00",
    r"\u0041\n\t\"\\",  # ordinary escapes
    r"\\ud800",  # an escaped backslash, then plain text
    r"\u0000",
]
_SPACES = ["", " ", "\n", "\r\n", "\t", "  \t\n\r ", "\x0c", "\u00a0"]


_valid_entry = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3"]),
        "shape": st.lists(st.integers(0, 4), max_size=3),
    }
)


@st.composite
def _mutated_files(draw: st.DrawFn) -> bytes:
    """Valid files, then one mutation of the kind a broken writer or an attacker makes."""
    entries = draw(st.dictionaries(st.text("abc.", min_size=1, max_size=4), _valid_entry, max_size=4))
    header: dict[str, object] = {}
    cursor = 0
    for name, entry in entries.items():
        numel = 1
        for d in entry["shape"]:  # type: ignore[attr-defined]
            numel *= d
        size = numel * BY_SAFETENSORS[entry["dtype"]].itemsize  # type: ignore[index]
        header[name] = {**entry, "data_offsets": [cursor, cursor + size]}
        cursor += size
    data = bytes(cursor)
    mutation = draw(
        st.sampled_from(
            ["none", "offset", "shape", "dtype", "truncate", "append", "length", "meta", "huge", "escape", "space"]
        )
    )
    names = list(header)
    if mutation == "huge":  # a shape with zero elements, so any size passes the file-size checks
        dims = draw(st.lists(st.sampled_from(_HUGE_DIMS), min_size=1, max_size=4))
        header[draw(st.sampled_from(["z", "z", *names]))] = {
            "dtype": draw(st.sampled_from(["F32", "U8", "BOOL", "F4", "F64"])),
            "shape": draw(st.permutations([*dims, 0])),
            "data_offsets": [cursor, cursor],
        }
    if names and mutation in ("offset", "shape", "dtype"):
        target: dict[str, object] = header[draw(st.sampled_from(names))]  # type: ignore[assignment]
        if mutation == "offset":
            target["data_offsets"] = [draw(st.integers(0, cursor + 8)), draw(st.integers(0, cursor + 8))]
        elif mutation == "shape":
            target["shape"] = draw(st.lists(st.integers(-1, 5), max_size=3))
        else:
            target["dtype"] = draw(st.sampled_from(["F32", "I8", "C64", "XX", "F64"]))
    if mutation == "meta":
        header["__metadata__"] = draw(st.sampled_from([{"a": "b"}, {"a": 1}, [], {"a": None}]))
    text = json.dumps(header)
    if mutation == "escape" and names:  # JSON escapes in a name, decoded alike by both readers (or refused)
        target_name = json.dumps(draw(st.sampled_from(names)))
        text = text.replace(target_name, '"' + draw(st.sampled_from(_ESCAPES)) + '"', 1)
    if mutation == "space":
        text = draw(st.sampled_from(_SPACES)) + text + draw(st.sampled_from(_SPACES))
    if mutation == "huge" and draw(st.booleans()):
        text = text.replace(": [0, ", ": [-0, ", 1)  # serde reads -0 as a float
    raw = _file_text(text, data)
    if mutation == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == "append":
        raw += draw(st.binary(min_size=1, max_size=9))
    elif mutation == "length":
        raw = struct.pack("<Q", draw(st.integers(0, len(raw) + 16))) + raw[8:]
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=_mutated_files())
def test_refuses_whatever_the_official_library_refuses(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(raw)
    try:
        with safe_open(path, framework="numpy") as f:
            official = {name: (f.get_slice(name).get_dtype(), f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except SafetensorError:
        official = None
    try:
        ckpt = open_checkpoint(path)
        # Names save_model recorded as aliases in __metadata__ are ours to add.
        ours = {n: (r.dtype.safetensors, list(r.shape)) for n, r in ckpt.tensors.items() if n not in ckpt.aliases}
    except CheckpointError:
        ours = None
    if official is None:
        assert ours is None, "paraminspect accepted a file the safetensors library refuses"
    else:
        assert ours == official


@pytest.mark.parametrize("dtype", ["F4", "F6_E2M3", "F6_E3M2"])
def test_sub_byte_dtypes_are_listed(tmp_path: Path, dtype: str) -> None:
    bits = BY_SAFETENSORS[dtype].bits
    header = {"x": {"dtype": dtype, "shape": [8], "data_offsets": [0, 8 * bits // 8]}}
    (tmp_path / "s.safetensors").write_bytes(_file(header, bytes(8 * bits // 8)))
    ref = open_checkpoint(tmp_path / "s.safetensors").tensors["x"]
    assert (ref.shape, ref.nbytes) == ((8,), bits)


def _official_verdict(path: Path) -> bool:
    try:
        with safe_open(path, framework="numpy"):
            return True
    except SafetensorError:
        return False


def _header(fields: str, name: str = "a", before: str = "", after: str = "") -> str:
    return before + '{"' + name + '": {' + fields + "}}" + after


def _empty(shape: str) -> str:
    return '"dtype": "F32", "shape": ' + shape + ', "data_offsets": [0, 0]'


_F32_1 = '"dtype": "F32", "shape": [1], "data_offsets": [0, 4]'


@pytest.mark.parametrize(
    "text",
    [
        _header(_empty("[4294967296, 4294967296, 0]")),  # the product overflows before the 0
        _header(_empty("[0, 18446744073709551616]")),  # a dim over u64
        _header(_empty("[576460752303423488]")),  # 2^59 elements of 32 bits: 2^64 bits
        _header(_empty("[18446744073709551615, 0]")),  # accepted: every product fits
        _header(_empty("[-0]")),  # a float to serde
        _header(_F32_1, name=r"\ud800"),
        _header(_F32_1 + r', "x": "\udc00"'),  # a surrogate in a value nobody reads
        _header(_F32_1, name=r"\ud83d\ude00"),  # accepted: a valid pair
        _header(_F32_1, before=" "),  # accepted: leading JSON whitespace
        _header(_F32_1, before="\r\n\t", after="\n"),
        _header(_F32_1, before="\x0c"),  # form feed is not JSON whitespace
    ],
)
def test_same_verdict_as_the_official_loader(tmp_path: Path, text: str) -> None:
    path = tmp_path / "v.safetensors"
    path.write_bytes(_file_text(text, bytes(4) if "[0, 4]" in text else b""))
    official = _official_verdict(path)
    result = run_cli("shapes", path)
    assert result.code == (0 if official else 2), result.err
