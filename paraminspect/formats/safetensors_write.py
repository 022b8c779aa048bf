"""Streaming ``.safetensors`` writer.

The layout is the official writer's: tensors sorted by dtype alignment
(largest first) then name, compact JSON header padded with spaces to a
multiple of 8. Unchanged contiguous tensors are copied byte range to byte
range in bounded chunks without decoding; new or converted values are encoded
chunk by chunk, so memory stays bounded however big the file is. Tied names
are stored once (the name that sorts first, as ``save_model`` chooses) and the
others recorded as ``{alias: kept}`` in ``__metadata__``, which the reader
turns back into aliases.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from paraminspect.casting import cast_array
from paraminspect.dtypes import DType
from paraminspect.edit import Cast, Keep, NewData, Source, identity
from paraminspect.errors import UsageError
from paraminspect.model import TensorRef

if TYPE_CHECKING:
    import numpy as np

# The official writer's dtype order (ascending alignment); it writes the largest first.
ALIGNMENT_ORDER = [
    "BOOL",
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "U8",
    "I8",
    "F8_E5M2",
    "F8_E4M3",
    "F8_E8M0",
    "F8_E4M3FNUZ",
    "F8_E5M2FNUZ",
    "I16",
    "U16",
    "F16",
    "BF16",
    "I32",
    "U32",
    "F32",
    "C64",
    "F64",
    "I64",
    "U64",
]
_RANK = {code: i for i, code in enumerate(ALIGNMENT_ORDER)}
CHUNK_BYTES = 8 << 20
CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class Stored:
    """One tensor as laid out in the output."""

    name: str
    source: Source
    dtype: DType
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class Layout:
    header: bytes  # length prefix + JSON + padding
    stored: list[Stored]
    aliases: dict[str, str]  # alias -> stored name
    metadata: dict[str, str]

    @property
    def total_bytes(self) -> int:
        return len(self.header) + (self.stored[-1].end if self.stored else 0)


def plan_layout(tensors: dict[str, Source], metadata: dict[str, str]) -> Layout:
    """Decide names, order and offsets; refuse dtypes safetensors cannot hold."""
    groups: dict[object, list[str]] = {}
    for name, source in tensors.items():
        if source.dtype.safetensors is None:
            raise UsageError(f"tensor {name!r} is {source.dtype.name}, which safetensors cannot store")
        groups.setdefault(identity(source), []).append(name)
    aliases: dict[str, str] = {}
    kept: list[str] = []
    for names in groups.values():
        keep = min(names)
        kept.append(keep)
        aliases.update({n: keep for n in names if n != keep})
    clash = sorted(set(metadata) & set(tensors))
    meta = {k: v for k, v in metadata.items() if k not in tensors}
    if clash:
        meta = {k: v for k, v in meta.items() if k not in clash}
    meta.update(aliases)
    kept.sort(key=lambda n: (-_RANK[tensors[n].dtype.safetensors or ""], n))
    stored: list[Stored] = []
    offset = 0
    header: dict[str, object] = {}
    if meta:
        header["__metadata__"] = dict(sorted(meta.items()))
    for name in kept:
        source = tensors[name]
        nbytes = source.dtype.nbytes(_numel(source.shape))
        stored.append(Stored(name, source, source.dtype, source.shape, offset, offset + nbytes))
        header[name] = {
            "dtype": source.dtype.safetensors,
            "shape": list(source.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return Layout(struct.pack("<Q", len(raw)) + raw, stored, aliases, meta)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def write(layout: Layout, out: BinaryIO) -> dict[str, int]:
    """Write the file; return the CRC-32 of each stored tensor's bytes as written."""
    out.write(layout.header)
    crcs: dict[str, int] = {}
    for item in layout.stored:
        crc = 0
        written = 0
        for chunk in source_bytes(item.source, item.dtype):
            crc = zlib.crc32(chunk, crc)
            out.write(chunk)
            written += len(chunk)
        if written != item.end - item.begin:
            raise UsageError(f"tensor {item.name!r}: wrote {written} bytes, expected {item.end - item.begin}")
        crcs[item.name] = crc
    return crcs


def _raw_copy_possible(ref: TensorRef) -> bool:
    little = ref.storage.byteorder == "little" and sys.byteorder == "little"
    return ref.is_contiguous and (little or ref.dtype.itemsize == 1)


def source_bytes(source: Source, dtype: DType) -> Iterator[memoryview | bytes]:
    """The tensor's elements as little-endian C-order bytes, in bounded chunks."""
    if isinstance(source, Keep) and _raw_copy_possible(source.ref):
        yield from _file_range(source.ref.storage.path, *source.ref.byte_range())
        return
    import numpy as np

    from paraminspect.tensors import iter_chunks, numpy_dtype

    if isinstance(source, NewData):
        flat = np.ascontiguousarray(source.array).reshape(-1)
        for first in range(0, flat.size, CHUNK_ELEMENTS):
            yield _little(flat[first : first + CHUNK_ELEMENTS]).tobytes()
        return
    ref = source.ref
    target = numpy_dtype(replace(ref, dtype=dtype)).newbyteorder("=") if isinstance(source, Cast) else None
    for chunk in iter_chunks(ref, CHUNK_ELEMENTS):
        yield _little(chunk if target is None else cast_array(chunk, target, dtype)).tobytes()


def _little(array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        return array.astype(array.dtype.newbyteorder("<"))
    return array


def _file_range(path: Path, begin: int, end: int) -> Iterator[memoryview]:
    buffer = bytearray(min(CHUNK_BYTES, max(end - begin, 1)))
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        fh.seek(begin)
        remaining = end - begin
        while remaining:
            n = fh.readinto(view[: min(len(buffer), remaining)])
            if not n:
                raise UsageError(f"{path}: tensor data ends early (file changed while writing?)")
            remaining -= n
            yield view[:n]
