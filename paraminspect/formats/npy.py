"""Reader for numpy ``.npy`` files (``numpy.save``): the header only.

A ``.npy`` is the magic ``\\x93NUMPY``, a version (1.0: a 16-bit header length;
2.0 and 3.0: 32-bit; 3.0 is UTF-8), then a Python dict literal
``{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`` padded with
spaces, then the elements. numpy reads the dict with ``ast.literal_eval``; here a
small literal parser of our own reads it, after its size is bounded, so no input
can make it build more than a few objects per byte or recurse deeply.
Object arrays (``|O``) hold a pickle, never read here: they are listed as inert
placeholders, and ``scan`` analyses their pickle. The ``.npz`` reader uses the
same header functions for each member.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from paraminspect import dtypes
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.filemeta import as_file_metadata
from paraminspect.formats.magic import NPY_MAGIC
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, Entry, Packing, StorageRef, TensorRef, Value, opaque_class

# numpy's own np.load refuses headers over 10,000 bytes by default; a numeric array's
# header is under 200. Larger ones (huge structured dtypes) are refused, not parsed.
MAX_HEADER = 1 << 16
PREFIX = 12  # magic, version, and the longest header-length field
MAX_NESTING = 8  # a numeric header nests two levels (dict, shape tuple)

# Element types by (kind, bytes); names as in paraminspect.dtypes.
_NUMERIC = {
    ("b", 1): "bool",
    **{("i", n): f"int{8 * n}" for n in (1, 2, 4, 8)},
    **{("u", n): f"uint{8 * n}" for n in (1, 2, 4, 8)},
    **{("f", n): f"float{8 * n}" for n in (2, 4, 8)},
    **{("c", n): f"complex{8 * n}" for n in (8, 16)},
}
OBJECT = "|O"


@dataclass(frozen=True)
class Header:
    """What a ``.npy`` header says, and where its elements start (from the ``.npy``'s first byte)."""

    descr: str
    fortran_order: bool
    shape: tuple[int, ...]
    data_offset: int
    version: tuple[int, int]


def header_span(prefix: bytes) -> tuple[int, int]:
    """From the first (up to) 12 bytes: the header's length field size and the header length."""
    if not prefix.startswith(NPY_MAGIC) or len(prefix) < 10:
        raise CheckpointError("not a numpy .npy array (no \\x93NUMPY magic)")
    major, minor = prefix[6], prefix[7]
    if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
        raise CheckpointError(f".npy format version {major}.{minor} is not one numpy writes (1.0, 2.0, 3.0)")
    if major == 1:
        return 10, struct.unpack("<H", prefix[8:10])[0]
    if len(prefix) < 12:
        raise CheckpointError(".npy header is truncated")
    return 12, struct.unpack("<I", prefix[8:12])[0]


def read_header(read: Callable[[int], bytes], available: int, limits: Limits) -> Header:
    """The header of the ``.npy`` whose first ``n`` bytes ``read(n)`` returns (``available``
    bytes in all), its length checked against the limits before any of it is read."""
    prefix = read(min(PREFIX, available))
    start, length = header_span(prefix)
    version = (prefix[6], prefix[7])
    bound = min(MAX_HEADER, limits.max_header_bytes)
    if length > bound:
        raise LimitExceeded(f".npy header length {length:,} is over the {bound:,}-byte limit")
    if start + length > available:
        raise CheckpointError(f".npy header length {length:,} runs past the end of the data ({available:,} bytes)")
    raw = read(start + length)[start:]
    if len(raw) != length:
        raise CheckpointError(".npy header is truncated")
    encoding = "utf-8" if version[0] == 3 else "latin-1"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise CheckpointError(".npy header is not valid UTF-8") from None
    found = parse_literal(text)
    if not isinstance(found, dict) or set(found) != {"descr", "fortran_order", "shape"}:
        raise CheckpointError(".npy header is not a dict of exactly 'descr', 'fortran_order' and 'shape'")
    descr, fortran, shape = found["descr"], found["fortran_order"], found["shape"]
    if not isinstance(descr, str):
        raise CheckpointError(f".npy descr {_short(descr)} is a structured dtype, which is not supported")
    if type(fortran) is not bool:
        raise CheckpointError(f".npy fortran_order {_short(fortran)} is not True or False")
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise CheckpointError(f".npy shape {_short(shape)} is not a tuple of non-negative integers")
    return Header(descr, fortran, shape, start + length, version)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def element_type(descr: str) -> tuple[dtypes.DType, str] | None:
    """The element type and byte order (``little``/``big``) of a numeric ``descr``, else None."""
    match = re.fullmatch(r"([<>|=])([biufc])(\d{1,2})", descr)
    if match is None:
        return None
    order, kind, width = match.group(1), match.group(2), int(match.group(3))
    name = _NUMERIC.get((kind, width))
    if name is None:
        return None
    if order == "|" and width > 1:
        return None  # numpy writes "|" only for one-byte types
    return dtypes.BY_NAME[name], "big" if order == ">" else "little"


def entry(
    path: Path,
    name: str,
    header: Header,
    start: int,
    available: int,
    packing: Packing | None = None,
) -> Entry:
    """A tensor for a numeric array (its elements at ``start + data_offset``, of ``available``
    bytes from ``start``), else an inert placeholder naming the dtype."""
    known = element_type(header.descr)
    if known is None:
        what = "pickled objects" if header.descr == OBJECT else header.descr
        return Value(opaque_class(f"numpy.ndarray[{what}]")(list(header.shape)))
    dtype, byteorder = known
    numel = 1
    for d in header.shape:
        numel *= d
    nbytes = numel * dtype.itemsize
    if header.data_offset + nbytes > available:
        held = max(available - header.data_offset, 0)
        raise CheckpointError(
            f"array {name!r}: {header.descr} {list(header.shape)} needs {nbytes:,} bytes"
            f" but {held:,} follow its header (truncated?)"
        )
    shape = header.shape
    strides = _strides(shape, fortran=header.fortran_order)
    storage = StorageRef(path, name, start + header.data_offset, nbytes, dtype, byteorder, packing=packing)
    return TensorRef(dtype, shape, strides, storage)


def _strides(shape: tuple[int, ...], *, fortran: bool) -> tuple[int, ...]:
    """Element strides: row-major, or (Fortran order) the reversed shape's row-major strides reversed."""
    order = shape[::-1] if fortran else shape
    strides: list[int] = []
    step = 1
    for n in reversed(order):
        strides.append(step)
        step *= max(n, 1)
    strides.reverse()
    return tuple(strides[::-1]) if fortran else tuple(strides)


def read_npy(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    """A ``.npy`` file as a checkpoint of one entry, named after the file (``w.npy`` -> ``w``)."""

    def read(n: int) -> bytes:
        fh.seek(0)
        return fh.read(n)

    header = read_header(read, size, limits)
    name = path.name.removesuffix(".npy") or "array"
    metadata = {"npy_version": f"{header.version[0]}.{header.version[1]}"}
    return Checkpoint(
        path,
        "npy",
        {name: entry(path, name, header, 0, size)},
        metadata,
        ordered=True,
        file_metadata=as_file_metadata(metadata),
    )


def object_pickle(read_at: Callable[[int, int], bytes], header: Header, available: int, limits: Limits) -> bytes:
    """The pickle an object array holds (everything after its header), bounded by the pickle limit."""
    length = available - header.data_offset
    if length > limits.max_pickle_bytes:
        raise LimitExceeded(
            f"object array pickle is {length:,} bytes, over the {limits.max_pickle_bytes:,}-byte limit"
            " (use --max-pickle-bytes to raise it)"
        )
    return read_at(header.data_offset, length)


# ---------------------------------------------------------------- the literal parser

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<punct>[{}()\[\],:])
      | '(?P<single>[^'\\\n]*)'
      | "(?P<double>[^"\\\n]*)"
      | (?P<int>[-+]?\d{1,40})L?
      | (?P<word>True|False|None)
    )""",
    re.VERBOSE,
)
_WORDS: dict[str, Any] = {"True": True, "False": False, "None": None}
_CLOSE = {"{": "}", "(": ")", "[": "]"}


def parse_literal(text: str) -> Any:
    """A Python literal made of dicts, tuples, lists, strings without escapes, integers,
    True, False and None (what a ``.npy`` header holds), or a one-line error."""
    tokens = _tokens(text)
    value, at = _value(tokens, 0, 0)
    if at != len(tokens):
        raise CheckpointError(f".npy header has unexpected text after its dict ({_short(tokens[at][1])})")
    return value


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    at = 0
    end = len(text.rstrip())
    while at < end:
        match = _TOKEN.match(text, at)
        if match is None:
            raise CheckpointError(f".npy header is not a plain literal (at char {at}: {_short(text[at : at + 20])})")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        if kind == "punct":
            out.append((raw, raw))
        elif kind in ("single", "double"):
            out.append(("str", raw))
        elif kind == "int":
            out.append(("int", int(raw)))
        else:
            out.append(("word", _WORDS[raw]))
        at = match.end()
    return out


def _value(tokens: list[tuple[str, Any]], at: int, depth: int) -> tuple[Any, int]:
    if at >= len(tokens):
        raise CheckpointError(".npy header ends in the middle of its dict")
    kind, value = tokens[at]
    if kind in ("str", "int", "word"):
        return value, at + 1
    if kind not in _CLOSE:
        raise CheckpointError(f".npy header has {value!r} where a value should be")
    if depth >= MAX_NESTING:
        raise CheckpointError(f".npy header nests deeper than {MAX_NESTING} levels")
    close, items, at = _CLOSE[kind], [], at + 1
    commas = 0
    while at < len(tokens) and tokens[at][0] != close:
        item, at = _value(tokens, at, depth + 1)
        if kind == "{":
            if at >= len(tokens) or tokens[at][0] != ":":
                raise CheckpointError(".npy header dict has a key without ':'")
            if not isinstance(item, str | int | bool) and item is not None:
                raise CheckpointError(".npy header dict has a key that is not a string or number")
            value_, at = _value(tokens, at + 1, depth + 1)
            item = (item, value_)
        items.append(item)
        if at < len(tokens) and tokens[at][0] == ",":
            at += 1
            commas += 1
        elif at < len(tokens) and tokens[at][0] != close:
            raise CheckpointError(f".npy header is missing a ',' (at {_short(tokens[at][1])})")
    if at >= len(tokens):
        raise CheckpointError(".npy header ends in the middle of its dict")
    at += 1
    if kind == "{":
        result: dict[Any, Any] = {}
        for key, item in items:
            if key in result:
                raise CheckpointError(f".npy header has the key {key!r} twice")
            result[key] = item
        return result, at
    if kind == "[":
        return items, at
    return (items[0] if len(items) == 1 and not commas else tuple(items)), at
