"""Reader for numpy ``.npz`` archives (``numpy.savez``, ``savez_compressed``): a zip of ``.npy``.

The zip directory is read by :mod:`~paraminspect.formats.zipstrict` (one reading
for every reader). A member ``dense.weight.npy`` becomes the entry
``dense.weight``. A stored member's elements are read in place; a deflated
member's are described by a :class:`~paraminspect.model.Packing` that
``data/`` inflates when values are asked for. Listing reads only each member's
``.npy`` header: for a deflated member, only as many bytes are inflated as the
header takes (at most :data:`~paraminspect.formats.npy.MAX_HEADER`).
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from paraminspect.errors import CheckpointError
from paraminspect.formats import npy, zipstrict
from paraminspect.formats.filemeta import as_file_metadata
from paraminspect.formats.magic import ZIP_MAGIC
from paraminspect.limits import Limits
from paraminspect.model import DEFLATE, Checkpoint, Entry, Packing

STORED, DEFLATED = 0, 8
_BLOCK = 1 << 16


def looks_like_npz(fh: BinaryIO) -> bool:
    """A zip whose first record is a ``*.npy`` (as ``numpy.savez`` writes)."""
    fh.seek(0)
    header = fh.read(30)
    fh.seek(0)
    if len(header) < 30 or not header.startswith(ZIP_MAGIC):
        return False
    (length,) = struct.unpack("<H", header[26:28])
    fh.seek(30)
    found = fh.read(length).endswith(b".npy")
    fh.seek(0)
    return found


def inflate_prefix(fh: BinaryIO, record: zipstrict.Record, want: int) -> bytes:
    """The first ``want`` bytes (fewer if the member is shorter) of a deflated member,
    inflating no more than that."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = b""
    consumed = 0
    pending = b""
    while len(out) < want:
        if not pending:
            if inflater.eof or consumed >= record.compressed_size:
                break
            fh.seek(record.data_offset + consumed)
            pending = fh.read(min(_BLOCK, record.compressed_size - consumed))
            if not pending:
                break
            consumed += len(pending)
        try:
            data = inflater.decompress(pending, want - len(out))
        except zlib.error as exc:
            raise CheckpointError(f"npz member {record.name!r}: compressed data is damaged ({exc})") from None
        pending = inflater.unconsumed_tail
        out += data
    return out


def _member_reader(fh: BinaryIO, record: zipstrict.Record) -> Callable[[int, int], bytes]:
    """``read(offset, n)`` of the member's (uncompressed) bytes."""
    if record.method == STORED:

        def stored(offset: int, n: int) -> bytes:
            fh.seek(record.data_offset + offset)
            return fh.read(n)

        return stored
    return lambda offset, n: inflate_prefix(fh, record, offset + n)[offset:]


def members(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Iterator[tuple[str, zipstrict.Record, npy.Header]]:
    """Each ``.npy`` member's entry name, record and header, in the archive's order."""
    records = zipstrict.read_directory(fh, size, limits.max_entries + 16)
    for record in records.values():
        if record.name.endswith("/") and record.size == 0:
            continue  # a folder entry, which np.load skips too
        if not record.name.endswith(".npy"):
            raise CheckpointError(f"npz member {record.name!r} is not a .npy array")
        if record.method not in (STORED, DEFLATED):
            raise CheckpointError(f"npz member {record.name!r} uses compression method {record.method}, not deflate")
        read = _member_reader(fh, record)
        try:
            header = npy.read_header(functools.partial(read, 0), record.size, limits)
        except CheckpointError as exc:
            exc.message = f"npz member {record.name!r}: {exc.message}"
            exc.args = (exc.message,)
            raise
        yield record.name.removesuffix(".npy"), record, header


def read_npz(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    entries: dict[str, Entry] = {}
    compressed = 0
    for name, record, header in members(path, fh, size, limits):
        if record.method == STORED:
            entries[name] = npy.entry(path, name, header, record.data_offset, record.size)
            continue
        compressed += 1
        packing = Packing(DEFLATE, record.data_offset, record.compressed_size, record.size, record.crc)
        entries[name] = npy.entry(path, name, header, 0, record.size, packing)
    metadata = {"compressed_members": str(compressed)} if compressed else {}
    return Checkpoint(path, "npz", entries, metadata, ordered=True, file_metadata=as_file_metadata(metadata))


def object_pickles(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Iterator[tuple[str, bytes]]:
    """(member name, pickle bytes) of every object array (for ``scan``), each bounded by the pickle limit."""
    for _, record, header in members(path, fh, size, limits):
        if header.descr == npy.OBJECT:
            yield record.name, npy.object_pickle(_member_reader(fh, record), header, record.size, limits)
