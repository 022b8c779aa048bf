"""Reader for ``.safetensors`` files: the JSON header only, checked as strictly
as the official loader checks it, with clearer messages.

The official ``safe_open(framework="numpy")`` would validate too, but it imports
numpy on open (+13 MiB RSS and ~0.1 s on every header-only command), so the same
rules are implemented here and tests hold them to the official library: every
file it refuses, this reader refuses (tests/test_formats_safetensors.py).
"""

from __future__ import annotations

import json
import math
import struct
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from paraminspect import dtypes
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.strictjson import unique_keys
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, Entry, StorageRef, TensorRef, contiguous_strides

METADATA_KEY = "__metadata__"
U64_MAX = (1 << 64) - 1  # the official loader reads dims and offsets as u64 and sizes in bits with checked products


def _no_constants(token: str) -> Any:
    raise CheckpointError(f"safetensors header contains {token}, which is not valid JSON")


def check_header_size(raw: bytes, limits: Limits) -> None:
    """Bound what json will build before it builds it.

    Python's json turns 30 MB of ``[{},{},...]`` into 800 MiB of dicts. A real
    header has one object and two short lists per tensor, so count brackets
    and commas (at C speed) against the entry limit first.
    """
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > 3 * limits.max_entries + 64 or raw.count(b",") > 16 * limits.max_entries + 1024:
        raise LimitExceeded(
            f"safetensors header holds more values than {limits.max_entries:,} tensors would need"
            " (use --max-entries to raise the limit)"
        )


def _no_negative_zero(token: str) -> int:
    if token == "-0":  # Python reads the integer 0; the official loader (serde) the float -0.0, and refuses it
        raise CheckpointError("safetensors header contains -0, which the official loader reads as a float")
    return int(token)


def _lone_surrogate(header: Any) -> str | None:
    """A string in the decoded header holding a surrogate (from an unpaired ``\\udXXX`` escape), if any."""
    stack = [header]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
    return None


def parse_header(raw: bytes) -> dict[str, Any]:
    """Decode the JSON header, refusing what Python's json would accept quietly."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"safetensors header is not valid UTF-8 (byte {exc.start})") from None
    # Checked only when the bytes could hold them, so large headers keep json's C speed.
    strict_int = _no_negative_zero if b"-0" in raw else int
    try:
        header = json.loads(
            text,
            object_pairs_hook=unique_keys("safetensors header"),
            parse_constant=_no_constants,
            parse_int=strict_int,
        )
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"safetensors header is not valid JSON ({exc.msg} at char {exc.pos})") from None
    except RecursionError:
        raise CheckpointError("safetensors header nests too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python allows
        raise CheckpointError(f"safetensors header has an unreadable value ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header is not a JSON object")
    if b"\\u" in raw and (bad := _lone_surrogate(header)) is not None:
        raise CheckpointError(f"safetensors header holds a lone surrogate escape ({bad!r}), which is not valid Unicode")
    return header


_INT_ONLY = {int}


def _u64s(values: list[Any]) -> bool:
    """Every item of a non-empty list is an int (not a bool: ``type is int``) in [0, 2^64)."""
    return set(map(type, values)) <= _INT_ONLY and min(values) >= 0 and max(values) <= U64_MAX


def _tensor_info(name: str, info: Any) -> tuple[dtypes.DType, tuple[int, ...], int, int]:
    if not isinstance(info, dict):
        raise CheckpointError(f"tensor {name!r}: header entry is not an object")
    code = info.get("dtype")
    dtype = dtypes.BY_SAFETENSORS.get(code) if isinstance(code, str) else None
    if dtype is None:
        raise CheckpointError(f"tensor {name!r}: unknown dtype {code!r}")
    shape = info.get("shape")
    # The checks run at C speed (map, min, max, math.prod): a header holds ~10^5 entries.
    if not isinstance(shape, list) or (shape and not _u64s(shape)):
        raise CheckpointError(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers below 2^64")
    offsets = info.get("data_offsets")
    if not isinstance(offsets, list) or len(offsets) != 2 or not _u64s(offsets) or offsets[0] > offsets[1]:
        raise CheckpointError(f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end] with begin <= end")
    numel = math.prod(shape)
    # With no zero dim the products only grow, so the last within 64 bits means all were;
    # a zero dim can hide an overflow before it, so then multiply step by step.
    if numel > U64_MAX or 0 in shape:
        numel = 1
        for d in shape:  # as the official loader multiplies: left to right, each product within 64 bits
            numel *= d
            if numel > U64_MAX:
                raise CheckpointError(f"tensor {name!r}: shape {shape} overflows 64 bits")
    if numel * dtype.bits > U64_MAX:
        raise CheckpointError(f"tensor {name!r}: {dtype.safetensors} {shape} is more than 2^64 bits")
    if numel * dtype.bits % 8:  # the official loader: a sub-byte tensor must end on a byte boundary
        raise CheckpointError(
            f"tensor {name!r}: {dtype.safetensors} {shape} is {numel * dtype.bits} bits, not a whole number of bytes"
        )
    nbytes = dtype.nbytes(numel)  # the one byte count: TensorRef.nbytes and byte_range() read this many
    if nbytes != offsets[1] - offsets[0]:
        raise CheckpointError(
            f"tensor {name!r}: {dtype.safetensors} {shape} needs {nbytes} bytes but data_offsets span"
            f" {offsets[1] - offsets[0]}"
        )
    return dtype, tuple(shape), offsets[0], offsets[1]


def read_safetensors(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    head = fh.read(8)
    if len(head) < 8:
        raise CheckpointError("file too short for a safetensors header")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > limits.max_header_bytes:
        raise LimitExceeded(
            f"safetensors header length {header_len:,} is over the {limits.max_header_bytes:,}-byte limit"
        )
    if 8 + header_len > size:
        raise CheckpointError(
            f"safetensors header length {header_len:,} runs past the end of the file ({size:,} bytes)"
        )
    raw = fh.read(header_len)
    check_header_size(raw, limits)
    header = parse_header(raw)
    metadata = header.pop(METADATA_KEY, None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError("safetensors __metadata__ must map strings to strings")

    data_start = 8 + header_len
    data_size = size - data_start
    found: list[tuple[int, int, str, dtypes.DType, tuple[int, ...]]] = []
    for name, info in header.items():
        dtype, shape, begin, end = _tensor_info(name, info)
        found.append((begin, end, name, dtype, shape))
    cursor = 0
    for begin, end, name, _, _ in sorted(found, key=itemgetter(0, 1)):
        if begin != cursor:
            problem = "overlaps the previous tensor" if begin < cursor else f"leaves a gap at byte {cursor}"
            raise CheckpointError(f"tensor {name!r}: data_offsets [{begin}, {end}] {problem}")
        cursor = end
    if cursor != data_size:
        raise CheckpointError(
            f"tensor data should be {cursor:,} bytes but the file holds {data_size:,} after the header"
            + (" (truncated?)" if data_size < cursor else " (trailing bytes)")
        )

    entries: dict[str, Entry] = {}
    strides: dict[tuple[int, ...], tuple[int, ...]] = {}  # a model repeats a few shapes (128 experts...)
    for begin, end, name, dtype, shape in found:
        storage = StorageRef(path, name, data_start + begin, end - begin, dtype)
        stride = strides.get(shape)
        if stride is None:
            stride = strides[shape] = contiguous_strides(shape)
        entries[name] = TensorRef(dtype, shape, stride, storage)
    aliases = {k: v for k, v in metadata.items() if k not in entries and v in entries}
    for alias, owner in aliases.items():
        entries[alias] = entries[owner]
    file_metadata = {k: ("str", v) for k, v in metadata.items()}
    return Checkpoint(
        path, "safetensors", entries, dict(metadata), file_metadata=file_metadata, ordered=False, aliases=aliases
    )
