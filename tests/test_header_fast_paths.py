"""The fast paths of opening a big header give exactly what the slow ones gave:
C-speed shape and offset checks (held to safetensors' own safe_open), duplicate
keys found after a C-speed dict build, cached ``numel``/``identity``, and the
all-tensors shortcut of the automatic ``--root`` choice."""

from __future__ import annotations

import json
import math
import pickle
import struct
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError, safe_open

from paraminspect import CheckpointError, open_checkpoint
from paraminspect.dtypes import BY_SAFETENSORS
from paraminspect.formats.strictjson import unique_keys
from paraminspect.model import Checkpoint, StorageRef, TensorRef, Value, contiguous_strides
from paraminspect.naming import roots
from paraminspect.naming.select import natural_key, natural_sorted
from tests.conftest import run_cli

# Values around every edge the checks have: negative, zero, u64's top, past it, and
# JSON values of other types (a bool is an int to Python, not to the official loader).
_DIMS = [0, 1, 2, 3, 4, 2**32, 2**63, 2**64 - 1, 2**64, -1, True, False, 1.0, None, "2", [2]]
_SIZES = {"F32": 4, "U8": 1, "BF16": 2, "F64": 8, "I64": 8}


def _file(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _nbytes(shape: object, size: int) -> int | None:
    """The bytes ``shape`` would take if Python's arithmetic were the rule (True is 1,
    -1 * -1 is 1): offsets that fit it leave only the type and range checks to refuse."""
    if not isinstance(shape, list) or not all(isinstance(d, int | float) for d in shape):
        return None
    n = math.prod(shape) * size
    return int(n) if n == int(n) and 0 <= n <= 64 else None


@st.composite
def _entries(draw: st.DrawFn) -> tuple[dict[str, object], int]:
    """A header of one to three tensors, each valid or broken in its shape or offsets."""
    header: dict[str, object] = {}
    cursor = 0
    for i in range(draw(st.integers(1, 3))):
        dtype = draw(st.sampled_from(sorted(_SIZES)))
        shape = draw(st.one_of(st.lists(st.sampled_from(_DIMS), max_size=4), st.sampled_from([{}, 3, None])))
        fits = _nbytes(shape, _SIZES[dtype])
        nbytes = fits if fits is not None else draw(st.sampled_from([0, _SIZES[dtype]]))
        offsets = draw(
            st.one_of(
                st.just([cursor, cursor + nbytes]),
                st.lists(st.sampled_from([cursor, cursor + nbytes, -1, 2**64, True, False, 1.5]), max_size=3),
            )
        )
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        cursor += nbytes
    return header, cursor


def _one(shape: list[object], offsets: list[object] | None = None) -> tuple[dict[str, object], int]:
    fits = _nbytes(shape, 4) or 0
    return {"a": {"dtype": "F32", "shape": shape, "data_offsets": offsets or [0, fits]}}, fits


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=_entries())
@example(drawn=_one([2**32, 2**32, 0]))  # the product overflows before the zero
@example(drawn=_one([2**64, 0]))
@example(drawn=_one([2**64 - 1, 0]))  # accepted: every product fits
@example(drawn=_one([True]))
@example(drawn=_one([-1, -1]))
@example(drawn=_one([2], [False, 8]))
@example(drawn=_one([2], [0, 8.0]))
def test_shape_and_offset_checks_agree_with_safe_open(tmp_path: Path, drawn: tuple[dict[str, object], int]) -> None:
    header, cursor = drawn
    path = tmp_path / "e.safetensors"
    path.write_bytes(_file(header, bytes(cursor)))
    try:
        with safe_open(path, framework="numpy") as f:
            official = {n: (f.get_slice(n).get_dtype(), f.get_slice(n).get_shape()) for n in f.keys()}  # noqa: SIM118
    except SafetensorError:
        official = None
    try:
        ckpt = open_checkpoint(path)
        ours = {n: (r.dtype.safetensors, list(r.shape)) for n, r in ckpt.tensors.items()}
        # The strides shared between tensors of one shape are each shape's own.
        assert all(r.strides == contiguous_strides(r.shape) for r in ckpt.tensors.values())
    except CheckpointError:
        ours = None
    assert ours == official


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.integers()), max_size=8))
def test_duplicate_keys_found_as_before(pairs: list[tuple[str, int]]) -> None:
    keys = [k for k, _ in pairs]
    repeated = next((k for i, k in enumerate(keys) if k in keys[:i]), None)  # the first key met twice
    build = unique_keys("header")
    if repeated is None:
        assert build(pairs) == {k: v for k, v in pairs}
        assert list(build(pairs)) == keys
    else:
        with pytest.raises(CheckpointError, match=f"^header has the key {repeated!r} twice$"):
            build(pairs)


@given(
    shape=st.lists(st.integers(0, 2**40), max_size=5).map(tuple),
    offset=st.integers(0, 2**40),
    storage_offset=st.integers(0, 100),
)
def test_cached_numel_and_identity_are_the_fields_own(shape: tuple[int, ...], offset: int, storage_offset: int) -> None:
    dtype = BY_SAFETENSORS["F32"]
    storage = StorageRef(Path("m.safetensors"), "w", offset, 4 * math.prod(shape), dtype)
    ref = TensorRef(dtype, shape, contiguous_strides(shape), storage, storage_offset=storage_offset)
    assert ref.numel == int(np.prod(np.array(shape, dtype=object), initial=1)) == ref.numel
    first = ref.identity
    assert "numel" in vars(ref)  # computed once, kept beside the fields
    fresh = TensorRef(dtype, shape, contiguous_strides(shape), storage, storage_offset=storage_offset)
    assert fresh == ref and hash(fresh) == hash(ref) and fresh.identity == first
    assert [f.name for f in fields(TensorRef)].count("numel") == 0
    copied = pickle.loads(pickle.dumps(ref))
    assert copied == ref and copied.identity == first and "numel" not in vars(pickle.loads(pickle.dumps(ref)))
    begin = offset + 4 * storage_offset
    assert ref.byte_range() == (begin, begin + 4 * ref.numel) == ref.byte_range()
    moved = replace(ref, storage_offset=storage_offset + 1)  # a changed copy computes its own
    assert moved.identity != first and moved.identity[1] == offset + 4 * (storage_offset + 1)


_PARTS = ["model", "ema", "state_dict", "optimizer", "layers", "0", "1", "weight", "_extra_state", "param_groups"]


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.lists(st.sampled_from(_PARTS), min_size=1, max_size=4).map(".".join),
        st.sampled_from(["tensor", "tensor", "tensor", "value"]),
        max_size=8,
    )
)
@example({"model._extra_state": "tensor", "ema._extra_state": "tensor"})  # no tensor outside extra state
@example({"model.weight": "tensor", "_extra_state": "tensor"})
@example({})
def test_all_tensors_shortcut_gives_the_full_count(kinds: dict[str, str]) -> None:
    dtype = BY_SAFETENSORS["F32"]
    tensor = TensorRef(dtype, (1,), (1,), StorageRef(Path("m.pt"), "0", 0, 4, dtype))
    entries = {n: tensor if kind == "tensor" else Value(3) for n, kind in kinds.items()}
    ckpt = Checkpoint(Path("m.pt"), "torch-zip", entries)
    fast = roots.state_dict_candidates(ckpt)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(roots, "_all_tensors", lambda _ckpt: False)  # the full prefix count, as before
        slow = roots.state_dict_candidates(ckpt)
    assert fast == slow


# Digits of other scripts (\d and int() read them), leading zeros, dots, and pieces that repeat.
_PIECES = ["layers.", ".", "0", "7", "007", "10", "2", "\u0663", "\u00b2", "mlp", "weight", "_", "a1"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=6).map("".join), max_size=30))
def test_natural_sorted_is_sorting_by_natural_key(names: list[str]) -> None:
    assert natural_sorted(names) == sorted(names, key=natural_key)


def test_a_superscript_digit_sorts_as_text(tmp_path: Path) -> None:
    """``\\d`` leaves "²" in a text piece, which isdigit() took for a number (a crash)."""
    from safetensors.numpy import save_file

    tensors = {"layer1\u00b2": np.zeros(2, np.float32), "layer1": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)}
    save_file(tensors, tmp_path / "s.safetensors")
    result = run_cli("shapes", "-f", "json", tmp_path / "s.safetensors")
    assert result.code == 0, result.err
    with safe_open(tmp_path / "s.safetensors", framework="numpy") as f:
        assert {row["name"] for row in json.loads(result.out)["tensors"]} == set(f.keys())
    names = [row["name"] for row in json.loads(result.out)["tensors"]]
    assert names == ["b", "layer1", "layer1\u00b2"]  # a name before its extensions, as for any text


@given(shape=st.lists(st.integers(0, 2**20), max_size=3).map(tuple), storage_bytes=st.integers(0, 2**40))
def test_cached_logical_numbers_are_the_fields_own(shape: tuple[int, ...], storage_bytes: int) -> None:
    from paraminspect.quant.logical import Logical

    weight = Logical("w", "int4", shape, "gptq", "gptq g128", ("w.qweight",), storage_bytes)
    numel = int(np.prod(np.array(shape, dtype=object), initial=1))
    assert weight.numel == numel == weight.numel
    expected = storage_bytes * 8 / numel if numel else 0.0
    assert weight.bits_per_weight == expected == weight.bits_per_weight
    assert weight == Logical("w", "int4", shape, "gptq", "gptq g128", ("w.qweight",), storage_bytes)
