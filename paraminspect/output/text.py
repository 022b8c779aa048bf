"""Text pieces every renderer shares: escaping names and messages, human units,
JSON-safe values, and one-line forms of non-tensor values and file metadata."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from paraminspect.inttext import fits, int_text, safe_str
from paraminspect.output.tabular import MetaValue


def safe_text(text: str) -> str:
    r"""Escape control characters (ANSI escapes, newlines) so names print as data.

    The backslash is escaped too (``\\``), so the escaping can be undone: a real
    ESC prints as ``\x1b`` and the four characters ``\x1b`` as ``\\x1b``; one
    name cannot pass for another.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


def message_text(text: str) -> str:
    """Escape control characters in a message for stderr; backslashes stay as they
    are, because the names inside messages are quoted with ``repr`` (which escapes them)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def human_count(n: int) -> str:
    if abs(n) < 10_000:
        return f"{n:,}" if abs(n) >= 1000 else str(n)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value:.1f} EiB"


def shape_text(shape: list[int] | None) -> str:
    return "" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def _lazy_list(value: Any) -> bool:
    """A sequence its reader decodes on demand (a GGUF string array): shown as a list."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | list | tuple)


def _json_safe(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as the strings the design fixes."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {safe_str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or _lazy_list(value):
        return _json_safe_items(list(value))
    if isinstance(value, int):
        return value if fits(value) else int_text(value)  # past 4,300 digits: a string (inttext.py)
    if isinstance(value, bytes):
        return value.hex()
    return safe_str(value)


_AS_THEY_ARE = frozenset((str, bool, type(None)))
_SURELY_FITS = 1 << 64  # an int below this in size prints whatever the digit limit (at least 640)


def _json_safe_items(items: list[Any]) -> list[Any]:
    """:func:`_json_safe` of every item, with the type of each looked at once, at C speed,
    when all are of one plain kind: a GGUF vocabulary is 151,000 strings."""
    kinds = set(map(type, items))
    if kinds <= _AS_THEY_ARE or plain_kind(items, kinds) is not None:
        return items
    return [_json_safe(v) for v in items]


def plain_kind(items: Sequence[Any], kinds: set[type] | None = None) -> type | None:
    """str, int or float when every item is exactly of that type and JSON-safe as it is
    (ints printable whatever the digit limit, floats finite); else None. ``kinds``: the
    items' types, when the caller has them."""
    kinds = set(map(type, items)) if kinds is None else kinds
    if len(kinds) != 1:
        return None
    (kind,) = kinds
    if kind is str:
        return str
    if kind is int and min(items) > -_SURELY_FITS and max(items) < _SURELY_FITS:
        return int
    if kind is float and all(map(math.isfinite, items)):
        return float
    return None


SHORT_VALUE_CHARS = 80  # a value in a tree line is cut to this many characters
SHORT_SEQUENCE_ITEMS = 8  # longer lists and tuples are summarised there (``[624 ints]``)


def value_text(value: Any, *, short: bool = False) -> str:
    """A non-tensor leaf as one line of text, laid out like ``str()``, escaped.

    Strings are shown with ``repr`` (quotes, control characters and backslashes
    escaped); other leaves with :func:`safe_text`. ``short`` (trees) summarises
    long lists and tuples by count and kind and cuts the line at
    :data:`SHORT_VALUE_CHARS` with ``…``; JSON, CSV and ``get`` show values whole.
    """
    text = _value_repr(value, short)
    if short and len(text) > SHORT_VALUE_CHARS:
        text = text[: SHORT_VALUE_CHARS - 1] + "…"
    return text


def _value_repr(value: Any, short: bool) -> str:
    # Recursion is bounded: model.check_value refuses leaves nested past 100 levels.
    if isinstance(value, str):
        return repr(value)
    if type(value) in (list, tuple):
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        if short and len(value) > SHORT_SEQUENCE_ITEMS:
            return f"{open_}{len(value)} {_item_kind(value)}{close}"
        inner = ", ".join(_value_repr(v, short) for v in value)
        return f"{open_}{inner}{',' if len(value) == 1 and close == ')' else ''}{close}"
    if type(value) is dict:
        if short and len(value) > SHORT_SEQUENCE_ITEMS:
            return f"{{{len(value)} items}}"
        return "{" + ", ".join(f"{_value_repr(k, short)}: {_value_repr(v, short)}" for k, v in value.items()) + "}"
    return safe_text(safe_str(value))


def _item_kind(items: list[Any] | tuple[Any, ...]) -> str:
    kinds = {bool if isinstance(v, bool) else type(v) for v in items}
    names = {int: "ints", float: "floats", str: "strings", bool: "bools"}
    return names.get(kinds.pop(), "items") if len(kinds) == 1 else "items"


META_CHARS = 80  # a metadata value longer than this is summarised in a table
META_ITEMS = 5  # items of a long list (keys of a long mapping) a table shows
META_ITEM_CHARS = 24  # each shown item is cut to this many characters


def meta_text(item: MetaValue, *, short: bool) -> str:
    r"""A file-metadata value as one escaped line. ``short`` (tables, markdown): a long
    string is cut with ``…`` and its length, a long list shows its type, length and
    first items (``[STRING] \u00d7 151000: '!', '"', …``); otherwise (CSV) the whole value,
    strings as they are and containers as JSON."""
    value = item.value
    if not short:
        if isinstance(value, str):
            return safe_text(value)
        plain = isinstance(value, list | tuple | dict | int | float | bool) or value is None or _lazy_list(value)
        if not plain:
            return safe_text(safe_str(value))  # a placeholder object: its text, as JSON shows it
        return safe_text(json.dumps(_json_safe(value), ensure_ascii=False, allow_nan=False))
    if isinstance(value, str):
        if len(value) <= META_CHARS:
            return safe_text(value)
        return f"{safe_text(value[: META_CHARS - 20])}… ({len(value):,} chars)"
    if type(value) in (list, tuple, dict) or _lazy_list(value):
        if len(value) <= META_ITEMS:  # never the whole text of a long list just to measure it
            whole = value_text(list(value) if _lazy_list(value) else value)
            if len(whole) <= META_CHARS:
                return whole
        shown = list(value)[:META_ITEMS] if isinstance(value, dict) else list(value[:META_ITEMS])
        items = ", ".join(_short_item(v) for v in shown) + (", …" if len(value) > len(shown) else "")
        return f"{safe_text(item.type)} × {len(value)}: {items}"
    return value_text(value, short=True)


def _short_item(value: Any) -> str:
    text = value_text(value, short=True)
    return text if len(text) <= META_ITEM_CHARS else text[: META_ITEM_CHARS - 1] + "…"
