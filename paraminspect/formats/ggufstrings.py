"""GGUF ``[STRING]`` arrays (a vocabulary, its merges) kept as their bytes until shown.

Made into 300,000 Python strings on every open, a tokenizer cost `shapes` ten
times everything else it does. The header reader (formats/gguf.py) walks an
array's length fields with the regex engine instead, in C: :func:`pattern`
matches a whole block of elements whose length is 1-127 (one length byte, seven
zero bytes), and only the elements around any other (long, empty, or cut by the
buffer's end) are stepped in Python, each length checked against the file. The
array is kept as one ``bytes`` object; it is decoded (and its UTF-8 checked)
when a value is shown, compared as text or re-encoded, and copied as it is by an
edit that keeps it.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from functools import cache
from typing import overload

from paraminspect.errors import CheckpointError

SHORT = 127  # longest element the pattern matches: its length field is ASCII (seven zero bytes)
# Elements per block match. A block that fails (an element not short among them) costs at most
# this many elements' scan, and the reader then steps at most this many in Python: one pattern
# serves, compiled once per process (each 127-branch pattern costs a cold process ~4 ms).
BLOCK = 128
HEAD = 64  # items up to here are decoded one by one (a table's first items), not all at once


@cache
def pattern(order: str) -> re.Pattern[bytes]:
    """Exactly BLOCK short elements, for byte order ``order``.

    Each branch is one length: a length byte then its seven zero bytes (little-endian;
    big-endian has the zeros first) and that many bytes of text. Branches for short
    lengths come first: vocabulary tokens are mostly 2-10 bytes.
    """
    if order == "<":
        one = b"|".join(re.escape(bytes([n])) + b"\x00{7}.{%d}" % n for n in range(1, SHORT + 1))
    else:
        one = b"\x00{7}(?:" + b"|".join(re.escape(bytes([n])) + b".{%d}" % n for n in range(1, SHORT + 1)) + b")"
    return re.compile(b"(?:" + one + b"){%d}" % BLOCK, re.DOTALL)


@cache
def _field_split(order: str) -> re.Pattern[str]:
    """The length fields in an array decoded whole (short elements, no NUL in any text)."""
    return re.compile(r"(?s).\x00{7}" if order == "<" else r"(?s)\x00{7}.")


class GGUFStrings(Sequence[str]):
    """A GGUF array of strings as read: ``len()`` without decoding, the first items
    decoded one by one, everything else (iteration, a late index, ``==`` against a
    list) decodes the whole array once. Two arrays of one byte order compare by bytes."""

    __slots__ = ("_items", "_n", "order", "raw", "short", "source", "what")

    def __init__(self, raw: bytes, n: int, order: str, *, short: bool, what: str, source: str | None = None) -> None:
        self.raw = raw  # the n elements, each a uint64 length and its UTF-8 bytes
        self._n = n
        self.order = order  # struct prefix: "<" or ">"
        self.short = short  # every length 1-127: decoded whole, then split at the length fields
        self.what = what  # for messages: "key 'tokenizer.ggml.tokens'"
        self.source = source
        self._items: list[str] | None = None

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if self._items is None:
            if isinstance(index, int) and 0 <= index < HEAD:
                if index >= self._n:
                    raise IndexError(index)
                return self._head(index + 1)[index]
            if isinstance(index, slice):
                start, stop, step = index.indices(self._n)
                if step > 0 and stop <= HEAD:
                    return self._head(stop)[start:stop:step]
        return self.decoded()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GGUFStrings) and other.order == self.order:
            return self._n == other._n and self.raw == other.raw
        if isinstance(other, GGUFStrings | list | tuple):
            return len(other) == self._n and self.decoded() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like a list

    def __repr__(self) -> str:
        return f"GGUFStrings({self._n} items)"

    def encoded(self, order: str) -> bytes:
        """The elements as a GGUF file of byte order ``order`` stores them (after the count)."""
        if order == self.order:
            return self.raw
        pack = struct.Struct(order + "Q").pack
        return b"".join(pack(len(b)) + b for b in (s.encode("utf-8") for s in self.decoded()))

    def decoded(self) -> list[str]:
        """Every item as text (decoded once, then kept)."""
        if self._items is None:
            self._items = self._decode()
        return self._items

    def _head(self, k: int) -> list[str]:
        return [self._text(i, item) for i, item in enumerate(self._walk(k))]

    def _walk(self, k: int) -> Iterator[bytes]:
        """The first ``k`` items' bytes (the reader checked every length)."""
        unpack = struct.Struct(self.order + "Q").unpack_from
        raw, pos = self.raw, 0
        for _ in range(k):
            (length,) = unpack(raw, pos)
            yield raw[pos + 8 : pos + 8 + length]
            pos += 8 + length

    def _text(self, index: int, item: bytes) -> str:
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(
                f"GGUF {self.what} item {index:,} is not valid UTF-8 (byte {exc.start})", self.source
            ) from None

    def _decode(self) -> list[str]:
        raw, n = self.raw, self._n
        if self.short and n and raw.count(0) == 7 * n:
            # Length fields are ASCII here, so the whole is valid UTF-8 exactly when every item is.
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                pass  # the slow way below names the item
            else:
                return _field_split(self.order).split(text)[1:]
        items = list(self._walk(n))
        joined = b"\0".join(items)
        if joined.count(0) == max(n - 1, 0):
            try:
                return joined.decode("utf-8").split("\0") if n else []
            except UnicodeDecodeError:
                pass
        return [self._text(i, item) for i, item in enumerate(items)]
