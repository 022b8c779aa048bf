"""Reader for GGUF files (llama.cpp): the header only, versions 2 and 3, either byte order.

Our own reader, not gguf-py's: importing that costs 0.2-0.4 s, its reader took
13 s and 500 MB on a 151,000-token vocabulary, it raises on unknown type ids and
it has no limits on array lengths. Every length and count here is checked
against the bytes left in the file before anything is allocated; the header
(key/values and tensor infos) is bounded by ``max_header_bytes`` and the array
elements it holds by a budget derived from it.
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from paraminspect import dtypes
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats import ggufstrings
from paraminspect.formats.ggufstrings import GGUFStrings
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, Entry, StorageRef, TensorRef, contiguous_strides

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # v1 used 32-bit counts and lengths; nothing current writes it
DEFAULT_ALIGNMENT = 32
MAX_ALIGNMENT = 1 << 24  # a power of two past this is no real alignment, only a way past the end
MAX_DIMS = 8  # ggml has 4; other readers accept up to 8
MAX_NESTING = 8  # arrays of arrays: real files use none
INT64_MAX = (1 << 63) - 1  # ggml counts elements in int64
# Python objects per array element cost ~32 bytes: this many bytes of header per element allowed.
BYTES_PER_ELEMENT_BUDGET = 32
KV_ELEMENTS = 4  # a key/value (key string, tuple, dict slot) costs about four elements

# gguf-py's GGUFValueType names, by type id; fixed-size ones with their struct code.
TYPE_NAMES = {
    0: "UINT8",
    1: "INT8",
    2: "UINT16",
    3: "INT16",
    4: "UINT32",
    5: "INT32",
    6: "FLOAT32",
    7: "BOOL",
    8: "STRING",
    9: "ARRAY",
    10: "UINT64",
    11: "INT64",
    12: "FLOAT64",
}
FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY, BOOL, UINT32 = 8, 9, 7, 4

# ggml types with a plain element dtype; the block-quantized ones are in dtypes.GGML_QUANT.
PLAIN_TYPES = {
    0: "float32",
    1: "float16",
    24: "int8",
    25: "int16",
    26: "int32",
    27: "int64",
    28: "float64",
    30: "bfloat16",
}
GGML_NAMES = {0: "F32", 1: "F16", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 30: "BF16"}
GGML_NAMES.update({type_id: name for name, type_id, _, _ in dtypes.GGML_BLOCKS})


def ggml_dtype(type_id: int) -> dtypes.DType:
    """The DType of a ggml type id (unknown ids get a placeholder of unknown size)."""
    plain = PLAIN_TYPES.get(type_id)
    if plain is not None:
        return dtypes.BY_NAME[plain]
    return dtypes.GGML_QUANT.get(type_id) or dtypes.ggml_unknown(type_id)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF order: dims[0] varies fastest
    type_id: int
    offset: int  # relative to the data section
    nbytes: int | None  # None: unknown ggml type


@dataclass(frozen=True)
class Layout:
    """A GGUF file's header as read: what the format's commands and ``scan`` need."""

    version: int
    byteorder: str  # "little" or "big"
    kvs: dict[str, tuple[str, Any]]
    tensors: list[TensorInfo]
    alignment: int
    data_start: int  # absolute offset of the data section
    data_end: int  # absolute end of the last tensor's bytes (data_start if none)
    # Where each key/value's bytes are, and the tensor infos' (absolute [begin, end)):
    # an edit of the metadata copies what it keeps as it was (edit/writers/gguf.py).
    spans: dict[str, tuple[int, int]]
    infos_span: tuple[int, int]


class _Cursor:
    """Reads the header front to back from a buffer refilled in large reads, checking
    every length against what is left in the file before reading or allocating."""

    CHUNK = 1 << 20

    def __init__(
        self, fh: BinaryIO, size: int, limits: Limits, order: str, start: int, source: str | None = None
    ) -> None:
        self.fh, self.size, self.limits, self.order, self.source = fh, size, limits, order, source
        self.buf, self.base, self.i = b"", start, 0  # buf[0] is file byte ``base``
        self.keep: int | None = None  # refills keep the buffer from this file offset on
        self.elements_left = max(limits.max_header_bytes // BYTES_PER_ELEMENT_BUDGET, 1 << 16)

    @property
    def pos(self) -> int:
        return self.base + self.i

    def need(self, n: int, what: str) -> None:
        """Make ``n`` bytes from the position available in the buffer."""
        pos = self.pos
        if n > self.size - pos:
            raise CheckpointError(
                f"GGUF {what} ({n:,} bytes at byte {pos:,}) runs past the end of the file ({self.size:,} bytes)"
            )
        if pos + n > self.limits.max_header_bytes:
            raise LimitExceeded(
                f"GGUF header is longer than the {self.limits.max_header_bytes:,}-byte limit"
                " (use --max-header-bytes to raise it)"
            )
        if self.i + n <= len(self.buf):
            return
        first = self.i if self.keep is None else self.keep - self.base  # a string array is kept whole
        rest = self.buf[first:]
        # never buffered past the header limit, so reads served from the buffer are within it
        ahead = min(self.size, self.limits.max_header_bytes) - self.base - len(self.buf)
        short = n - (len(self.buf) - self.i)
        more = self.fh.read(max(short, min(max(self.CHUNK, len(rest)), ahead)))
        self.buf, self.base, self.i = rest + more, self.base + first, self.i - first
        if len(self.buf) - self.i < n:
            raise CheckpointError(f"GGUF {what} at byte {pos:,} is cut short (the file shrank?)")

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        data = self.buf[self.i : self.i + n]
        self.i += n
        return data

    def unpack(self, code: str, what: str) -> Any:
        n = struct.calcsize(code)
        self.need(n, what)
        value = struct.unpack_from(self.order + code, self.buf, self.i)[0]
        self.i += n
        return value

    def count(self, what: str, least_bytes_each: int) -> int:
        """A uint64 count of items, each at least ``least_bytes_each`` bytes: must fit the file."""
        n: int = self.unpack("Q", f"{what} count")
        if n * least_bytes_each > self.size - self.pos:
            raise CheckpointError(
                f"GGUF {what} count {n:,} needs at least {n * least_bytes_each:,} bytes but only"
                f" {self.size - self.pos:,} are left in the file"
            )
        return n

    def spend(self, n: int, what: str) -> None:
        self.elements_left -= n
        if self.elements_left < 0:
            raise LimitExceeded(
                f"GGUF {what} holds more values than a header within the"
                f" {self.limits.max_header_bytes:,}-byte limit may (use --max-header-bytes to raise it)"
            )

    def string(self, what: str) -> str:
        length: int = self.unpack("Q", f"{what} length")
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = f"at byte {self.pos - length:,}"
            raise CheckpointError(f"GGUF {what} {where} is not valid UTF-8 (byte {exc.start})") from None

    def strings(self, n: int, what: str) -> GGUFStrings:
        """``n`` strings (a vocabulary: the hot loop of a large header) kept as their bytes.

        The regex engine takes blocks of short elements (ggufstrings.pattern). Where a
        block does not match (fewer left, an element that is long or empty, the buffer's
        end), elements are stepped here, each length checked against the file, up to and
        including the first one that is not short: at most a block's worth. Nothing is decoded.
        """
        start, self.keep = self.pos, self.pos
        block, size, label = ggufstrings.pattern(self.order), ggufstrings.BLOCK, f"{what} length"
        left, short = n, True
        try:
            while left:
                if left >= size and (whole := block.match(self.buf, self.i)):
                    self.i, left = whole.end(), left - size
                    continue
                for _ in range(min(left, size)):
                    length: int = self.unpack("Q", label)
                    self.need(length, what)
                    self.i += length
                    left -= 1
                    if not 1 <= length <= ggufstrings.SHORT:
                        short = False
                        break
        finally:
            self.keep = None
        raw = self.buf[start - self.base : self.i]
        return GGUFStrings(raw, n, self.order, short=short, what=what, source=self.source)

    def value(self, type_id: int, what: str, depth: int = 0) -> tuple[str, Any]:
        """One value of GGUF type ``type_id``: (its type name, the value)."""
        if type_id in FIXED:
            raw = self.unpack(FIXED[type_id], what)
            if type_id == BOOL:
                return "BOOL", _bool(raw, what)
            return TYPE_NAMES[type_id], raw
        if type_id == STRING:
            return "STRING", self.string(what)
        if type_id == ARRAY:
            return self.array(what, depth)
        raise CheckpointError(f"GGUF {what} has unknown value type {type_id}")

    def array(self, what: str, depth: int) -> tuple[str, Any]:
        if depth >= MAX_NESTING:
            raise CheckpointError(f"GGUF {what} nests arrays deeper than {MAX_NESTING} levels")
        elem: int = self.unpack("I", f"{what} element type")
        if elem in FIXED:
            code = FIXED[elem]
            n = self.count(what, struct.calcsize(code))
            self.spend(n, what)
            raw = self.take(n * struct.calcsize(code), what)
            if elem == BOOL and raw.translate(None, b"\x00\x01"):
                raise CheckpointError(f"GGUF {what} holds a bool that is neither 0 nor 1")
            items: list[Any] = list(struct.unpack(f"{self.order}{n}{code}", raw))
            if elem == BOOL:
                items = [bool(x) for x in items]
            return f"[{TYPE_NAMES[elem]}]", items
        if elem == STRING:
            n = self.count(what, 8)
            self.spend(n, what)
            return "[STRING]", self.strings(n, what)
        if elem == ARRAY:
            n = self.count(what, 12)
            self.spend(n, what)
            inner = [self.array(what, depth + 1) for _ in range(n)]
            kinds = {kind for kind, _ in inner}
            kind = kinds.pop() if len(kinds) == 1 else "ARRAY"
            return f"[{kind}]", [values for _, values in inner]
        raise CheckpointError(f"GGUF {what} has unknown array element type {elem}")


def _bool(raw: int, what: str) -> bool:
    if raw not in (0, 1):
        raise CheckpointError(f"GGUF {what} is a bool of value {raw}, neither 0 nor 1")
    return bool(raw)


def byte_order(head: bytes) -> tuple[str, int]:
    """The struct prefix and version from the first 8 bytes (big-endian files swap the version)."""
    if len(head) < 8 or not head.startswith(MAGIC):
        raise CheckpointError("file too short for a GGUF header" if head.startswith(MAGIC) else "not a GGUF file")
    (little,) = struct.unpack("<I", head[4:8])
    (big,) = struct.unpack(">I", head[4:8])
    if little in VERSIONS:
        return "<", little
    if big in VERSIONS:
        return ">", big
    version = little if little < big else big
    raise CheckpointError(f"GGUF version {version} is not supported (only versions 2 and 3)")


def read_layout(fh: BinaryIO, size: int, limits: Limits, source: Path | None = None) -> Layout:
    """Parse and check the whole header: key/values, tensor infos, alignment, data ranges.
    ``source`` names the file in errors found later, when a string array is decoded."""
    order, version = byte_order(fh.read(8))
    cur = _Cursor(fh, size, limits, order, 8, None if source is None else str(source))
    n_tensors = cur.unpack("Q", "tensor count")
    n_kvs = cur.unpack("Q", "key/value count")
    if n_tensors > limits.max_entries:
        raise LimitExceeded(
            f"GGUF header claims {n_tensors:,} tensors, over the {limits.max_entries:,} limit"
            " (use --max-entries to raise it)"
        )
    for n, least, what in ((n_kvs, 13, "key/value"), (n_tensors, 24, "tensor")):
        if n * least > size - cur.pos:
            raise CheckpointError(
                f"GGUF {what} count {n:,} needs at least {n * least:,} bytes but only {size - cur.pos:,} are left"
            )
    cur.spend(KV_ELEMENTS * n_kvs, "header")  # 13 bytes of file may make a ~150-byte key/value
    kvs: dict[str, tuple[str, Any]] = {}
    spans: dict[str, tuple[int, int]] = {}
    for _ in range(n_kvs):
        begin = cur.pos
        key = cur.string("key")
        if key in kvs:
            raise CheckpointError(f"GGUF key {key!r} appears twice")
        type_id = cur.unpack("I", f"key {key!r} type")
        kvs[key] = cur.value(type_id, f"key {key!r}")
        spans[key] = (begin, cur.pos)
    begin = cur.pos
    infos = [_tensor_info(cur) for _ in range(n_tensors)]
    infos_span = (begin, cur.pos)
    alignment = _alignment(kvs)
    data_start = -(-cur.pos // alignment) * alignment
    if infos and data_start > size:
        raise CheckpointError(f"GGUF data section would start at byte {data_start:,}, past the end of the file")
    data_end = _check_ranges(infos, alignment, size - data_start)
    byteorder = "little" if order == "<" else "big"
    return Layout(version, byteorder, kvs, infos, alignment, data_start, data_start + data_end, spans, infos_span)


def _tensor_info(cur: _Cursor) -> TensorInfo:
    name = cur.string("tensor name")
    n_dims = cur.unpack("I", f"tensor {name!r} dimension count")
    if n_dims > MAX_DIMS:
        raise CheckpointError(f"GGUF tensor {name!r} has {n_dims:,} dimensions, more than {MAX_DIMS}")
    dims = struct.unpack(f"{cur.order}{n_dims}Q", cur.take(8 * n_dims, f"tensor {name!r} dimensions"))
    type_id = cur.unpack("I", f"tensor {name!r} type")
    offset = cur.unpack("Q", f"tensor {name!r} offset")
    numel = 1
    for d in dims:
        numel *= d
        if numel > INT64_MAX:
            raise CheckpointError(f"GGUF tensor {name!r}: shape {list(dims)} overflows 64 bits")
    dtype = ggml_dtype(type_id)
    if dtype.blocked and dtype.size_known and dims and dims[0] % dtype.block:
        raise CheckpointError(
            f"GGUF tensor {name!r}: its first dimension {dims[0]:,} is not a multiple of the"
            f" {GGML_NAMES[type_id]} block size {dtype.block}"
        )
    nbytes = dtype.nbytes(numel) if dtype.size_known else None
    return TensorInfo(name, tuple(dims), type_id, offset, nbytes)


def _alignment(kvs: dict[str, tuple[str, Any]]) -> int:
    found = kvs.get("general.alignment")
    if found is None:
        return DEFAULT_ALIGNMENT
    kind, value = found
    if kind != "UINT32":
        raise CheckpointError(f"GGUF general.alignment is a {kind}, not a UINT32")
    if value == 0 or value & (value - 1) or value > MAX_ALIGNMENT:
        raise CheckpointError(f"GGUF general.alignment {value} is not a power of two up to {MAX_ALIGNMENT:,}")
    return int(value)


def _check_ranges(infos: list[TensorInfo], alignment: int, data_size: int) -> int:
    """Unique names, aligned offsets, no overlap, nothing past the end; the data's end."""
    seen: set[str] = set()
    for info in infos:
        if info.name in seen:
            raise CheckpointError(f"GGUF tensor {info.name!r} appears twice")
        seen.add(info.name)
        if info.offset % alignment:
            raise CheckpointError(
                f"GGUF tensor {info.name!r}: offset {info.offset:,} is not a multiple of the alignment {alignment}"
            )
        end = info.offset + (info.nbytes or 0)
        if end > data_size:
            raise CheckpointError(
                f"GGUF tensor {info.name!r}: bytes [{info.offset:,}, {end:,}) of the data section run past"
                f" the end of the file (it holds {max(data_size, 0):,}; truncated?)"
            )
    cursor, last = 0, ""
    for info in sorted(infos, key=lambda i: i.offset):
        if info.offset < cursor:
            raise CheckpointError(f"GGUF tensor {info.name!r} overlaps tensor {last!r}")
        if info.nbytes is not None and info.nbytes:
            cursor, last = info.offset + info.nbytes, info.name
    return max((i.offset + (i.nbytes or 0) for i in infos), default=0)


def read_gguf(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    layout = read_layout(fh, size, limits, path)
    starts = sorted({i.offset for i in layout.tensors} | {size - layout.data_start})
    entries: dict[str, Entry] = {}
    for info in layout.tensors:
        dtype = ggml_dtype(info.type_id)
        shape = tuple(reversed(info.dims))
        nbytes = info.nbytes
        if nbytes is None:  # unknown type: the bytes up to the next tensor (or the end) are its
            nbytes = next(s for s in starts if s > info.offset) - info.offset if info.offset < starts[-1] else 0
        storage = StorageRef(path, info.name, layout.data_start + info.offset, nbytes, dtype, layout.byteorder)
        entries[info.name] = TensorRef(dtype, shape, contiguous_strides(shape), storage)
    ckpt = Checkpoint(path, "gguf", entries, ordered=True, file_metadata=dict(layout.kvs))
    key = id(ckpt)
    _PARSED[key] = (weakref.ref(ckpt, lambda _: _PARSED.pop(key, None)), layout)
    return ckpt


# The layout each open GGUF checkpoint was read with, for as long as the checkpoint lives:
# an edit needs its spans, and parsing a 6 MB header again costs more than the rest of the plan.
_PARSED: dict[int, tuple[weakref.ref[Checkpoint], Layout]] = {}


def parsed_layout(ckpt: Checkpoint) -> Layout | None:
    """The layout ``read_gguf`` made ``ckpt`` from (its bytes are those ``ckpt``'s source handle reads)."""
    found = _PARSED.get(id(ckpt))
    return found[1] if found is not None and found[0]() is ckpt else None
