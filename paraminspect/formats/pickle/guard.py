"""A cheap pass over a pickle's opcodes before CPython's C unpickler sees it.

The C unpickler is fast but trusts the data in two costly ways: it sizes its
memo array by the largest memo index (``LONG_BINPUT 1175087203``, 5 bytes,
makes it zero ~9 GB), and one opcode byte can allocate an object hundreds of
times its size (``EMPTY_SET`` is 1 byte, a set 216). One streaming pass over
the opcodes (O(1) memory, ~0.3 us an opcode) refuses both first.
"""

from __future__ import annotations

import pickletools
from collections.abc import Iterator
from typing import BinaryIO

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

# opcode byte -> (name, how its argument is laid out), from pickletools' own table.
_LAYOUT: dict[int, tuple[str, int | None]] = {
    ord(op.code): (op.name, None if op.arg is None else op.arg.n) for op in pickletools.opcodes
}
_PREFIX = {  # length-prefixed arguments: (prefix bytes, signed)
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}


class _Incomplete(CheckpointError):
    """The data ended inside the pickle: more bytes might complete it."""


def walk(data: bytes, start: int = 0) -> Iterator[tuple[str, int, int]]:
    """(opcode name, position, argument) up to STOP, without decoding anything.

    The argument is the memo index for PUT/BINPUT/LONG_BINPUT and the payload
    length otherwise. Three times faster than ``pickletools.genops``, which
    decodes every string and number; positions are the same (tested).
    """
    at, end = start, len(data)
    left = _limits.current().max_pickle_opcodes
    while at < end:
        left -= 1
        if left < 0:
            raise too_many_opcodes()
        layout = _LAYOUT.get(data[at])
        if layout is None:
            raise CheckpointError(f"malformed pickle data (unknown opcode {data[at]:#04x} at byte {at})")
        name, n = layout
        pos, at = at, at + 1
        value = 0
        if n is None:
            pass
        elif n >= 0:
            value = int.from_bytes(data[at : at + n], "little") if name in _MEMO_PUTS else n
            at += n
        elif n == pickletools.UP_TO_NEWLINE:
            stop = data.find(b"\n", at)
            if stop >= 0 and name in ("GLOBAL", "INST"):
                stop = data.find(b"\n", stop + 1)
            if stop < 0:
                raise _Incomplete(f"malformed pickle data (no newline after {name} at byte {pos})")
            line = data[at:stop]
            value = _decimal(line, pos) if name in _MEMO_PUTS else len(line)
            at = stop + 1
        else:
            width, signed = _PREFIX[n]
            value = int.from_bytes(data[at : at + width], "little", signed=signed)
            if value < 0:
                raise CheckpointError(f"malformed pickle data (negative length at byte {pos})")
            at += width + value
        if at > end:
            raise _Incomplete(f"malformed pickle data (truncated {name} at byte {pos})")
        yield name, pos, value
        if name == "STOP":
            return
    raise _Incomplete("malformed pickle data (pickle exhausted before seeing STOP)")


def too_many_opcodes() -> LimitExceeded:
    """The error for a pickle past the opcode limit (shared with ``scan``)."""
    limit = _limits.current().max_pickle_opcodes
    return LimitExceeded(f"pickle holds more than {limit:,} opcodes (use --max-pickle-opcodes to raise the limit)")


def _decimal(line: bytes, pos: int) -> int:
    try:
        return int(line)
    except ValueError:
        raise CheckpointError(f"malformed pickle data (bad memo index at byte {pos})") from None


def precheck(data: bytes, max_bytes: int | None = None) -> None:
    """Refuse out-of-range memo slots and pickles that would build more than
    ``max_bytes`` (default: the ``--max-pickle-bytes`` limit) of objects."""
    budget = _limits.current().max_pickle_bytes if max_bytes is None else max_bytes
    estimate = 0
    for count, (name, pos, value) in enumerate(walk(data)):
        if name in _MEMO_PUTS and not 0 <= value <= len(data):
            raise CheckpointError(f"malformed pickle: memo slot {value} at byte {pos} is out of range")
        cost = _COST.get(name)
        if cost is None:
            cost = 32 if name in _SIZED else (64 + value if value and name not in _MEMO_PUTS else 0)
        estimate += 16 + cost
        if count % _CHECK_EVERY == 0 and estimate > budget:
            break
    if estimate > budget:
        raise LimitExceeded(
            f"pickle would build more than {budget:,} bytes of objects (use --max-pickle-bytes to raise the limit)"
        )


def read_one(fh: BinaryIO) -> bytes:
    """The next whole pickle in a stream (legacy files hold several in a row),
    found by walking its opcodes over a growing window of the stream, so neither
    an over-long read nor the unpickler sees anything past its STOP. (Read, not
    memory-mapped: a mapped file truncated underneath kills the process with SIGBUS.)"""
    budget = _limits.current().max_pickle_bytes
    start = fh.tell()
    window = _FIRST_WINDOW
    while True:
        fh.seek(start)
        data = fh.read(window)
        try:
            end = _pickle_end(data, budget)
            break
        except _Incomplete:
            if len(data) < window:
                raise  # the stream ended inside the pickle
            if window > budget:
                raise LimitExceeded(
                    f"pickle is over the {budget:,}-byte limit (use --max-pickle-bytes to raise the limit)"
                ) from None
            window = min(window * 4, budget + 1)
    # STOP has no argument, so the pickle ends just after the last opcode's byte.
    fh.seek(start + end)
    return data[:end]


_FIRST_WINDOW = 1 << 16


def _pickle_end(data: bytes, budget: int) -> int:
    """Length of the pickle at the start of ``data``, within ``budget`` bytes."""
    end = 0
    for _, pos, _ in walk(data):
        end = pos + 1
        if end > budget:
            raise LimitExceeded(f"pickle is over the {budget:,}-byte limit (use --max-pickle-bytes to raise the limit)")
    return end
