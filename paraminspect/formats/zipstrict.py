"""A strict zip directory parser: accept an archive only when every reader sees the same records.

torch reads archives with miniz, most tools with Python's ``zipfile``, and the
two resolve a malformed archive differently (FORMATS.md, "Where readers
disagree"): miniz looks names up ignoring ASCII case, takes the first of two
equal names and the central directory at its recorded offset; ``zipfile``
takes the last name and shifts every offset when the end record does not
add up. So a file can show one ``data.pkl`` to ``scan`` and another to
``torch.load``. Rather than imitate one reader, this parser accepts only the
layout ``torch.save`` (and ``zipfile`` itself) writes, where there is just one
reading: local records tiling the file from byte 0 (each followed by its data
descriptor when it has one), the central directory right after them, the
zip64 end records and the end record right after that, and a comment (without
another end signature) reaching exactly the end of the file. Anything else
raises :class:`AmbiguousArchive`, which ``scan`` reports as a finding (exit 1),
not as merely unreadable.

Costs are bounded by what is parsed, not by what the file claims: the
record-count limit is checked against the end record's count before the
directory is read, and the directory must hold exactly that many records.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from paraminspect.errors import AmbiguousArchive, CheckpointError, LimitExceeded
from paraminspect.io import source

END = b"PK\x05\x06"
END64 = b"PK\x06\x06"
LOCATOR = b"PK\x06\x07"
CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"
DESCRIPTOR = b"PK\x07\x08"

_END = struct.Struct("<4sHHHHIIH")  # 22 bytes
_END64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes, without extensible data
_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_MAX_TAIL = _END.size + 0xFFFF  # the end record plus the longest comment
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF
_ENCRYPTED = 0x0001 | 0x0040 | 0x2000  # encrypted, strongly encrypted, masked directory
_HAS_DESCRIPTOR = 0x0008
_DOS_DIRECTORY = 0x10
_BLOCK = 8192  # local headers are read through a small block cache
_CHUNK = 1 << 20  # the central directory is read this much at a time


@dataclass(slots=True)
class Record:
    """One archive member, as the central directory and its local header both describe it."""

    name: str  # decoded as UTF-8 (undecodable bytes kept as surrogate escapes, so names stay distinct)
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int  # where the payload starts (after the local header): set by the layout check


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def fold(name: str) -> str:
    """A name as miniz compares it: ASCII letters lowered, nothing else changed."""
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


def read_directory(fh: BinaryIO, size: int, max_records: int | None = None) -> dict[str, Record]:
    """The records of the zip in ``fh`` (``size`` bytes) in central-directory order, keyed by
    :func:`fold` of their names (how torch looks them up)."""
    if size < _END.size:
        raise CheckpointError("not a readable zip archive (too short for an end record)")
    tail_start = max(0, size - _MAX_TAIL)
    tail = _read_at(fh, tail_start, size - tail_start)
    at = tail.rfind(END, 0, len(tail) - _END.size + len(END))  # the last one a reader can parse, as miniz picks
    if at < 0:
        raise CheckpointError("not a readable zip archive (no end-of-central-directory record)")
    end_at = tail_start + at
    _, disk, cd_disk, on_disk, count, cd_size, cd_offset, comment = _END.unpack_from(tail, at)
    later = tail.find(END, at + 1)
    if later >= 0:
        raise AmbiguousArchive(
            f"a second end-of-central-directory signature at byte {tail_start + later}, after the one"
            f" at byte {end_at} (readers pick different ones)"
        )
    if end_at + _END.size + comment != size:
        raise AmbiguousArchive(
            f"the end record at byte {end_at} says its comment is {comment} bytes, but"
            f" {size - end_at - _END.size} bytes follow it"
        )
    if disk or cd_disk or on_disk != count:
        raise CheckpointError("not a readable zip archive (it spans several disks)")
    directory_end = end_at
    locator_at = end_at - _LOCATOR.size
    if locator_at >= 0 and _read_at(fh, locator_at, 4) == LOCATOR:
        count, cd_size, cd_offset, directory_end = _zip64(fh, locator_at, count, cd_size, cd_offset)
    if cd_offset + cd_size != directory_end:
        raise AmbiguousArchive(
            f"the central directory's recorded offset {cd_offset:,} and size {cd_size:,} end at byte"
            f" {cd_offset + cd_size:,}, not at the end records (byte {directory_end:,}); readers"
            " would look for it in different places"
        )
    if max_records is not None and count > max_records:
        raise LimitExceeded(
            f"zip archive lists {count:,} records, over the {max_records:,} limit (use --max-entries to raise it)"
        )
    records = _central_directory(fh, cd_offset, cd_size, count)
    _check_layout(fh, records, cd_offset)
    return records


def _read_at(fh: BinaryIO, offset: int, length: int) -> bytes:
    fh.seek(offset)
    return fh.read(length)


def _zip64(fh: BinaryIO, locator_at: int, count: int, cd_size: int, cd_offset: int) -> tuple[int, int, int, int]:
    """Count, directory size and offset from the zip64 records; the 32-bit ones must agree."""
    _, disk, end64_at, disks = _LOCATOR.unpack(_read_at(fh, locator_at, _LOCATOR.size))
    if disk or disks != 1:  # zipfile accepts a disk count of 0, miniz only 1
        raise CheckpointError("not a readable zip archive (it spans several disks)")
    if end64_at != locator_at - _END64.size:
        # Python's zipfile reads the zip64 record just before the locator; miniz where it points.
        raise AmbiguousArchive(
            f"the zip64 locator points to byte {end64_at:,}, not to the record just before it"
            f" (byte {locator_at - _END64.size:,})"
        )
    raw = _read_at(fh, end64_at, _END64.size)
    if len(raw) != _END64.size or raw[:4] != END64:
        raise AmbiguousArchive("a zip64 locator without a zip64 end record (readers fall back differently)")
    _, record_size, _, _, disk, cd_disk, on_disk, count64, size64, offset64 = _END64.unpack(raw)
    if record_size != _END64.size - 12:
        raise AmbiguousArchive("the zip64 end record carries extensible data (readers find the directory differently)")
    if disk or cd_disk or on_disk != count64:
        raise CheckpointError("not a readable zip archive (it spans several disks)")
    for short, full, marker in ((count, count64, _U16), (cd_size, size64, _U32), (cd_offset, offset64, _U32)):
        if short not in (full, marker):
            raise AmbiguousArchive("the end record and the zip64 end record disagree on the central directory")
    return count64, size64, offset64, end64_at


def _central_directory(fh: BinaryIO, cd_offset: int, cd_size: int, count: int) -> dict[str, Record]:
    """Exactly ``count`` entries filling exactly ``cd_size`` bytes, by folded name, in directory order."""
    fh.seek(cd_offset)
    unread, buffer, at = cd_size, b"", 0
    records: dict[str, Record] = {}
    for index in range(count):
        if at + _CENTRAL.size > len(buffer):
            buffer, at, unread = _refill(fh, buffer, at, unread, _CENTRAL.size)
        if at + _CENTRAL.size > len(buffer) or buffer[at : at + 4] != CENTRAL:
            raise CheckpointError(f"not a readable zip archive (central directory entry {index} is damaged)")
        (_, _, _, flags, method, _, _, crc, csize, usize, n, m, k, disk, _, external, offset) = _CENTRAL.unpack_from(
            buffer, at
        )
        length = _CENTRAL.size + n + m + k
        if at + length > len(buffer):
            buffer, at, unread = _refill(fh, buffer, at, unread, length)
        if at + length > len(buffer):
            raise CheckpointError(f"not a readable zip archive (central directory entry {index} is truncated)")
        name = buffer[at + _CENTRAL.size : at + _CENTRAL.size + n].decode("utf-8", "surrogateescape")
        if m or _U32 in (usize, csize, offset) or disk == _U16:
            extra = buffer[at + _CENTRAL.size + n : at + _CENTRAL.size + n + m]
            usize, csize, offset, disk = _zip64_sizes(extra, name, usize, csize, offset, disk)
        at += length
        if disk:
            raise CheckpointError(f"not a readable zip archive (record {name!r} is on another disk)")
        if flags & _ENCRYPTED:
            raise CheckpointError(f"zip record {name!r} is encrypted")
        if method == 0 and csize != usize:  # miniz refuses the archive, zipfile reads csize bytes
            raise AmbiguousArchive(f"zip record {name!r} is stored, yet its two sizes differ")
        key = _check_name(name, external, records)
        records[key] = Record(name, flags, method, crc, csize, usize, offset, -1)
    if unread or at != len(buffer):
        # Python's zipfile reads every entry in the directory's bytes, miniz only the counted ones.
        raise AmbiguousArchive(
            f"the central directory has {unread + len(buffer) - at:,} bytes after its {count:,} records (the end"
            " record's count is not the number of records readers would parse)"
        )
    return records


def _refill(fh: BinaryIO, buffer: bytes, at: int, unread: int, need: int) -> tuple[bytes, int, int]:
    """The unparsed rest of ``buffer`` and the next chunk of the directory (never past its end)."""
    chunk = fh.read(min(unread, max(_CHUNK, need)))
    return buffer[at:] + chunk, 0, unread - len(chunk)


def _check_name(name: str, external: int, seen: dict[str, Record]) -> str:
    """The name's lookup key, once it is found to be one that every reader reads alike."""
    if not name or "\0" in name or "\\" in name:
        # zipfile cuts a name at NUL (and reads \\ as / on Windows); miniz keeps the bytes.
        raise AmbiguousArchive(f"zip record name {name!r} is empty or holds a NUL or backslash")
    if external & _DOS_DIRECTORY and not name.endswith("/"):
        raise AmbiguousArchive(
            f"zip record {name!r} is marked as a directory (torch skips its bytes and returns uninitialised memory)"
        )
    key = fold(name)
    other = seen.get(key)
    if other is not None and other.name == name:
        raise AmbiguousArchive(f"zip record {name!r} appears twice (torch reads the first, Python's zipfile the last)")
    if other is not None:
        raise AmbiguousArchive(
            f"zip records {other.name!r} and {name!r} differ only in case (torch's reader ignores case)"
        )
    return name if key == name else key  # one string, not two, for names already in lower case


def _zip64_sizes(extra: bytes, name: str, usize: int, csize: int, offset: int, disk: int) -> tuple[int, ...]:
    """Replace the 32-bit fields marked all-ones by the zip64 extra field's values."""
    blocks = _extra_blocks(extra, name)
    values = blocks.get(1)
    wanted = [usize == _U32, csize == _U32, offset == _U32, disk == _U16]
    if not any(wanted):
        return usize, csize, offset, disk
    if values is None or len(values) < 8 * sum(wanted[:3]) + 4 * wanted[3]:
        raise CheckpointError(f"not a readable zip archive (record {name!r} lacks its zip64 sizes)")
    out, at = [usize, csize, offset, disk], 0
    for i, need in enumerate(wanted):
        if need:
            width = 4 if i == 3 else 8
            out[i] = int.from_bytes(values[at : at + width], "little")
            at += width
    return tuple(out)


def _extra_blocks(extra: bytes, name: str) -> dict[int, bytes]:
    blocks: dict[int, bytes] = {}
    at = 0
    while at < len(extra):
        if at + 4 > len(extra):
            raise CheckpointError(f"not a readable zip archive (record {name!r} has a damaged extra field)")
        kind, length = struct.unpack_from("<HH", extra, at)
        if at + 4 + length > len(extra):
            raise CheckpointError(f"not a readable zip archive (record {name!r} has a damaged extra field)")
        if kind in blocks:
            raise AmbiguousArchive(f"zip record {name!r} has two extra fields of kind {kind:#06x}")
        blocks[kind] = extra[at + 4 : at + 4 + length]
        at += 4 + length
    return blocks


class _Blocks:
    """Reads small pieces of a file through one cached block (local headers sit close together)."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh, self._size, self._start, self._data = fh, size, 0, b""

    def read(self, offset: int, length: int) -> bytes:
        if not self._start <= offset <= offset + length <= self._start + len(self._data):
            self._start = offset
            self._data = _read_at(self._fh, offset, min(max(length, _BLOCK), self._size - offset))
        return self._data[offset - self._start : offset - self._start + length]


def _check_layout(fh: BinaryIO, records: dict[str, Record], cd_offset: int) -> None:
    """Local records tile bytes [0, cd_offset) in offset order, each agreeing with its directory entry."""
    blocks = _Blocks(fh, cd_offset)
    order = sorted(records, key=lambda key: records[key].header_offset)
    # A remote source fetches the local headers concurrently (a local file ignores the hint).
    # From just before each header: the previous record's data descriptor (<= 24 bytes) is checked too.
    offsets = [records[k].header_offset for k in order]
    source.prefetch(fh, [(max(0, o - 24), min(_BLOCK, cd_offset - o) + 24) for o in offsets])
    ends = [records[key].header_offset for key in order[1:]] + [cd_offset]
    position = 0
    for key, next_offset in zip(order, ends, strict=True):
        record = records[key]
        if record.header_offset != position:
            where = "before the first record" if position == 0 else "before it"
            what = "overlaps the record before it" if record.header_offset < position else f"leaves data {where}"
            raise AmbiguousArchive(f"zip record {record.name!r} at byte {record.header_offset:,} {what}")
        record.data_offset = _local_header(blocks, record)
        position = record.data_offset + record.compressed_size
        gap = next_offset - position
        if gap < 0:
            raise AmbiguousArchive(f"zip record {record.name!r} overlaps the next record or the central directory")
        if gap and not (
            record.flags & _HAS_DESCRIPTOR and gap <= 24 and _is_descriptor(blocks.read(position, gap), record)
        ):
            raise AmbiguousArchive(f"{gap:,} bytes after zip record {record.name!r} belong to no record")
        position = next_offset


def _local_header(blocks: _Blocks, record: Record) -> int:
    """Where the record's payload starts, once its local header is found to agree with the directory."""
    header = blocks.read(record.header_offset, _LOCAL.size)
    if len(header) != _LOCAL.size or header[:4] != LOCAL:
        raise CheckpointError(f"zip record {record.name!r} has a damaged local header")
    _, _, flags, method, _, _, crc, csize, usize, n, m = _LOCAL.unpack(header)
    body = blocks.read(record.header_offset + _LOCAL.size, n + m)
    if len(body) != n + m:
        raise CheckpointError(f"zip record {record.name!r} lies past the end of the file (truncated?)")
    local_name = body[:n].decode("utf-8", "surrogateescape")
    if local_name != record.name:
        raise AmbiguousArchive(
            f"zip record name differs between local header ({local_name!r}) and directory ({record.name!r})"
        )
    if _U32 in (usize, csize):
        usize, csize, _, _ = _zip64_sizes(body[n:], record.name, usize, csize, 0, 0)
    descriptor = flags & _HAS_DESCRIPTOR
    if (flags, method, crc, csize, usize) != (
        record.flags,
        record.method,
        record.crc,
        record.compressed_size,
        record.size,
    ) and (
        not descriptor
        or flags != record.flags
        or method != record.method
        or any(
            v not in (want, 0) for v, want in ((crc, record.crc), (csize, record.compressed_size), (usize, record.size))
        )
    ):
        raise AmbiguousArchive(f"zip record {record.name!r}: its local header and directory entry disagree")
    return record.header_offset + _LOCAL.size + int(n) + int(m)


def _is_descriptor(raw: bytes, record: Record) -> bool:
    """Whether ``raw`` is exactly a data descriptor repeating the directory's crc and sizes."""
    start = 4 if raw[:4] == DESCRIPTOR and len(raw) in (16, 24) else 0
    fmt = {12: "<III", 20: "<IQQ"}.get(len(raw) - start)
    return fmt is not None and struct.unpack_from(fmt, raw, start) == (
        record.crc,
        record.compressed_size,
        record.size,
    )
