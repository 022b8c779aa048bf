"""Streaming ``.safetensors`` writer.

The layout is the official writer's: tensors sorted by dtype alignment
(largest first) then name, compact JSON header padded with spaces to a
multiple of 8. Unchanged contiguous tensors are copied byte range to byte
range in bounded chunks without decoding (a
:class:`~paraminspect.edit.writers.copying.CopyPool`); new or converted values
are encoded chunk by chunk, so memory stays bounded however big the file is.
Tied names are stored once (the name that sorts first, as ``save_model``
chooses) and the others recorded as ``{alias: kept}`` in ``__metadata__``,
which the reader turns back into aliases.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from paraminspect.dtypes import DType
from paraminspect.edit.plan import Keep, Source, identity
from paraminspect.edit.writers.copying import CopyPool, pwrite_all, raw_copy_possible, source_bytes
from paraminspect.edit.writers.writeback import Writeback
from paraminspect.errors import UsageError
from paraminspect.formats.safetensors import METADATA_KEY
from paraminspect.io import source as input_files
from paraminspect.model import TensorRef

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
# Two copying threads: measured 0.20 s against 0.30 s for one (1 GiB, page cache, 2 cores).
COPY_THREADS = 2


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


def plan_layout(tensors: dict[str, Source], metadata: dict[str, str]) -> Layout:
    """Decide names, order and offsets; refuse dtypes safetensors cannot hold."""
    groups: dict[object, list[str]] = {}
    for name, source in tensors.items():
        if name == METADATA_KEY:
            raise UsageError(f"a tensor named {METADATA_KEY!r} cannot be stored in safetensors")
        if source.dtype.safetensors is None:
            raise UsageError(f"tensor {name!r} is {source.dtype.name}, which safetensors cannot store")
        groups.setdefault(identity(source), []).append(name)
    aliases: dict[str, str] = {}
    kept: list[str] = []
    for names in groups.values():
        keep = min(names)
        kept.append(keep)
        aliases.update({n: keep for n in names if n != keep})
    meta = {k: v for k, v in metadata.items() if k not in tensors}
    meta.update(aliases)
    kept.sort(key=lambda n: (-_RANK[tensors[n].dtype.safetensors or ""], n))
    stored: list[Stored] = []
    offset = 0
    header: dict[str, object] = {}
    if meta:
        header["__metadata__"] = dict(sorted(meta.items()))
    for name in kept:
        source = tensors[name]
        nbytes = source.dtype.nbytes(math.prod(source.shape))
        stored.append(Stored(name, source, source.dtype, source.shape, offset, offset + nbytes))
        header[name] = {
            "dtype": source.dtype.safetensors,
            "shape": list(source.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    try:
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"a tensor name is not valid Unicode ({exc.reason}); safetensors cannot store it") from None
    raw += b" " * (-len(raw) % 8)
    return Layout(struct.pack("<Q", len(raw)) + raw, stored, aliases, meta)


def write(layout: Layout, out: BinaryIO) -> dict[str, int]:
    """Write the file; return the CRC-32 of each stored tensor's bytes that is not a plain copy.

    Unchanged tensors are copied byte for byte by ``COPY_THREADS`` worker
    threads (by the kernel where it can) and get no CRC here: verification
    compares their written bytes with the source's. A tensor that is a whole
    torch zip record takes the CRC-32 the archive records for it instead, so
    verification also checks the source against its archive. Tensors that need
    encoding are written meanwhile on the calling thread.
    """
    out.flush()
    fd = out.fileno()
    start = out.tell()
    base = start + pwrite_all(fd, layout.header, start)
    crcs: dict[str, int] = {}
    with CopyPool(fd, COPY_THREADS) as pool:
        encoded = []
        for item in layout.stored:
            if not (isinstance(item.source, Keep) and raw_copy_possible(item.source.ref)):
                encoded.append(item)
                continue
            ref = item.source.ref
            src = input_files.get(ref.storage.path)  # the handle opened with the checkpoint, never the path again
            recorded = recorded_crc(ref)
            if recorded is not None:
                crcs[item.name] = recorded
            pool.submit(src, *ref.byte_range(), base + item.begin)
        for item in encoded:
            crcs[item.name] = _write_encoded(item, fd, base + item.begin, pool.writeback)
        pool.wait()
    out.seek(base + (layout.stored[-1].end if layout.stored else 0))
    return {item.name: crcs[item.name] for item in layout.stored if item.name in crcs}


def _write_encoded(item: Stored, fd: int, pos: int, writeback: Writeback | None = None) -> int:
    """Write a tensor that needs encoding (new values, casts, strided or big-endian); return its CRC."""
    crc = 0
    written = 0
    stream = writeback.stream(pos) if writeback is not None else None
    for chunk in source_bytes(item.source, item.dtype):
        crc = zlib.crc32(chunk, crc)
        n = pwrite_all(fd, chunk, pos + written)
        if stream is not None:
            stream.wrote(n)
        written += n
    if stream is not None:
        stream.flush()
    if written != item.end - item.begin:
        raise UsageError(f"tensor {item.name!r}: wrote {written} bytes, expected {item.end - item.begin}")
    return crc


def recorded_crc(ref: TensorRef) -> int | None:
    """The source file's own CRC-32 of exactly this tensor's bytes, if it records one."""
    storage = ref.storage
    begin, end = ref.byte_range()
    if storage.recorded_crc is None or begin != storage.offset or end - begin != storage.nbytes:
        return None
    return storage.recorded_crc
