"""A cheap pass over a pickle's opcodes before CPython's C unpickler sees it.

The C unpickler is fast but trusts the data in two costly ways: it sizes its
memo array by the largest memo index (``LONG_BINPUT 1175087203``, 5 bytes,
makes it zero ~9 GB), and one opcode byte can allocate an object hundreds of
times its size (``EMPTY_SET`` is 1 byte, a set 216). One streaming pass of
``pickletools.genops`` (~0.5 us an opcode, O(1) memory) refuses both first.
"""

from __future__ import annotations

import pickletools
import warnings

from paraminspect import limits as _limits
from paraminspect.errors import CheckpointError, LimitExceeded

_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})

# Rough CPython (64-bit) sizes of what an opcode makes, on top of a 16-byte
# reference that every value costs in its container, the stack or the memo.
_COST = {
    "EMPTY_DICT": 64,
    "DICT": 64,
    "EMPTY_LIST": 56,
    "LIST": 56,
    "EMPTY_SET": 216,
    "FROZENSET": 216,
    "TUPLE": 64,
    "TUPLE1": 48,
    "TUPLE2": 56,
    "TUPLE3": 64,
    "REDUCE": 200,  # a placeholder or stand-in object with its attribute dict
    "NEWOBJ": 200,
    "NEWOBJ_EX": 200,
    "OBJ": 200,
    "INST": 200,
    "BINPERSID": 200,
    "PERSID": 200,
}
_SIZED = {"LONG", "LONG1", "LONG4", "BININT", "BININT2", "INT", "BINFLOAT", "FLOAT"}
_CHECK_EVERY = 4096


def precheck(data: bytes, max_bytes: int | None = None) -> None:
    """Refuse out-of-range memo slots and pickles that would build more than
    ``max_bytes`` (default: the ``--max-pickle-bytes`` limit) of objects."""
    budget = _limits.current().max_pickle_bytes if max_bytes is None else max_bytes
    estimate = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # STRING args with bad escapes: just data
            for count, (op, arg, pos) in enumerate(pickletools.genops(data)):
                name = op.name
                if name in _MEMO_PUTS and (type(arg) is not int or not 0 <= arg <= len(data)):
                    raise CheckpointError(f"malformed pickle: memo slot {arg!r} at byte {pos} is out of range")
                if isinstance(arg, str | bytes):
                    estimate += 64 + len(arg)
                elif name in _SIZED:
                    estimate += 32
                estimate += 16 + _COST.get(name, 0)
                if count % _CHECK_EVERY == 0 and estimate > budget:
                    break
    except ValueError as exc:
        raise CheckpointError(f"malformed pickle data ({exc})") from None
    if estimate > budget:
        raise LimitExceeded(
            f"pickle would build more than {budget:,} bytes of objects (use --max-pickle-bytes to raise the limit)"
        )
