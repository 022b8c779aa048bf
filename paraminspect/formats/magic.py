"""What a file's first bytes say it is: the magic numbers and quick tests sniffing
uses (shared by :mod:`paraminspect.formats.opening`, the readers and ``scan``)."""

from __future__ import annotations

import struct

# Sniffing needs only these constants; each reader module is imported when its
# format is met, so a run pays only for the format it reads.
ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"
GGUF_MAGIC = b"GGUF"  # llama.cpp; the magic is the same bytes in big-endian files
SNIFF_BYTES = 32  # enough for the legacy magic after a protocol 4/5 frame header
METADATA_NAME = ".metadata"  # DCP
# A legacy torch.save file's first pickle is this magic number: LONG1 of 10 bytes,
# little-endian, after the PROTO opcode (and, from protocol 4, an 8-byte FRAME header).
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_MAGIC = b"\x8a\x0a" + LEGACY_MAGIC_NUMBER.to_bytes(10, "little")


def looks_like_legacy(head: bytes) -> bool:
    """``torch.save(..., _use_new_zipfile_serialization=False)`` with any pickle protocol (2-5)."""
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        return False
    return head[2:].startswith(LEGACY_MAGIC) or (head[2:3] == b"\x95" and head[11:].startswith(LEGACY_MAGIC))


def looks_like_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then the JSON header's opening brace (after any
    JSON whitespace, which the official loader accepts too)."""
    rest = head[8:].lstrip(b" \t\n\r")
    return len(head) >= 9 and (rest[:1] == b"{" or not rest)


def fits_safetensors(head: bytes, size: int) -> bool:
    """A safetensors head whose header length fits the file (an index JSON's rarely does)."""
    if not looks_like_safetensors(head):  # also: fewer than 8 bytes, no length to unpack
        return False
    length: int = struct.unpack("<Q", head[:8])[0]
    return length + 8 <= size
