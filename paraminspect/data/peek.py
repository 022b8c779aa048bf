"""A few elements of a tensor, decoded with the standard library alone.

``get`` usually prints at most a thousand numbers (torch's print threshold),
often only the 36 corners of a huge matrix. Importing numpy for that costs
more than everything else ``get`` does (~0.1 s of a ~0.2 s run), so those
values are read here with ``struct`` from a few positional reads of the runs
of bytes holding them (through the file's one handle; never a memory map,
whose pages fault with SIGBUS if the file is truncated underneath). GGUF's
quantized types are read a whole block per shown weight and dequantized
here too (ggmlpeek.py). Whole tensors, JSON/CSV and statistics still go
through numpy (arrays.py, ggml.py); tests hold both decoders to torch (and
to gguf.quants), bit for bit.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import Any

from paraminspect.data import ggmlpeek
from paraminspect.data.arrays import RUN_GAP_BYTES, ensure_in_file
from paraminspect.io import source
from paraminspect.model import TensorRef

# struct codes per dtype; float8_e4m3fn & co. (no IEEE layout) are left to numpy.
_CODES = {
    "bool": "?",
    "uint8": "B",
    "int8": "b",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float16": "e",
    "float32": "f",
    "float64": "d",
    "complex64": "ff",
    "complex128": "dd",
    "bfloat16": "H",  # the top half of a float32
    "float8_e5m2": "B",  # the top half of a float16
}

_F32 = struct.Struct("<f")
_F16 = struct.Struct("<e")


def _bfloat16(bits: int) -> float:
    value: float = _F32.unpack((bits << 16).to_bytes(4, "little"))[0]
    return value


def _float8_e5m2(bits: int) -> float:
    value: float = _F16.unpack((bits << 8).to_bytes(2, "little"))[0]
    return value


_WIDEN: dict[str, Callable[[int], float]] = {"bfloat16": _bfloat16, "float8_e5m2": _float8_e5m2}


def can_peek(ref: TensorRef) -> bool:
    if ref.storage.packing is not None:  # encoded bytes: read through arrays
        return False
    return ref.dtype.name in (ggmlpeek.DECODERS if ref.dtype.blocked else _CODES)


def element_decoder(ref: TensorRef) -> Callable[[Any, int], Any] | None:
    """A function (buffer, byte offset) -> one real element as a Python number
    (floats widened exactly), or None for complex and dtypes struct cannot decode."""
    name = ref.dtype.name
    code = _CODES.get(name)
    if code is None or len(code) != 1:
        return None
    unpack = struct.Struct((">" if ref.storage.byteorder == "big" else "<") + code).unpack_from
    widen = _WIDEN.get(name)
    if widen is None:
        return lambda buffer, offset: unpack(buffer, offset)[0]
    return lambda buffer, offset: widen(unpack(buffer, offset)[0])


def read_shown(ref: TensorRef, indices: list[list[int]]) -> Any:
    """``tensor[np.ix_(*indices)]`` as nested lists of Python numbers (floats widened exactly)."""
    if ref.dtype.blocked:
        return _read_shown_blocks(ref, indices)
    name = ref.dtype.name
    layout = struct.Struct((">" if ref.storage.byteorder == "big" else "<") + _CODES[name])
    itemsize = ref.dtype.itemsize
    ensure_in_file(ref)
    begin = ref.byte_range()[0]
    widen = _WIDEN.get(name)
    offsets = [
        begin + sum(i * s for i, s in zip(position, ref.strides, strict=True)) * itemsize
        for position in itertools.product(*indices)
    ]
    data, placed = _read_runs(source.get(ref.storage.path), offsets, itemsize)
    flat: list[Any] = []
    for offset in offsets:
        parts = layout.unpack_from(data, placed[offset])
        if len(parts) == 2:
            flat.append(complex(*parts))
        elif widen is not None:
            flat.append(widen(parts[0]))
        else:
            flat.append(parts[0])
    return _nest(flat, [len(axis) for axis in indices])


def _read_shown_blocks(ref: TensorRef, indices: list[list[int]]) -> Any:
    """:func:`read_shown` of a ggml block type (contiguous, C order): each shown
    weight's whole block is read, and only that weight is dequantized."""
    decode = ggmlpeek.DECODERS[ref.dtype.name]
    block, size = ref.dtype.block, ref.dtype.block_bytes
    ensure_in_file(ref)
    begin = ref.byte_range()[0]
    positions = [
        sum(i * s for i, s in zip(position, ref.strides, strict=True)) for position in itertools.product(*indices)
    ]
    offsets = [begin + p // block * size for p in positions]
    data, placed = _read_runs(source.get(ref.storage.path), offsets, size)
    flat = [decode(data, placed[offset], p % block) for offset, p in zip(offsets, positions, strict=True)]
    return _nest(flat, [len(axis) for axis in indices])


def _read_runs(src: source.Source, offsets: list[int], itemsize: int) -> tuple[bytearray, dict[int, int]]:
    """The bytes at ``offsets`` (one element each), read one run of nearby elements at a
    time, and where each offset landed in the returned buffer."""
    data = bytearray()
    placed: dict[int, int] = {}
    ordered = sorted(set(offsets))
    start = 0
    while start < len(ordered):
        stop = start + 1
        while stop < len(ordered) and ordered[stop] - ordered[stop - 1] <= itemsize + RUN_GAP_BYTES:
            stop += 1
        first, last = ordered[start], ordered[stop - 1] + itemsize
        at = len(data)
        data += src.pread(first, last - first)
        placed.update((o, at + o - first) for o in ordered[start:stop])
        start = stop
    return data, placed


def _nest(flat: list[Any], shape: list[int]) -> Any:
    if not shape:
        return flat[0]
    for n in reversed(shape[1:]):
        flat = [flat[i : i + n] for i in range(0, len(flat), n)]
    return flat
