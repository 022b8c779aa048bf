"""The one way a ``--format json`` document is written: indented by two, NaN and
infinities as the strings the design fixes, everything else as ``json.dumps`` writes it.

json's indenting encoder is pure Python, about a microsecond an item: the 300,000
strings of a GGUF vocabulary (``meta``, and the ``metadata`` key of ``tree`` and
``shapes``) took 0.3 s to print. A long list of plain strings or ints is therefore
written by json's C string encoder and joined here, into exactly the text the
indenting encoder would have made: a placeholder goes through ``json.dumps`` in
its place and is swapped for the list afterwards. The placeholder holds a random
token drawn per document, so no string in a file can pass for one.
"""

from __future__ import annotations

import json
import os
import re
from json.encoder import encode_basestring_ascii
from typing import Any

from paraminspect.output.text import _json_safe

INDENT = 2
LONG_LIST = 64  # lists longer than this, of one plain kind, are joined here


def json_document(doc: Any) -> str:
    """``doc`` as indented JSON text with a final newline."""
    lists: list[tuple[list[Any], int]] = []  # (list, how many containers hold it)
    token = f"paraminspect-list-{os.urandom(16).hex()}"  # os: secrets would cost start-up
    marked = _mark(_json_safe(doc), 0, token, lists)
    text = json.dumps(marked, indent=INDENT, allow_nan=False)
    if lists:
        placeholder = re.compile(f'"{token}-([0-9]+)"')
        text = placeholder.sub(lambda m: _joined(*lists[int(m.group(1))]), text)
    return text + "\n"


def _mark(node: Any, depth: int, token: str, lists: list[tuple[list[Any], int]]) -> Any:
    """``node`` with each long plain list replaced by its placeholder string; containers
    are copied only where something inside them was replaced."""
    if isinstance(node, dict):
        out = {k: _mark(v, depth + 1, token, lists) for k, v in node.items()}
        return out if any(out[k] is not v for k, v in node.items()) else node
    if isinstance(node, list):
        if len(node) > LONG_LIST and _plain(node):
            lists.append((node, depth))
            return f"{token}-{len(lists) - 1}"
        items = [_mark(v, depth + 1, token, lists) for v in node]
        return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
    return node


def _plain(items: list[Any]) -> bool:
    kinds = set(map(type, items))
    return kinds in ({str}, {int})


def _joined(items: list[Any], depth: int) -> str:
    """The list as ``json.dumps(..., indent=2)`` writes it at ``depth`` containers deep."""
    inner = "\n" + " " * (INDENT * (depth + 1))
    encode = encode_basestring_ascii if type(items[0]) is str else int.__repr__
    return "[" + inner + ("," + inner).join(map(encode, items)) + "\n" + " " * (INDENT * depth) + "]"
