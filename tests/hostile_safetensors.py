"""Hostile safetensors files: every defect the official loader refuses, and what
Python's json accepts quietly. Builders take (file to write, marker path)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path


def safetensors_file(
    path: Path, header: dict[str, object] | bytes, data: bytes = b"", length: int | None = None
) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


F32_4 = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}


def _st(
    header: dict[str, object] | bytes, data: bytes = b"\0" * 4, length: int | None = None
) -> Callable[[Path, Path], None]:
    return lambda path, marker: safetensors_file(path, header, data, length)


# Defects the official loader refuses (each also checked against safe_open in test_hostile.py).
SAFETENSORS_OFFICIAL = {
    "st_header_over_100mb": (_st(b"{}", b"", length=100_000_001), "over the 100,000,000-byte limit"),
    "st_header_past_eof": (_st({"a": F32_4}, b"\0" * 4, length=10_000), "runs past the end of the file"),
    "st_bad_utf8": (_st(b'{"\xff": 1}'), "not valid UTF-8"),
    "st_bad_json": (_st(b'{"a": {"dtype": "F32",'), "not valid JSON"),
    "st_unknown_dtype": (_st({"a": {**F32_4, "dtype": "X9"}}), "unknown dtype"),
    "st_negative_dim": (_st({"a": {**F32_4, "shape": [-1]}}), "not a list of non-negative integers"),
    "st_metadata_not_string": (_st({"__metadata__": {"k": 1}, "a": F32_4}), "__metadata__ must map strings"),
    "st_gap": (_st({"a": {**F32_4, "data_offsets": [4, 8]}}, b"\0" * 8), "leaves a gap at byte 0"),
    "st_overlap": (
        _st({"a": {**F32_4, "shape": [2], "data_offsets": [0, 8]}, "b": {**F32_4, "data_offsets": [4, 8]}}, b"\0" * 8),
        "overlaps the previous tensor",
    ),
    "st_same_range_twice": (_st({"a": F32_4, "b": F32_4}), "overlaps the previous tensor"),
    "st_size_mismatch": (_st({"a": {**F32_4, "shape": [3]}}), "needs 12 bytes but data_offsets span 4"),
    "st_overflowing_shape": (
        _st({"a": {**F32_4, "shape": [2**62, 2**62, 16]}}),
        "overflows 64 bits",
    ),
    "st_trailing_bytes": (_st({"a": F32_4}, b"\0" * 12), "trailing bytes"),
    "st_truncated": (_st({"a": {**F32_4, "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8), "truncated"),
}

# Accepted quietly by Python's json but not by a careful reader.
SAFETENSORS_JSON_QUIRKS = {
    "st_duplicate_key": (_st(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}'), "twice"),
    "st_nan_dim": (_st(b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}'), "NaN"),
    "st_true_dim": (_st(b'{"a": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}'), "non-negative integers"),
    "st_float_dim": (_st(b'{"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}'), "non-negative integers"),
    "st_huge_float": (_st(b'{"a": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}'), "non-negative int"),
    "st_huge_int": (_st(b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}'), "header"),
    # 3.2 million empty objects in 10 MB: json would build ~260 MiB of dicts before any check.
    "st_json_container_bomb": (_st(b'{"x": [' + b"{}," * 3_200_000 + b"{}]}"), "more values than 200,000 tensors"),
    "st_deep_nesting": (_st(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "safetensors header"),
}
