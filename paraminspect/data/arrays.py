"""Tensor bytes to numpy arrays: exactly the tensor's byte range, every dtype.

bfloat16 and the float8 types decode through ml_dtypes; GGUF's block-quantized
types through :mod:`paraminspect.data.ggml`. Strided views
(transposes, slices, expands) honour storage offset and strides. Large tensors
can be walked in fixed-size chunks so memory stays bounded by the chunk, and a
tensor saved in pieces (DCP shards from several ranks) is assembled from them.
numpy is imported lazily: header-only commands never pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from paraminspect import interrupts
from paraminspect.data import ggml, packed
from paraminspect.errors import CheckpointError
from paraminspect.io import source
from paraminspect.model import Chunk, TensorRef, contiguous_strides

if TYPE_CHECKING:
    import numpy as np

DEFAULT_CHUNK_ELEMENTS = 1 << 20


def numpy_dtype(ref: TensorRef) -> np.dtype[np.generic]:
    """The numpy dtype that decodes ``ref``'s bytes as stored (with its byte order)."""
    import numpy as np

    if ref.dtype.blocked:  # a GGUF quant type: decoded to float32 (or refused) by data.ggml
        ggml.decoder(ref)
        return np.dtype(np.float32)
    name = ref.dtype.numpy
    if name is None:
        raise CheckpointError(f"decoding {ref.dtype.name} values is not supported", ref.storage.path)
    if name.startswith(("bfloat16", "float8")):
        import ml_dtypes

        dtype: np.dtype[np.generic] = np.dtype(getattr(ml_dtypes, name))
    else:
        dtype = np.dtype(name)
    if ref.storage.byteorder == "big" and dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">")
    return dtype


def _native(array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder == ">":
        return array.byteswap().view(array.dtype.newbyteorder("="))
    return array


def ensure_in_file(ref: TensorRef) -> None:
    """Fail now if the tensor's bytes lie past the end of its file (a truncated
    download), so reads and streamed output never stop half-way with an error."""
    begin, end = ref.byte_range()
    encoded = ref.storage.packing
    if encoded is not None:  # the encoded run must be in the file; its decoder checks the rest
        begin, end = encoded.offset, encoded.offset + encoded.length
    size, shrank = source.size(ref.storage.path)
    if end > size:
        where = f"tensor bytes [{begin}, {end}) lie past the end of the file ({size} bytes)"
        raise CheckpointError(f"{source.TRUNCATED}: {where}" if shrank else f"{where}; truncated?", ref.storage.path)


def _dense(ref: TensorRef) -> bool:
    """The elements lie in C order one after another in their storage (file or decoded stream)."""
    return not ref.chunks and ref.strides == contiguous_strides(ref.shape)


def _read_contiguous(src: packed.ByteReader, ref: TensorRef, first: int, count: int) -> np.ndarray:
    """Elements [first, first+count) of a contiguous tensor, read through its file's handle."""
    import numpy as np

    dtype = numpy_dtype(ref)
    raw = src.pread(ref.byte_range()[0] + first * dtype.itemsize, count * dtype.itemsize)
    return _native(np.frombuffer(raw, dtype=dtype))


def _read_contiguous_into(
    src: packed.ByteReader, ref: TensorRef, first: int, count: int, buffer: bytearray
) -> np.ndarray:
    """:func:`_read_contiguous` into the start of ``buffer`` (a view of it, unless byte-swapped)."""
    import numpy as np

    dtype = numpy_dtype(ref)
    nbytes = count * dtype.itemsize
    src.readinto(memoryview(buffer)[:nbytes], ref.byte_range()[0] + first * dtype.itemsize)
    return _native(np.frombuffer(buffer, dtype=dtype, count=count))


# Tensors whose view spans at most this many bytes are read in one piece; beyond
# it (a column of a huge matrix) only the runs of bytes holding elements are read.
SPAN_READ_BYTES = 32 << 20
# Elements closer than this (bytes) are read in one run rather than two reads.
RUN_GAP_BYTES = 32


def _read_span(ref: TensorRef) -> np.ndarray:
    """A 1-D array of every element in the byte range the tensor's view spans.

    Read into memory, not memory-mapped: a mapped page of a file truncated
    underneath raises SIGBUS, which kills the process; a short read is an error.
    """
    import numpy as np

    dtype = numpy_dtype(ref)
    begin, end = ref.byte_range()
    return np.frombuffer(packed.reader(ref.storage).pread(begin, end - begin), dtype=dtype)


def storage_view(span: np.ndarray, ref: TensorRef) -> np.ndarray:
    """The tensor as a read-only strided view over the array of its span (``ref``'s
    shape and strides, from the span's first element; the slicing layer uses it too)."""
    import numpy as np

    dtype = span.dtype
    byte_strides = tuple(s * dtype.itemsize for s in ref.strides)
    # as_strided rebuilds the array from its interface, which ml_dtypes types do
    # not survive: stride over opaque bytes, then reinterpret.
    raw = span.view(np.dtype((np.void, dtype.itemsize)))
    view = np.lib.stride_tricks.as_strided(raw, shape=ref.shape, strides=byte_strides, writeable=False)
    return view.view(dtype)


def _gather(ref: TensorRef, offsets: np.ndarray) -> np.ndarray:
    """The elements at ``offsets`` (in elements from the tensor's first byte), native-endian,
    reading only the runs of bytes that hold them (one read per run)."""
    import numpy as np

    dtype = numpy_dtype(ref)
    itemsize = dtype.itemsize
    unique, inverse = np.unique(offsets.astype(np.int64) * itemsize, return_inverse=True)
    cut = np.nonzero(np.diff(unique) > itemsize + RUN_GAP_BYTES)[0] + 1
    first = np.concatenate(([0], cut))
    last = np.concatenate((cut - 1, [len(unique) - 1]))
    run_begin, run_end = unique[first], unique[last] + itemsize
    placed = np.concatenate(([0], np.cumsum(run_end - run_begin)))
    buffer = bytearray(int(placed[-1]))
    view = memoryview(buffer)
    src = packed.reader(ref.storage)
    base = ref.byte_range()[0]
    for b, e, at in zip(run_begin.tolist(), run_end.tolist(), placed.tolist(), strict=False):
        src.readinto(view[at : at + e - b], base + b)
    where = unique - np.repeat(run_begin - placed[:-1], last - first + 1)
    values = np.frombuffer(buffer, dtype=dtype)[where // itemsize]
    return _native(values[inverse.reshape(-1)])


def _offsets(ref: TensorRef, first: int, count: int) -> np.ndarray:
    """Element offsets (from the tensor's first byte) of C-order elements [first, first+count)."""
    import numpy as np

    index = np.arange(first, first + count, dtype=np.int64)
    offsets = np.zeros_like(index)
    for position, stride in zip(np.unravel_index(index, ref.shape), ref.strides, strict=True):
        offsets += position * stride
    return offsets


def read_array(ref: TensorRef) -> np.ndarray:
    """The whole tensor as a new native-endian numpy array of its shape."""
    try:
        return _read_array(ref)
    except MemoryError:
        # A zero-stride view can claim terabytes over a one-element storage.
        raise CheckpointError(
            f"tensor needs {ref.nbytes:,} bytes in memory, more than is available", ref.storage.path
        ) from None


def _read_array(ref: TensorRef) -> np.ndarray:
    import numpy as np

    numpy_dtype(ref)  # refuse undecodable dtypes before touching the file
    if ref.numel == 0:
        return np.zeros(ref.shape, dtype=numpy_dtype(ref).newbyteorder("="))
    if ref.chunks:  # saved in pieces (DCP shards): assemble
        return read_chunked(ref)
    ensure_in_file(ref)
    if ref.dtype.blocked:
        return ggml.read_elements(ref, 0, ref.numel).reshape(ref.shape)
    if _dense(ref):
        return _read_contiguous(packed.reader(ref.storage), ref, 0, ref.numel).reshape(ref.shape)
    begin, end = ref.byte_range()
    if end - begin <= max(SPAN_READ_BYTES, 2 * ref.nbytes):
        return _native(np.array(storage_view(_read_span(ref), ref)))
    return np.concatenate(list(iter_chunks(ref))).reshape(ref.shape)


def iter_chunks(ref: TensorRef, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
    """The tensor's elements in C order, as 1-D arrays of exactly ``chunk_elements``
    (the last may be shorter). Memory is bounded by the chunk, not the tensor."""
    yield from _iter_chunks(ref, chunk_elements, None)


def iter_chunks_into(
    ref: TensorRef, buffer: bytearray, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> Iterator[np.ndarray]:
    """:func:`iter_chunks`, but a dense tensor's chunks are read into ``buffer`` (when it
    holds a chunk's bytes) instead of a fresh array each: each item is then a view into
    ``buffer``, valid until the next item, so a caller that keeps a chunk must copy it.
    A reused buffer spares each chunk the zero-filling and page faults of new memory
    (a third of ``stats``' time). Other layouts yield fresh arrays, as iter_chunks."""
    yield from _iter_chunks(ref, chunk_elements, buffer)


def _iter_chunks(ref: TensorRef, chunk_elements: int, buffer: bytearray | None) -> Iterator[np.ndarray]:
    import numpy as np

    numpy_dtype(ref)
    if ref.numel == 0:
        return
    if ref.chunks:
        yield from iter_chunked(ref, chunk_elements)
        return
    ensure_in_file(ref)
    if ref.dtype.blocked:
        yield from ggml.iter_elements(ref, chunk_elements)
        return
    if _dense(ref):
        src = packed.reader(ref.storage)
        itemsize = numpy_dtype(ref).itemsize
        for first in range(0, ref.numel, chunk_elements):
            interrupts.check()  # a worker thread stops at the next chunk after Ctrl-C
            count = min(chunk_elements, ref.numel - first)
            if buffer is None or len(buffer) < count * itemsize:
                yield _read_contiguous(src, ref, first, count)
            else:
                yield _read_contiguous_into(src, ref, first, count, buffer)
        return
    begin, end = ref.byte_range()
    span = _read_span(ref) if end - begin <= SPAN_READ_BYTES else None
    for first in range(0, ref.numel, chunk_elements):
        interrupts.check()
        offsets = _offsets(ref, first, min(chunk_elements, ref.numel - first))
        yield _gather(ref, offsets) if span is None else _native(np.asarray(span[offsets]))


def read_indices(ref: TensorRef, indices: list[list[int]]) -> np.ndarray:
    """The sub-array ``tensor[np.ix_(*indices)]``, touching only the pages holding it.

    ``get`` of a huge tensor shows only its corners; reading those instead of
    the whole tensor keeps it fast and small whatever the tensor's size.
    """
    import numpy as np

    numpy_dtype(ref)
    if ref.numel == 0 or not indices:
        return read_array(ref)
    ensure_in_file(ref)
    grids = np.ix_(*[np.asarray(axis, dtype=np.int64) for axis in indices])
    offsets = sum((grid * stride for grid, stride in zip(grids, ref.strides, strict=True)), np.zeros((), np.int64))
    offsets = np.broadcast_to(offsets, tuple(len(axis) for axis in indices))
    if ref.dtype.blocked:  # contiguous: element offsets are C-order positions
        return ggml.gather(ref, offsets.reshape(-1)).reshape(offsets.shape)
    return _gather(ref, offsets.reshape(-1)).reshape(offsets.shape)


def iter_raw_chunks(ref: TensorRef, buffer: bytearray) -> Iterator[memoryview]:
    """A contiguous tensor's stored bytes, in order, read into ``buffer`` one
    chunk at a time (``len(buffer)`` rounded down to whole elements).

    Each item is a view into ``buffer``, valid until the next item. Equal bytes
    mean equal values, so comparing two tensors needs no decoding at all;
    callers decode (:func:`decode_bytes`) only chunks that differ. Reusing one
    buffer across tensors keeps memory flat and avoids re-faulting fresh pages.
    """
    if not ref.is_contiguous or ref.dtype.blocked:
        raise ValueError("raw chunks need a contiguous tensor of whole elements")
    total = ref.dtype.nbytes(ref.numel)
    if total == 0:
        return
    itemsize = ref.dtype.itemsize
    step = len(buffer) - len(buffer) % itemsize
    if step <= 0:
        raise ValueError("buffer smaller than one element")
    ensure_in_file(ref)
    src = source.get(ref.storage.path)
    position = ref.byte_range()[0]
    view = memoryview(buffer)
    remaining = total
    while remaining:
        want = min(step, remaining)
        src.readinto(view[:want], position)
        position += want
        remaining -= want
        yield view[:want]


def decode_bytes(ref: TensorRef, raw: bytes | bytearray | memoryview) -> np.ndarray:
    """Stored bytes of ``ref`` (whole elements, e.g. a raw chunk) as a native-endian 1-D array."""
    import numpy as np

    return _native(np.frombuffer(raw, dtype=numpy_dtype(ref)))


# Tensors saved in pieces (DCP chunks from several ranks), reassembled. Each
# Chunk is an ordinary tensor placed at an offset in the global shape:
# read_chunked fills the whole tensor and checks that the pieces cover every
# element; iter_chunked assembles slabs of rows along the first dimension, so
# memory stays bounded by a slab (at least one row), not by the tensor.


def _piece_rows(chunk: Chunk, first: int, last: int) -> np.ndarray:
    """Rows [first, last) (along dimension 0, in the piece's own indexing) of one piece."""
    ref = chunk.ref
    if ref.is_contiguous:  # the rows are one contiguous run: read only them
        row = math.prod(ref.shape[1:])
        rows = replace(ref, shape=(last - first, *ref.shape[1:]), storage_offset=ref.storage_offset + first * row)
        return read_array(rows)
    return read_array(ref)[first:last]


def read_chunked(ref: TensorRef) -> np.ndarray:
    """The whole tensor, assembled from its pieces."""
    import numpy as np

    out = np.empty(ref.shape, dtype=numpy_dtype(ref).newbyteorder("="))
    covered = np.zeros(ref.shape, dtype=bool)
    for chunk in ref.chunks:
        out[chunk.slices] = read_array(chunk.ref)
        covered[chunk.slices] = True
    if not covered.all():
        raise CheckpointError("tensor chunks leave part of the tensor uncovered", ref.storage.path)
    return out


def iter_chunked(ref: TensorRef, chunk_elements: int) -> Iterator[np.ndarray]:
    """The tensor's elements in C order, ``chunk_elements`` at a time."""
    import numpy as np

    if len(ref.shape) == 0:
        yield read_chunked(ref).reshape(1)
        return
    dtype = numpy_dtype(ref).newbyteorder("=")
    row = math.prod(ref.shape[1:])
    rows_per_slab = max(1, chunk_elements // max(row, 1))
    pending: list[np.ndarray] = []
    held = 0
    for top in range(0, ref.shape[0], rows_per_slab):
        bottom = min(top + rows_per_slab, ref.shape[0])
        slab = np.empty((bottom - top, *ref.shape[1:]), dtype=dtype)
        covered = np.zeros(slab.shape, dtype=bool)
        for chunk in ref.chunks:
            begin, end = chunk.offsets[0], chunk.offsets[0] + chunk.ref.shape[0]
            lo, hi = max(begin, top), min(end, bottom)
            if lo >= hi:
                continue
            place = (slice(lo - top, hi - top), *chunk.slices[1:])
            slab[place] = _piece_rows(chunk, lo - begin, hi - begin)
            covered[place] = True
        if not covered.all():
            raise CheckpointError("tensor chunks leave part of the tensor uncovered", ref.storage.path)
        pending.append(slab.reshape(-1))
        held += slab.size
        while held >= chunk_elements:
            flat = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield flat[:chunk_elements]
            rest = flat[chunk_elements:]
            pending, held = ([rest] if rest.size else []), rest.size
    if held:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]
