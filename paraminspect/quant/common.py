"""Small helpers every recogniser shares: sibling names, byte sums, fitting settings."""

from __future__ import annotations

from collections.abc import Mapping

from paraminspect.model import TensorRef

PACKABLE_BITS = (2, 4, 8)  # bit widths that divide a 32-bit word evenly


def sibling(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


def split(name: str, suffix: str) -> str | None:
    """The module prefix of ``name`` if it ends in ``suffix`` (``a.b.qweight`` -> ``a.b``)."""
    if name == suffix:
        return ""
    if name.endswith("." + suffix):
        return name[: -len(suffix) - 1]
    return None


def storage_bytes(tensors: Mapping[str, TensorRef], names: tuple[str, ...]) -> int:
    return sum(tensors[n].nbytes for n in names)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def group_label(family: str, group_size: int | None, columns: int) -> str:
    """``gptq g128``; ``gptq channel`` when one group spans the row."""
    if group_size is None or group_size <= 0 or group_size >= columns:
        return f"{family} channel"
    return f"{family} g{group_size}"
