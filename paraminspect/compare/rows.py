"""What ``diff`` says of each name: its status, each side's entry as shown, and how
two non-tensor values (or a pair's metadata) are told equal or not.

Kept apart from :mod:`paraminspect.compare.diff` (which pairs names and builds the
report) because ``check`` and lockfiles speak of rows too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from paraminspect.compare.accumulate import ValueStats, cast_comparable
from paraminspect.compare.tolerance import Tolerance
from paraminspect.formats.pickle.numpydata import NumpyDType, ndarray
from paraminspect.inttext import safe_str
from paraminspect.model import Entry, Opaque, TensorRef, Value
from paraminspect.quant.logical import Logical

__all__ = ["LABELS", "RULES", "Row", "Side", "Status", "classify", "comparable"]


class Status(str, Enum):
    ONLY_A = "only_in_a"
    ONLY_B = "only_in_b"
    DTYPE = "dtype_changed"
    SHAPE = "shape_changed"
    VALUES = "values_changed"
    EQUAL = "equal"
    # Only in one file, and there tied to a name both files hold (``--ties-equal``).
    TIED = "tied_alias"


LABELS = {
    Status.ONLY_A: "only in A",
    Status.ONLY_B: "only in B",
    Status.DTYPE: "dtype changed",
    Status.SHAPE: "shape changed",
    Status.VALUES: "values changed",
    Status.EQUAL: "equal",
    Status.TIED: "tied alias",
}

RULES = {Status.ONLY_A: "PI201", Status.ONLY_B: "PI202", Status.DTYPE: "PI203", Status.SHAPE: "PI204"}
RULES[Status.VALUES] = "PI205"

_VALUE_TEXT_LIMIT = 60


@dataclass(frozen=True)
class Side:
    """One side's entry as a report shows it: a tensor's dtype and shape, or a value.

    ``str()`` gives the one-cell table form (``float32 [8, 4]``, ``3``,
    ``<object argparse.Namespace>``); ``to_json()`` the exact form.
    """

    dtype: str  # tensor dtype name, or the value's type name
    shape: tuple[int, ...] | None = None  # None for a non-tensor leaf
    value: Any = None

    @classmethod
    def of(cls, entry: Entry | Logical) -> Side:
        if isinstance(entry, Logical):
            return cls(entry.dtype, entry.shape)
        if isinstance(entry, TensorRef):
            return cls(entry.dtype.name, entry.shape)
        return cls(entry.type_name, None, entry.value)

    def to_json(self) -> dict[str, Any]:
        if self.shape is not None:
            return {"kind": "tensor", "dtype": self.dtype, "shape": list(self.shape)}
        value = str(self.value) if isinstance(self.value, Opaque) else self.value
        return {"kind": "value", "type": self.dtype, "value": value}

    def __str__(self) -> str:
        if self.shape is not None:
            return f"{self.dtype} [{', '.join(map(str, self.shape))}]"
        text = repr(self.value) if isinstance(self.value, str) else safe_str(self.value)
        if len(text) > _VALUE_TEXT_LIMIT:
            text = text[: _VALUE_TEXT_LIMIT - 3] + "..."
        return text


@dataclass
class Row:
    """One name's outcome. ``a_name``/``b_name`` are each file's own full names
    (before mapping, with the prefix of a ``--root`` subtree)."""

    name: str
    status: Status
    a_name: str | None
    b_name: str | None
    a: Side | None
    b: Side | None
    stats: ValueStats | None = None  # set when values were compared
    # Only in one file, where it is tied to this (mapped) name, which both files hold:
    # one file stores a tie the other leaves out (lm_head.weight = embed_tokens.weight).
    tied_to: str | None = None


_NAN_KEY = ("<nan>",)


def comparable(obj: Any, equal_nan: bool = True) -> Any:
    """A form of a non-tensor leaf that ``==`` compares by content.

    Placeholders compare by class name and arguments (their mapping state is
    flattened into names of its own); tensors inside values by dtype and shape;
    NaN equals NaN unless ``equal_nan`` is off; unknown objects by their text.
    """
    if isinstance(obj, TensorRef):
        return ("<tensor>", obj.dtype.name, obj.shape)
    if isinstance(obj, Opaque):
        # Unpickling may create a placeholder without calling __init__.
        state = getattr(obj, "state", None)
        state = None if isinstance(state, Mapping) else comparable(state, equal_nan)
        args = comparable(getattr(obj, "args", ()), equal_nan)
        return ("<object>", obj.qualname, args, comparable(getattr(obj, "kwargs", {}), equal_nan), state)
    if isinstance(obj, ndarray):  # a numpy array (an RNG state) by its content
        return ("<ndarray>", obj.dtype_name, obj.shape, obj.fortran, obj.data, comparable(obj.items, equal_nan))
    if isinstance(obj, NumpyDType):
        return ("<numpy dtype>", obj.name, obj.byteorder)
    if isinstance(obj, Mapping):
        return ("<map>", tuple((safe_str(k), comparable(v, equal_nan)) for k, v in obj.items()))
    if isinstance(obj, list | tuple):
        return (type(obj).__name__, tuple(comparable(v, equal_nan) for v in obj))
    if isinstance(obj, float) and math.isnan(obj):
        return _NAN_KEY if equal_nan else object()
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
        return obj
    return (type(obj).__name__, safe_str(obj))


def classify(a: Entry, b: Entry, tolerance: Tolerance, structure: bool, cast_values: bool) -> tuple[Status, bool]:
    """Status from metadata alone, and whether tensor values still need comparing."""
    if isinstance(a, TensorRef) != isinstance(b, TensorRef):
        return Status.DTYPE, False
    if isinstance(a, TensorRef) and isinstance(b, TensorRef):
        if a.dtype != b.dtype:  # fp32 vs its bf16 cast: still worth knowing how far values moved
            return Status.DTYPE, cast_values and not structure and cast_comparable(a, b)
        if a.shape != b.shape:
            return Status.SHAPE, False
        return Status.EQUAL, not structure
    assert isinstance(a, Value) and isinstance(b, Value)
    if a.type_name != b.type_name:
        return Status.DTYPE, False
    if structure or comparable(a.value, tolerance.equal_nan) == comparable(b.value, tolerance.equal_nan):
        return Status.EQUAL, False
    return Status.VALUES, False
