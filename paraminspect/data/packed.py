"""Bytes of a storage whose file holds them encoded (:class:`~paraminspect.model.Packing`):
a deflated zip member (``.npz`` written by ``savez_compressed``) or protobuf varints
(ONNX ``int32_data``/``int64_data``/``uint64_data``).

:func:`reader` gives what :mod:`paraminspect.data.arrays` reads bytes through: the
file's :class:`~paraminspect.io.source.Source` for plain storages, else a decoder with
the same ``pread``/``readinto``. A decoder keeps its place, so reading forward (a
whole tensor, chunk after chunk) decodes the run once; reading backward starts
over. Memory stays bounded by one block and the bytes asked for: nothing is
decoded past the end of the request, and a stream that decodes to more (or less)
than its declared size is an error when its end is reached, never a larger buffer.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Protocol

from paraminspect import interrupts
from paraminspect.errors import CheckpointError
from paraminspect.io import source
from paraminspect.model import DEFLATE, VARINT, Packing, StorageRef

if TYPE_CHECKING:
    import numpy as np

BLOCK = 1 << 20  # encoded bytes read (and decoded bytes produced) per step
MAX_VARINT = 10  # bytes: a 64-bit value in 7-bit groups


class ByteReader(Protocol):
    """Positional reads of a storage's bytes, in the coordinates of its ``offset``."""

    def pread(self, offset: int, n: int) -> bytearray: ...

    def readinto(self, view: memoryview, offset: int) -> None: ...


def reader(storage: StorageRef) -> ByteReader:
    """What to read ``storage``'s bytes through (a new decoder per call for encoded ones)."""
    packing = storage.packing
    if packing is None:
        return source.get(storage.path)
    if packing.kind == DEFLATE:
        return _Inflated(storage, packing)
    if packing.kind == VARINT:
        return _Varints(storage, packing)
    raise CheckpointError(f"storage {storage.key!r} is encoded as {packing.kind!r}, which this version cannot decode")


class _Decoder:
    """A decoded stream read forward: ``_produce(n)`` returns its next ``n`` bytes."""

    def __init__(self, storage: StorageRef, packing: Packing) -> None:
        self.storage, self.packing = storage, packing
        self._src = source.get(storage.path)
        self._restart()

    def _restart(self) -> None:
        self._out = 0  # decoded bytes produced so far
        self._in = 0  # encoded bytes consumed so far

    def _fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.storage.key!r}: {what}", self.storage.path)

    def _produce(self, n: int) -> bytes:
        raise NotImplementedError

    def pread(self, offset: int, n: int) -> bytearray:
        buffer = bytearray(n)
        self.readinto(memoryview(buffer), offset)
        return buffer

    def readinto(self, view: memoryview, offset: int) -> None:
        if offset < 0 or offset + len(view) > self.packing.size:
            raise self._fail(f"bytes [{offset}, {offset + len(view)}) lie past its {self.packing.size:,} decoded bytes")
        if offset < self._out:
            self._restart()
        while self._out < offset:  # skip forward, one block at a time
            interrupts.check()
            self._out += len(self._produce(min(BLOCK, offset - self._out)))
        done = 0
        while done < len(view):
            interrupts.check()
            data = self._produce(min(BLOCK, len(view) - done))
            view[done : done + len(data)] = data
            done += len(data)
            self._out += len(data)
        if self._out == self.packing.size:
            self._finish()

    def _finish(self) -> None:
        """Checks once the whole stream is decoded: nothing more, nothing less."""

    def _encoded(self, n: int) -> bytes:
        """Up to ``n`` more encoded bytes (fewer only at the end of the run)."""
        n = min(n, self.packing.length - self._in)
        data = bytes(self._src.pread(self.packing.offset + self._in, n)) if n > 0 else b""
        self._in += len(data)
        return data


class _Inflated(_Decoder):
    """A raw deflate stream (zip method 8), inflated no further than asked."""

    def _restart(self) -> None:
        super()._restart()
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._pending = b""  # encoded bytes given to zlib but not yet consumed
        self._crc = 0

    def _produce(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            if not self._pending:
                if self._inflater.eof:
                    break
                self._pending = self._encoded(BLOCK)
                if not self._pending and not self._inflater.unconsumed_tail:
                    break
            try:
                data = self._inflater.decompress(self._pending, n - len(out))
            except zlib.error as exc:
                raise self._fail(f"compressed data is damaged ({exc})") from None
            self._pending = self._inflater.unconsumed_tail
            out += data
            if not data and not self._pending and self._in >= self.packing.length:
                break
        if len(out) < n:
            raise self._fail(
                f"compressed data ends after {self._out + len(out):,} of its declared {self.packing.size:,} bytes"
            )
        self._crc = zlib.crc32(out, self._crc)
        return out

    def _finish(self) -> None:
        try:
            more = self._inflater.decompress(self._pending, 1) if not self._inflater.eof else b""
            more = more or (self._inflater.decompress(self._encoded(BLOCK), 1) if not self._inflater.eof else b"")
        except zlib.error as exc:
            raise self._fail(f"compressed data is damaged ({exc})") from None
        if more:
            raise self._fail(f"compressed data inflates past its declared size ({self.packing.size:,} bytes)")
        if self.packing.crc is not None and self._crc != self.packing.crc:
            raise self._fail("decompressed data does not match its recorded CRC-32")


class _Varints(_Decoder):
    """Protobuf varints, one per element, as little-endian elements of the storage's width."""

    def _restart(self) -> None:
        super()._restart()
        self._carry = b""  # the bytes of a varint cut by a block boundary
        self._ready = b""  # decoded bytes not yet handed out

    def _produce(self, n: int) -> bytes:
        while len(self._ready) < n:
            block = self._carry + self._encoded(BLOCK)
            if len(block) == len(self._carry):
                raise self._fail(
                    f"packed varints end after {(self._out + len(self._ready)) // self._width:,} values;"
                    f" its dims say {self.packing.size // self._width:,}"
                )
            values, used, longest = decode_varints(block)
            if longest > MAX_VARINT:
                raise self._fail("a packed varint is longer than 10 bytes")
            self._carry = block[used:]
            if len(self._carry) >= MAX_VARINT:
                raise self._fail("a packed varint is longer than 10 bytes")
            if self._in >= self.packing.length and self._carry:
                raise self._fail("the last packed varint is truncated")
            self._ready += self._narrow(values)
            if self._out + len(self._ready) > self.packing.size:
                raise self._fail(
                    f"packed varints hold more values than its dims say ({self.packing.size // self._width:,})"
                )
        out, self._ready = self._ready[:n], self._ready[n:]
        return out

    def _too_many(self) -> str:
        return f"packed varints hold more values than its dims say ({self.packing.size // self._width:,})"

    @property
    def _width(self) -> int:
        return self.storage.dtype.itemsize

    def _narrow(self, values: np.ndarray) -> bytes:
        """The low bits of each 64-bit value, as little-endian elements of the storage's width."""
        import numpy as np

        kind = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(self._width)
        if kind is None:
            raise self._fail(f"varint values cannot fill {self.storage.dtype.name} elements")
        return values.astype(np.dtype(kind).newbyteorder("<")).tobytes()

    def _finish(self) -> None:
        if self._carry or self._ready or self._in < self.packing.length:
            raise self._fail(
                f"packed varints hold more values than its dims say ({self.packing.size // self._width:,})"
            )


def decode_varints(block: bytes) -> tuple[np.ndarray, int, int]:
    """The complete varints at the start of ``block`` as uint64 (the low 64 bits, as
    protobuf keeps them), the bytes they took, and the longest one's length (the
    caller refuses one over 10 bytes)."""
    import numpy as np

    raw = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(raw < 0x80)
    if not ends.size:
        return np.zeros(0, dtype=np.uint64), 0, 0
    used = int(ends[-1]) + 1
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    place = np.arange(used, dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
    groups = (raw[:used] & 0x7F).astype(np.uint64) << (place * np.uint64(7))
    return np.add.reduceat(groups, starts), used, int(lengths.max())
