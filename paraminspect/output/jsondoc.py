"""The one way a ``--format json`` document is written: indented by two, NaN and
infinities as the strings the design fixes, everything else as ``json.dumps`` writes it.

json's indenting encoder is pure Python, a generator per container and about a
microsecond an item: the 300,000 strings of a GGUF vocabulary (``meta``, and the
``metadata`` key of ``tree`` and ``shapes``) took 0.3 s to print, and the 18,432
rows of a MoE's ``shapes`` 0.2 s with the copy that made them JSON-safe first.
So the text is built here, in one walk that also applies the JSON-safe rules
(:func:`paraminspect.output.text._json_safe`), into exactly what
``json.dumps(_json_safe(doc), indent=2, allow_nan=False)`` gives:

- strings, ints and finite floats of exactly those types, ``None`` and the two
  bools are encoded directly (strings by json's C encoder);
- a list whose items are all of one such kind is joined at C speed;
- other lists and tuples, and dicts whose keys are all strings, are walked;
- anything else (NaN, huge ints, bytes, dicts with other keys, lazy
  sequences, numpy scalars) is made JSON-safe and given to ``json.dumps``, whose
  text is indented to where it sits: json never writes a raw newline inside a
  string, so each newline it writes starts a line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from paraminspect.output.text import _SURELY_FITS, _json_safe, plain_kind

INDENT = 2
_SCALAR_TEXT = {None: "null", True: "true", False: "false"}
_STR_KEYS = frozenset((str,))


def json_document(doc: Any) -> str:
    """``doc`` as indented JSON text with a final newline."""
    return _encode(doc, 0) + "\n"


def _encode(value: Any, depth: int) -> str:
    """``value`` as ``json.dumps(_json_safe(value), indent=2)`` writes it ``depth`` containers deep."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int and -_SURELY_FITS < value < _SURELY_FITS:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None or value is True or value is False:
        return _SCALAR_TEXT[value]
    if kind is list or kind is tuple:  # json writes a tuple as a list
        if not value:
            return "[]"
        inner = _newline(depth + 1)
        encode = _plain_encoder(value)
        items = map(encode, value) if encode is not None else [_encode(v, depth + 1) for v in value]
        return "[" + inner + ("," + inner).join(items) + _newline(depth) + "]"
    if kind is dict and set(map(type, value)) <= _STR_KEYS:
        if not value:
            return "{}"
        inner = _newline(depth + 1)
        pairs = [encode_basestring_ascii(k) + ": " + _encode(v, depth + 1) for k, v in value.items()]
        return "{" + inner + ("," + inner).join(pairs) + _newline(depth) + "}"
    return json.dumps(_json_safe(value), indent=INDENT, allow_nan=False).replace("\n", _newline(depth))


def _plain_encoder(items: list[Any] | tuple[Any, ...]) -> Callable[[Any], str] | None:
    """The C-speed encoder of the items when all are of one plain kind, else None."""
    return _PLAIN_ENCODERS.get(plain_kind(items))


_PLAIN_ENCODERS: dict[type | None, Callable[[Any], str]] = {
    str: encode_basestring_ascii,
    int: int.__repr__,
    float: float.__repr__,
}


_NEWLINES: list[str] = []


def _newline(depth: int) -> str:
    """A newline and the indentation of a line ``depth`` containers deep (kept once made)."""
    while len(_NEWLINES) <= depth:
        _NEWLINES.append("\n" + " " * (INDENT * len(_NEWLINES)))
    return _NEWLINES[depth]
