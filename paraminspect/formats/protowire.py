"""The protobuf wire format, walked field by field without building messages.

A message is a run of fields: a varint tag (field number << 3 | wire type), then
a varint (type 0), 8 bytes (type 1), a varint length and that many bytes (type 2)
or 4 bytes (type 5). Groups (types 3 and 4) were deprecated before ONNX existed
and are refused, as are types 6 and 7. Every varint is at most 10 bytes and fits
64 bits; every length and fixed-width value must end inside its parent message.
A length-delimited field is returned as its position, never read, so a reader
walks a file of any size reading only the fields it descends into.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from paraminspect.errors import CheckpointError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
WIRE_NAMES = {VARINT: "varint", FIXED64: "fixed64", LENGTH: "length-delimited", FIXED32: "fixed32"}
MAX_VARINT = 10
U64 = 1 << 64


@dataclass(frozen=True)
class Field:
    """One field of a message: its number, wire type, and value (a varint or fixed
    value as an integer) or, for a length-delimited field, where its bytes are."""

    number: int
    wire: int
    value: int  # VARINT/FIXED*: the value; LENGTH: the payload's length
    offset: int  # absolute first byte of the payload (LENGTH) or of the value


class Wire:
    """Reads the fields of messages in ``fh`` (``size`` bytes) at absolute offsets."""

    def __init__(self, fh: BinaryIO, size: int, what: str) -> None:
        self._fh, self.size, self.what = fh, size, what

    def read(self, offset: int, n: int) -> bytes:
        self._fh.seek(offset)
        data = self._fh.read(n)
        if len(data) != n:
            raise CheckpointError(f"{self.what} is truncated at byte {offset + len(data):,}")
        return data

    def varint(self, offset: int, end: int, where: str) -> tuple[int, int]:
        """The varint at ``offset`` (which must end before ``end``) and the offset after it."""
        raw = self.read(offset, min(MAX_VARINT, end - offset)) if end > offset else b""
        value = 0
        for i, byte in enumerate(raw):
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                if value >= U64:
                    raise CheckpointError(f"{self.what}: {where}: varint at byte {offset:,} overflows 64 bits")
                return value, offset + i + 1
        if len(raw) == MAX_VARINT:
            raise CheckpointError(f"{self.what}: {where}: varint at byte {offset:,} is longer than 10 bytes")
        raise CheckpointError(f"{self.what}: {where}: varint at byte {offset:,} runs past the end of its message")

    def fields(self, start: int, end: int, where: str) -> Iterator[Field]:
        """The fields of the message in bytes [start, end)."""
        at = start
        while at < end:
            tag, at = self.varint(at, end, where)
            number, wire = tag >> 3, tag & 7
            if number == 0 or number >= 1 << 29:
                raise CheckpointError(f"{self.what}: {where}: field number {number} at byte {at:,} is not valid")
            if wire == VARINT:
                value, after = self.varint(at, end, where)
                yield Field(number, wire, value, at)
                at = after
                continue
            if wire == LENGTH:
                length, at = self.varint(at, end, where)
                value = length
            elif wire in (FIXED64, FIXED32):
                length = 8 if wire == FIXED64 else 4
                value = int.from_bytes(self.read(at, length), "little") if at + length <= end else 0
            else:
                raise CheckpointError(f"{self.what}: {where}: field {number} has wire type {wire}, which is not valid")
            if at + length > end:
                raise CheckpointError(
                    f"{self.what}: {where}: field {number} is {length:,} bytes at byte {at:,},"
                    f" past the end of its message (byte {end:,})"
                )
            yield Field(number, wire, value, at)
            at += length


def expect(field: Field, wire: int, what: str, where: str) -> None:
    """Refuse a known field carried with another wire type than its schema's."""
    if field.wire != wire:
        raise CheckpointError(
            f"{what}: {where}: field {field.number} has wire type {WIRE_NAMES.get(field.wire, field.wire)},"
            f" expected {WIRE_NAMES[wire]}"
        )


def signed(value: int) -> int:
    """A varint's 64 bits as a two's-complement int64 (how int32/int64 fields are sent)."""
    return value - U64 if value >= 1 << 63 else value
