"""Hostile numpy files for the corpus: lying or huge ``.npy`` headers, deflate bombs in ``.npz``."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

Build = Callable[[Path, Path], None]


def _npy(header: bytes, data: bytes = b"\0" * 8, version: int = 1) -> bytes:
    width = "<H" if version == 1 else "<I"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(width, len(header)) + header + data


def _write(content: bytes) -> Build:
    return lambda path, marker: path.write_bytes(content)


def _huge_header_length(path: Path, marker: Path) -> None:
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{" * 64)


def _member_bomb(path: Path, marker: Path) -> None:
    """A deflated member declaring 1,152 bytes (a 1,024-byte array) that inflates to 64 MiB."""
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1024,), }"
    header += b" " * (117 - len(header)) + b"\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", _npy(header, b"\0" * (64 << 20)))
    data = bytearray(path.read_bytes())
    for signature, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # the uncompressed size, in both headers
        start = data.index(signature)
        data[start + at : start + at + 4] = struct.pack("<I", 128 + 1024)
    path.write_bytes(bytes(data))


def _header_bomb(path: Path, marker: Path) -> None:
    """A deflated member whose inflated header claims a 4 GiB header."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b" " * (1 << 22))


SHAPES = ("tree", "shapes")
NUMPY_CASES: dict[str, tuple[Build, tuple[str, ...], int, str, int | None]] = {
    # name: (build, commands, exit code, phrase of the error, scan's exit code (None: the same))
    "npy_header_length_4gib": (_huge_header_length, SHAPES, 2, "over the 65,536-byte limit", None),
    "npy_shape_past_end": (
        _write(_npy(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }")),
        SHAPES,
        2,
        "needs 4,398,046,511,104 bytes but 8 follow its header",
        None,
    ),
    "npy_header_code": (_write(_npy(b"__import__('os').system('true')")), SHAPES, 2, "not a plain literal", None),
    "npy_header_nesting": (_write(_npy(b"(" * 60_000, version=2)), SHAPES, 2, "nests deeper than 8 levels", None),
    "npy_version_9": (_write(b"\x93NUMPY\x09\x00" + b"\0" * 64), SHAPES, 2, "format version 9.0", None),
    "npz_deflate_bomb": (_member_bomb, ("stats",), 2, "inflates past its declared size (1,152 bytes)", 0),
    "npz_header_bomb": (_header_bomb, SHAPES, 2, "npz member 'w.npy': .npy header length 4,294,967,280", None),
}
