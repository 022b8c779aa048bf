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
    safe = _json_safe(doc)  # a structure of our own: placeholders can go straight into it
    if isinstance(safe, list) and _long_plain(safe):
        return _joined(safe, 0) + "\n"
    lists: list[tuple[list[Any], int]] = []  # (list, how many containers hold it)
    token = f"paraminspect-list-{os.urandom(16).hex()}"  # os: secrets would cost start-up
    if isinstance(safe, dict | list):
        _mark(safe, 1, token, lists)
    text = json.dumps(safe, indent=INDENT, allow_nan=False)
    if lists:
        placeholder = re.compile(f'"{token}-([0-9]+)"')
        text = placeholder.sub(lambda m: _joined(*lists[int(m.group(1))]), text)
    return text + "\n"


def _mark(node: dict[Any, Any] | list[Any], depth: int, token: str, lists: list[tuple[list[Any], int]]) -> None:
    """Put a placeholder in place of each long plain list inside ``node`` (``depth``
    containers deep); only containers are looked into."""
    for key, value in node.items() if isinstance(node, dict) else enumerate(node):
        if type(value) is list:
            if _long_plain(value):
                lists.append((value, depth))
                node[key] = f"{token}-{len(lists) - 1}"
            elif any(type(v) in _CONTAINERS for v in value):
                _mark(value, depth + 1, token, lists)
        elif type(value) is dict:
            _mark(value, depth + 1, token, lists)


_CONTAINERS = (dict, list)


def _long_plain(items: list[Any]) -> bool:
    """Longer than :data:`LONG_LIST` and all strings or all ints (exactly those types)."""
    return len(items) > LONG_LIST and set(map(type, items)) in ({str}, {int})


def _joined(items: list[Any], depth: int) -> str:
    """The list as ``json.dumps(..., indent=2)`` writes it at ``depth`` containers deep."""
    inner = "\n" + " " * (INDENT * (depth + 1))
    encode = encode_basestring_ascii if type(items[0]) is str else int.__repr__
    return "[" + inner + ("," + inner).join(map(encode, items)) + "\n" + " " * (INDENT * depth) + "]"
