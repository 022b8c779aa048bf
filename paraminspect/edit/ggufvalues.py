"""Command-line text to a typed GGUF value for ``set-meta`` (edit/metadata.py's row for GGUF).

The type is, in order: the one asked for (``--type UINT32``), the key's existing
GGUF type (a reader such as llama.cpp asks for a key by type and refuses another),
or one read off the text: ``true``/``false`` a BOOL, an integer a UINT32 (the
type of llama.cpp's counts; INT32 if negative, 64 bits if it needs them), a
decimal number a FLOAT32 (llama.cpp's floats), anything else a STRING. Text
that is not a value of the type is refused (exit 2), never stored as something else.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

from paraminspect.errors import UsageError

Typed = tuple[str, Any]

INT_RANGES = {
    "UINT8": (0, 1 << 8),
    "INT8": (-(1 << 7), 1 << 7),
    "UINT16": (0, 1 << 16),
    "INT16": (-(1 << 15), 1 << 15),
    "UINT32": (0, 1 << 32),
    "INT32": (-(1 << 31), 1 << 31),
    "UINT64": (0, 1 << 64),
    "INT64": (-(1 << 63), 1 << 63),
}
SCALARS = (*INT_RANGES, "FLOAT32", "FLOAT64", "BOOL", "STRING")
INTEGER = re.compile(r"[+-]?[0-9]+")
DECIMAL = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
BOOLS = {"true": True, "false": False, "1": True, "0": False}


def parse_gguf_value(key: str, text: str, old: Typed | None, kind: str | None) -> Typed:
    """The typed value ``text`` gives ``key`` (see the module docstring for the type)."""
    if kind is not None:
        kind = _type_name(kind)
    elif old is not None:
        kind = old[0]
    else:
        kind = _inferred(text)
    if kind.startswith("[[") or kind == "[ARRAY]":
        raise UsageError(f"metadata key {key!r} is an array of arrays ({kind}): set-meta cannot set one")
    if kind.startswith("["):
        return kind, _array(key, kind, text)
    return kind, _scalar(key, kind, text)


def _type_name(given: str) -> str:
    name = given.strip().upper()
    inner = name[1:-1] if name.startswith("[") and name.endswith("]") else None
    if name in SCALARS or (inner is not None and inner in SCALARS):
        return name
    raise UsageError(f"--type {given}: not a GGUF type (one of {', '.join(SCALARS)}, or [TYPE] for an array)")


def _inferred(text: str) -> str:
    if text in ("true", "false"):
        return "BOOL"
    if INTEGER.fullmatch(text):
        value = int(text)
        for kind in ("UINT32", "INT32", "UINT64", "INT64"):
            low, high = INT_RANGES[kind]
            if low <= value < high:
                return kind
        return "STRING"
    if DECIMAL.fullmatch(text):
        return "FLOAT32"
    return "STRING"


def _refuse(key: str, kind: str, text: str, why: str = "") -> UsageError:
    shown = repr(text) if len(text) <= 40 else repr(text[:36]) + f"... ({len(text):,} chars)"
    return UsageError(f"metadata key {key!r} is a {kind}: {shown} is not one{why}")


def _scalar(key: str, kind: str, text: str) -> Any:
    if kind == "STRING":
        return text
    if kind == "BOOL":
        found = BOOLS.get(text.strip().lower())
        if found is None:
            raise _refuse(key, kind, text, " (true, false, 1 or 0)")
        return found
    if kind in INT_RANGES:
        if not INTEGER.fullmatch(text.strip()):
            raise _refuse(key, kind, text)
        value = int(text)
        low, high = INT_RANGES[kind]
        if not low <= value < high:
            raise _refuse(key, kind, text, f" (out of range {low}..{high - 1})")
        return value
    try:
        number = float(text)
    except ValueError:
        raise _refuse(key, kind, text) from None
    return _float(key, kind, text, number)


def _float(key: str, kind: str, text: str, value: float) -> float:
    if kind == "FLOAT64" or math.isnan(value) or math.isinf(value):
        return value
    try:  # stored as float32: keep the value the file will hold
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        raise _refuse(key, kind, text, " (too large for float32)") from None


def _array(key: str, kind: str, text: str) -> list[Any]:
    """A JSON array of values of the element type: ``'["a", "b"]'``, ``'[1, 2]'``."""
    inner = kind[1:-1]
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list):
        raise _refuse(key, kind, text, " (give a JSON array)")
    out: list[Any] = []
    for item in items:
        if inner == "STRING" and not isinstance(item, str):
            raise _refuse(key, kind, text, f" (item {item!r} is not a string)")
        if inner == "BOOL" and not isinstance(item, bool):
            raise _refuse(key, kind, text, f" (item {item!r} is not true or false)")
        if inner in INT_RANGES and (isinstance(item, bool) or not isinstance(item, int)):
            raise _refuse(key, kind, text, f" (item {item!r} is not an integer)")
        if inner.startswith("FLOAT") and (isinstance(item, bool) or not isinstance(item, int | float)):
            raise _refuse(key, kind, text, f" (item {item!r} is not a number)")
        out.append(item if inner in ("STRING", "BOOL") else _scalar(key, inner, str(item)))
    return out
