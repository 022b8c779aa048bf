"""Hostile GGUF files, built byte by byte (GGUFWriter refuses to write them): lying
lengths and counts, nesting bombs, bad alignment, overlapping or misaligned offsets,
duplicates, bools other than 0/1. Builders take (file to write, marker path)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

U8, BOOL, STRING, ARRAY, U32 = 0, 7, 8, 9, 4
F32, Q4_0 = 0, 2


def gstr(text: str | bytes, order: str = "<") -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(order + "Q", len(raw)) + raw


def kv(key: str | bytes, type_id: int, payload: bytes, order: str = "<") -> bytes:
    return gstr(key, order) + struct.pack(order + "I", type_id) + payload


def u32(value: int, order: str = "<") -> bytes:
    return struct.pack(order + "I", value)


def tensor_info(name: str, dims: list[int], type_id: int, offset: int, order: str = "<") -> bytes:
    packed = struct.pack(f"{order}I{len(dims)}Q", len(dims), *dims)
    return gstr(name, order) + packed + struct.pack(order + "IQ", type_id, offset)


def gguf_bytes(
    kvs: list[bytes] = (),  # type: ignore[assignment]
    tensors: list[bytes] = (),  # type: ignore[assignment]
    data: bytes = b"",
    *,
    n_kvs: int | None = None,
    n_tensors: int | None = None,
    version: int = 3,
    order: str = "<",
    alignment: int = 32,
) -> bytes:
    head = b"GGUF" + struct.pack(
        order + "IQQ",
        version,
        len(tensors) if n_tensors is None else n_tensors,
        len(kvs) if n_kvs is None else n_kvs,
    )
    header = head + b"".join(kvs) + b"".join(tensors)
    return header + b"\0" * (-len(header) % alignment) + data


def _g(*args: object, **kwargs: object) -> Callable[[Path, Path], None]:
    return lambda path, marker: path.write_bytes(gguf_bytes(*args, **kwargs))  # type: ignore[arg-type]


ONE_F32 = [tensor_info("w", [4], F32, 0)]
DATA = b"\0" * 32


def _nested(depth: int) -> bytes:
    """An array of one array of one array ... ``depth`` levels deep."""
    return kv("deep", ARRAY, (u32(ARRAY) + struct.pack("<Q", 1)) * depth + u32(U8) + struct.pack("<Q", 0))


GGUF_HOSTILE = {
    "gguf_string_length_2_63": (_g([kv("k", STRING, struct.pack("<Q", 2**63 - 1))]), "runs past the end of the file"),
    "gguf_key_length_2_64": (_g([struct.pack("<Q", 2**64 - 1)], data=DATA), "runs past the end of the file"),
    "gguf_array_length_2_63": (
        _g([kv("a", ARRAY, u32(U8) + struct.pack("<Q", 2**63))]),
        "needs at least 9,223,372,036,854,775,808 bytes",
    ),
    "gguf_string_array_count_past_file": (
        _g([kv("a", ARRAY, u32(STRING) + struct.pack("<Q", 2**40))]),
        "count 1,099,511,627,776 needs at least",
    ),
    # 3.2 million one-byte elements: 3.2 MB of file, ~100 MB of Python ints if built.
    # 600 short strings (the regex engine's blocks), then one that claims 2^63 - 1 bytes.
    "gguf_string_array_item_length_2_63": (
        _g([kv("a", ARRAY, u32(STRING) + struct.pack("<Q", 601) + gstr("ab") * 600 + struct.pack("<Q", 2**63 - 1))]),
        "runs past the end of the file",
    ),
    # A count that the file's bytes could hold, but its strings end before the count does.
    "gguf_string_array_count_past_its_strings": (
        _g([kv("a", ARRAY, u32(STRING) + struct.pack("<Q", 1200) + gstr("abc") * 1000)]),
        "runs past the end of the file",
    ),
    "gguf_array_element_budget": (
        _g([kv("a", ARRAY, u32(U8) + struct.pack("<Q", 3_200_000) + b"\1" * 3_200_000)]),
        "holds more values than a header within the 100,000,000-byte limit may",
    ),
    "gguf_array_nesting_bomb": (_g([_nested(100_000)]), "nests arrays deeper than 8 levels"),
    "gguf_kv_count_past_file": (_g(n_kvs=2**40), "key/value count 1,099,511,627,776 needs at least"),
    "gguf_tensor_count_past_file": (_g(n_tensors=100_000), "tensor count 100,000 needs at least"),
    "gguf_tensor_count_huge": (_g(n_tensors=2**62), "over the 200,000 limit"),
    "gguf_nine_dims": (_g(tensors=[tensor_info("w", [1] * 9, F32, 0)], data=DATA), "9 dimensions, more than 8"),
    "gguf_shape_overflow": (_g(tensors=[tensor_info("w", [2**32, 2**32], F32, 0)], data=DATA), "overflows 64 bits"),
    "gguf_alignment_zero": (_g([kv("general.alignment", U32, u32(0))], ONE_F32, DATA), "alignment 0 is not a power"),
    "gguf_alignment_three": (_g([kv("general.alignment", U32, u32(3))], ONE_F32, DATA), "alignment 3 is not a power"),
    "gguf_alignment_2_30": (
        _g([kv("general.alignment", U32, u32(2**30))], ONE_F32, DATA),
        "alignment 1073741824 is not a power of two up to",
    ),
    "gguf_alignment_wrong_type": (
        _g([kv("general.alignment", STRING, gstr("32"))], ONE_F32, DATA),
        "general.alignment is a STRING, not a UINT32",
    ),
    "gguf_offset_misaligned": (
        _g(tensors=[tensor_info("w", [4], F32, 4)], data=DATA * 2),
        "offset 4 is not a multiple of the alignment 32",
    ),
    "gguf_offsets_overlap": (
        _g(tensors=[tensor_info("a", [16], F32, 0), tensor_info("b", [4], F32, 32)], data=DATA * 2),
        "'b' overlaps tensor 'a'",
    ),
    "gguf_offset_past_end": (_g(tensors=[tensor_info("w", [4], F32, 2**40)], data=DATA), "run past the end"),
    "gguf_tensor_truncated": (_g(tensors=[tensor_info("w", [64], F32, 0)], data=DATA), "truncated?"),
    "gguf_duplicate_key": (_g([kv("k", U8, b"\1"), kv("k", U8, b"\2")]), "key 'k' appears twice"),
    "gguf_duplicate_tensor": (
        _g(tensors=[tensor_info("w", [4], F32, 0), tensor_info("w", [4], F32, 32)], data=DATA * 2),
        "tensor 'w' appears twice",
    ),
    "gguf_bool_two": (_g([kv("b", BOOL, b"\2")]), "bool of value 2, neither 0 nor 1"),
    "gguf_bool_array_two": (
        _g([kv("b", ARRAY, u32(BOOL) + struct.pack("<Q", 3) + b"\0\1\2")]),
        "holds a bool that is neither 0 nor 1",
    ),
    "gguf_version_1": (_g(version=1), "GGUF version 1 is not supported"),
    "gguf_unknown_value_type": (_g([kv("k", 13, b"")]), "unknown value type 13"),
    "gguf_block_not_multiple": (
        _g(tensors=[tensor_info("w", [33], Q4_0, 0)], data=DATA),
        "first dimension 33 is not a multiple of the Q4_0 block size 32",
    ),
    "gguf_bad_utf8_key": (_g([kv(b"\xff", U8, b"\1")]), "not valid UTF-8"),
    "gguf_truncated_header": (lambda path, marker: path.write_bytes(gguf_bytes([kv("k", U32, u32(1))])[:30]), "GGUF"),
}
