"""A quantized weight as it is meant (logical dtype and shape) and as it is stored."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from paraminspect.model import Checkpoint, Value
from paraminspect.naming.order import ordered_names
from paraminspect.naming.select import Selector

# The last name part of a storage tensor some quantizer writes beside (or instead of)
# a weight; a file with none of them (and no torch quantized tensor) is not looked at
# further, so an unquantized file never imports the recognisers (see looks_quantized).
STORAGE_LEAVES = frozenset(
    (
        "qweight",  # GPTQ, AWQ
        "qzeros",
        "scales",  # GPTQ, AWQ, MLX
        "weight_packed",  # compressed-tensors int and fp4
        "weight_scale",  # compressed-tensors, FP8
        "weight_scale_inv",  # DeepSeek FP8
        "SCB",  # bitsandbytes int8
        "absmax",  # bitsandbytes 4-bit
    )
)
QTENSOR = "torch._utils._rebuild_qtensor"


@dataclass(frozen=True)
class Logical:
    """One logical weight rebuilt from the storage tensors a quantizer wrote.

    ``storage`` names the entries it is made of (their bytes are ``storage_bytes``,
    exact); ``params`` keeps what decoding needs (bits, group size, packing order).
    """

    name: str  # the weight's name as the model means it: "...q_proj.weight"
    dtype: str  # logical element type: int4, int8, nf4, fp4, float8_e4m3fn, qint8...
    shape: tuple[int, ...]
    family: str  # gptq, awq, compressed-tensors, fp8, bnb-int8, bnb-4bit, mlx, torch
    label: str  # what a person reads: "gptq g128"
    storage: tuple[str, ...]
    storage_bytes: int
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # Computed once (the fields are frozen): tree and shapes ask each several times a row.
    @cached_property
    def numel(self) -> int:
        return math.prod(self.shape)

    @cached_property
    def bits_per_weight(self) -> float:
        """Storage bits per logical parameter, scales and zero points included."""
        return self.storage_bytes * 8 / self.numel if self.numel else 0.0

    @property
    def identity(self) -> tuple[object, ...]:
        return ("logical", self.family, self.storage)

    def facts(self) -> dict[str, Any]:
        """The JSON keys every report adds to a logical row."""
        return {
            "logical_dtype": self.dtype,
            "logical_shape": list(self.shape),
            "bits_per_weight": self.bits_per_weight,
            "scheme": self.label,
            "storage": list(self.storage),
        }

    @property
    def caption(self) -> str:
        """``gptq g128, 4.25 bpw``."""
        return f"{self.label}, {round(self.bits_per_weight, 2):g} bpw"


@dataclass
class Recognition:
    """Every logical weight found in a checkpoint, by logical name, and what was noticed."""

    weights: dict[str, Logical] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)  # storage name -> logical name
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.weights)

    def add(self, weight: Logical) -> None:
        if weight.name in self.weights or any(n in self.owner for n in weight.storage):
            return  # first recogniser wins; a storage tensor belongs to one weight
        self.weights[weight.name] = weight
        for name in weight.storage:
            self.owner[name] = weight.name

    def display_names(self, names: list[str]) -> list[str]:
        """``names`` with each weight's storage names replaced by its logical name,
        at the position of its first storage tensor."""
        out: list[str] = []
        shown: set[str] = set()
        for name in names:
            logical = self.owner.get(name)
            if logical is None:
                out.append(name)
            elif logical not in shown:
                shown.add(logical)
                out.append(logical)
        return out


def looks_quantized(ckpt: Checkpoint) -> bool:
    """A cheap test by names (and torch's quantized placeholders) that a file may hold
    quantized weights: False means no recogniser could find one."""
    for name, entry in ckpt.entries.items():
        if name.rpartition(".")[2] in STORAGE_LEAVES or ".quant_state." in name:
            return True
        if isinstance(entry, Value) and getattr(entry.value, "qualname", None) == QTENSOR:
            return True
    return False


def display_names(
    ckpt: Checkpoint, found: Recognition, selector: Selector | None = None, *, sort: bool = False
) -> list[str]:
    """Tensor names in display order with each quantized weight's storage replaced by its
    logical name; a weight is selected when its logical name or any storage name matches."""
    tensors = ckpt.tensors
    names = found.display_names([n for n in ordered_names(ckpt, sort=sort) if n in tensors or n in found.owner])
    if not selector:
        return names
    return [
        n
        for n in names
        if selector.matches(n) or (n in found.weights and any(selector.matches(s) for s in found.weights[n].storage))
    ]
