"""model.flatten and the Checkpoint helpers: names, limits, cycles, ties."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest

from paraminspect import LimitExceeded, Value
from paraminspect.dtypes import BY_NAME
from paraminspect.model import Checkpoint, StorageRef, TensorRef, contiguous_strides, flatten, opaque_class

F32 = BY_NAME["float32"]


def _ref(key: str, shape: tuple[int, ...] = (2,), offset: int | None = None) -> TensorRef:
    # Each storage key its own record, at its own place in the file (as in a real zip).
    at = 64 * (int(key) + 1) if offset is None else offset
    storage = StorageRef(Path("x.pt"), key, at, 4 * 8, F32)
    return TensorRef(F32, shape, contiguous_strides(shape), storage)


def test_flatten_joins_keys_and_positions_in_order() -> None:
    t = _ref("0")
    obj = {"model": OrderedDict([("b.weight", t), ("a.bias", t)]), "groups": [{"lr": 0.1, "betas": (0.9, 0.99)}]}
    assert list(flatten(obj)) == [
        ("model.b.weight", t),
        ("model.a.bias", t),
        ("groups.0.lr", Value(0.1)),
        ("groups.0.betas", Value((0.9, 0.99))),
    ]


def test_empty_containers_and_scalars_are_leaves() -> None:
    assert dict(flatten({"a": {}, "b": [], "c": None})) == {"a": Value({}), "b": Value([]), "c": Value(None)}


def test_cycles_are_shown_not_walked_forever() -> None:
    loop: list[object] = [_ref("0")]
    loop.append(loop)
    names = dict(flatten({"x": loop}))
    assert str(names["x.1"].value) == "<object <cycle>>"  # type: ignore[union-attr]


def test_depth_and_entry_limits() -> None:
    deep: list[object] = [_ref("0")]
    for _ in range(2000):
        deep = [deep]
    with pytest.raises(LimitExceeded, match="nesting deeper than 1000"):
        list(flatten(deep))
    shared: list[object] = [_ref("0"), _ref("1")]
    for _ in range(40):  # 2**40 paths through shared references
        shared = [shared, shared]
    with pytest.raises(LimitExceeded, match="more than 1,000 entries"):
        list(flatten(shared, max_entries=1000))


def test_placeholder_with_state_yields_itself_then_its_state() -> None:
    obj = opaque_class("argparse.Namespace")()
    obj.__setstate__({"lr": 0.1})
    entries = dict(flatten({"args": obj}))
    assert str(entries["args"].value) == "<object argparse.Namespace>"  # type: ignore[union-attr]
    assert entries["args.lr"] == Value(0.1)


def test_tied_groups_by_identity_and_by_recorded_alias() -> None:
    shared = _ref("0")
    ckpt = Checkpoint(Path("x.pt"), "torch-zip", {"a": shared, "b": _ref("1"), "c": shared})
    assert ckpt.tied_groups() == {"c": "a"}
    ckpt.aliases = {"b": "a"}
    assert ckpt.tied_groups() == {"c": "a", "b": "a"}


def test_byte_range_of_strided_views() -> None:
    storage = StorageRef(Path("x.pt"), "0", 100, 4 * 12, F32)
    transposed = TensorRef(F32, (4, 3), (1, 4), storage, storage_offset=0)
    assert transposed.byte_range() == (100, 148)
    column = TensorRef(F32, (3,), (4,), storage, storage_offset=1)
    assert column.byte_range() == (104, 140)
    assert not transposed.is_contiguous
