"""Text for values that hold integers too long for ``str()``.

Python refuses to write an int of more than 4,300 decimal digits
(``sys.set_int_max_str_digits``: the conversion takes quadratic time, so the
limit guards against denial of service), and a pickle can hold one as a value
or a key. Such an int is shown as ``<int of 5,001 digits>``: in tables, names
and diff cells, and as that string in JSON and CSV (a JSON number that long
would be rounded or refused by most readers anyway). Every other value prints
exactly as ``str()``/``repr()`` print it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# Count digits exactly (one power of ten) only up to here; above, the estimate.
_EXACT_DIGITS = 100_000


def fits(n: int) -> bool:
    """Whether ``str(n)`` works under the interpreter's current limit."""
    try:
        str(n)
    except ValueError:
        return False
    return True


def int_text(n: int) -> str:
    """``str(n)``, or ``<int of N digits>`` when it is too long for that."""
    try:
        return str(n)
    except ValueError:
        sign = "negative " if n < 0 else ""
        return f"<{sign}int of {digits(n):,} digits>"


def digits(n: int) -> int:
    """The number of decimal digits of ``n``, without converting it to text."""
    n = abs(n)
    if n < 10:
        return 1
    log = math.log10(n)
    nearest = round(log)
    if abs(log - nearest) > 1e-9 or nearest > _EXACT_DIGITS:
        return math.floor(log) + 1
    return nearest + 1 if n >= 10**nearest else nearest  # close to a power of ten: decide exactly


def safe_str(value: Any) -> str:
    """``str(value)``, with any too-long int inside it shown by :func:`int_text`."""
    try:
        return str(value)
    except ValueError:
        return int_text(value) if isinstance(value, int) else _text(value, int_text)


def exact_repr(value: Any) -> str:
    """``repr(value)``, with any too-long int inside it in hexadecimal (exact, and
    linear-time): for comparing values, where two such ints must not look alike."""
    try:
        return repr(value)
    except ValueError:
        return _text(value, lambda n: f"int({n:#x})")


def _text(value: Any, big: Callable[[int], str]) -> str:
    """repr-like text of ``value`` built by hand (only reached when ``repr`` failed)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int_text(value) if fits(value) else big(value)
    if isinstance(value, list):
        return "[" + ", ".join(_text(v, big) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_text(v, big) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, set | frozenset):
        inner = "{" + ", ".join(_text(v, big) for v in value) + "}"
        return inner if type(value) is set else f"{type(value).__name__}({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_text(k, big)}: {_text(v, big)}" for k, v in value.items()) + "}"
    if isinstance(value, slice):
        return f"slice({_text(value.start, big)}, {_text(value.stop, big)}, {_text(value.step, big)})"
    try:
        return repr(value)
    except ValueError:
        return f"<{type(value).__name__}>"
