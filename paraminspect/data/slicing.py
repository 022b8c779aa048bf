"""A basic-index selection of a tensor (``t[2]``, ``t[:, 1:5]``, ``t[..., ::-2]``), reading
only the bytes that hold it.

A selection of a strided tensor is itself a strided view: a storage offset, shape
and strides. Its elements span a byte range; when that span is at most
:data:`SPAN_RATIO` times the result (or under :data:`SMALL_READ_BYTES`), one
read fetches it, else the view is split along its outer dimension into groups of
rows whose spans do fit, down to single contiguous runs. So a row of a 4096x4096
float32 matrix reads its 16 KiB, a column its 4096 elements, never the 64 MiB
matrix, and memory is the result plus one read of at most
:data:`READ_BUFFER_BYTES`. A contiguous run is read straight into the result.
A tensor saved in pieces (DCP chunks) reads only the pieces the selection
overlaps, each the same way.

Index semantics are numpy's basic indexing, checked against numpy by the tests:
integers (negative from the end), slices (negative bounds and steps), ``...``,
``None`` and tuples of them. Advanced indexing (lists, arrays, booleans) is
refused. numpy is imported lazily: the header-only path never pays for it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from paraminspect import interrupts
from paraminspect.data import arrays as tensors
from paraminspect.errors import CheckpointError, SelectionError
from paraminspect.io import source
from paraminspect.model import TensorRef, contiguous_strides

if TYPE_CHECKING:
    import numpy as np

# Read a view's whole byte span at once when it is at most this many times the bytes
# the view's elements take (else split it), ...
SPAN_RATIO = 2
# ... or when the span is this small anyway (one read of a page costs no more than one
# of a single element; coarser would read a sparse column's whole matrix) ...
SMALL_READ_BYTES = 4096
# ... and never more than this in one read buffer (contiguous runs are read straight
# into the result and need none).
READ_BUFFER_BYTES = 8 << 20


class IndexOutOfRange(SelectionError, IndexError):
    """A bad index: out of range, too many indices, a zero step, or not basic indexing.

    Both a :class:`~paraminspect.errors.SelectionError` (one-line CLI error, exit 2)
    and an :class:`IndexError`, which is what numpy and torch raise for most of these.
    """


@dataclass(frozen=True)
class _Axis:
    """What an index selects along one dimension of the tensor: ``length`` elements
    from ``start`` every ``step`` (> 0), reversed afterwards when ``flip``; an integer
    index selects one element and drops the dimension (``keep`` False)."""

    start: int
    step: int
    length: int
    flip: bool = False
    keep: bool = True


def parse_index(index: Any, shape: tuple[int, ...]) -> tuple[list[_Axis], tuple[int, ...]]:
    """Per-dimension selections for ``tensor[index]``, and the result's shape (numpy's)."""
    items = index if isinstance(index, tuple) else (index,)
    ellipses = sum(1 for item in items if item is Ellipsis)
    if ellipses > 1:
        raise IndexOutOfRange("an index can only have a single ellipsis ('...')")
    consuming = sum(1 for item in items if item is not None and item is not Ellipsis)
    if consuming > len(shape):
        raise IndexOutOfRange(
            f"too many indices: the tensor has {len(shape)} dimension(s) but {consuming} were indexed"
        )
    if not ellipses:
        items = (*items, Ellipsis)
    axes: list[_Axis] = []
    result: list[int] = []
    for item in items:
        if item is None:
            result.append(1)
        elif item is Ellipsis:
            for n in shape[len(axes) : len(axes) + len(shape) - consuming]:
                axes.append(_Axis(0, 1, n))
                result.append(n)
        elif isinstance(item, slice):
            axis = _slice_axis(item, shape[len(axes)])
            axes.append(axis)
            result.append(axis.length)
        else:
            axes.append(_int_axis(item, len(axes), shape[len(axes)]))
    return axes, tuple(result)


def _slice_axis(item: slice, n: int) -> _Axis:
    try:
        start, stop, step = item.indices(n)
    except TypeError:
        raise IndexOutOfRange(f"slice bounds must be integers or None, not {item!r}") from None
    except ValueError:  # a zero step
        raise IndexOutOfRange("slice step cannot be zero") from None
    picked = range(start, stop, step)
    if not picked:
        return _Axis(0, 1, 0)
    if step > 0:
        return _Axis(picked[0], step, len(picked))
    return _Axis(picked[-1], -step, len(picked), flip=True)  # read upwards, reverse after


def _int_axis(item: Any, dim: int, n: int) -> _Axis:
    if isinstance(item, bool) or type(item).__name__ == "bool_":
        raise IndexOutOfRange("boolean indices are advanced indexing, which is not supported")
    try:
        position = operator.index(item)
    except TypeError:
        raise IndexOutOfRange(
            f"unsupported index {type(item).__name__}: only integers, slices, '...', None and tuples of them"
        ) from None
    if not -n <= position < n:
        raise IndexOutOfRange(f"index {position} is out of bounds for dimension {dim} with size {n}")
    return _Axis(position % n, 1, 1, keep=False)


def read_slice(ref: TensorRef, index: Any) -> np.ndarray:
    """``tensor[index]`` (numpy basic indexing) as a new native-endian array, reading only
    the bytes (and, for a tensor in pieces, only the pieces) that hold the selection.

    Raises :class:`IndexOutOfRange` for a bad index and
    :class:`~paraminspect.errors.CheckpointError` for an unreadable tensor.
    """
    import numpy as np

    dtype = tensors.numpy_dtype(ref).newbyteorder("=")  # refuse undecodable dtypes first
    axes, result_shape = parse_index(index, ref.shape)
    lengths = tuple(a.length for a in axes)
    try:
        if 0 in lengths:
            return np.zeros(result_shape, dtype=dtype)
        values = _read_chunked(ref, axes) if ref.chunks else _read_plain(ref, axes)
    except MemoryError:
        size = dtype.itemsize * int(np.prod(result_shape, dtype=np.float64))
        needs = f"the selection needs {size:,} bytes in memory, more than is available"
        raise CheckpointError(needs, ref.storage.path) from None
    flips = tuple(slice(None, None, -1) if a.flip else slice(None) for a in axes)
    if any(a.flip for a in axes):
        values = np.ascontiguousarray(values[flips])
    return values.reshape(result_shape)


def _read_plain(ref: TensorRef, axes: list[_Axis]) -> np.ndarray:
    """The selection (upward order, every dimension kept) of a tensor stored in one piece."""
    tensors.ensure_in_file(ref)
    offset = ref.storage_offset + sum(a.start * s for a, s in zip(axes, ref.strides, strict=True))
    shape = tuple(a.length for a in axes)
    strides = tuple(a.step * s for a, s in zip(axes, ref.strides, strict=True))
    return _read_view(ref, offset, shape, strides)


def _read_chunked(ref: TensorRef, axes: list[_Axis]) -> np.ndarray:
    """The selection of a tensor saved in pieces, reading only the pieces it overlaps."""
    import numpy as np

    shape = tuple(a.length for a in axes)
    out = np.empty(shape, dtype=tensors.numpy_dtype(ref).newbyteorder("="))
    covered = np.zeros(shape, dtype=bool)
    for chunk in ref.chunks:
        local: list[_Axis] = []
        place: list[slice] = []
        for axis, begin, n in zip(axes, chunk.offsets, chunk.ref.shape, strict=True):
            # Selected positions are start + j*step; those in [begin, begin+n) are j in [first, last).
            first = max(0, -((axis.start - begin) // axis.step))
            last = min(axis.length, (begin + n - 1 - axis.start) // axis.step + 1)
            if first >= last:
                break
            local.append(_Axis(axis.start + first * axis.step - begin, axis.step, last - first))
            place.append(slice(first, last))
        else:
            out[tuple(place)] = _read_plain(chunk.ref, local)
            covered[tuple(place)] = True
    if not covered.all():
        raise CheckpointError("tensor chunks leave part of the tensor uncovered", ref.storage.path)
    return out


def _read_view(ref: TensorRef, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """Elements of the view (offset, shape, strides: in elements, strides >= 0) as a new array.

    The result is filled through a view of it whose dimensions are in storage order
    (largest stride first, length-1 dimensions dropped), so splitting the outer
    dimension always shrinks the span read, whatever the view's permutation.
    """
    import numpy as np

    out = np.empty(shape, dtype=tensors.numpy_dtype(ref).newbyteorder("="))
    kept = [d for d, n in enumerate(shape) if n != 1]
    order = sorted(range(len(kept)), key=lambda i: -strides[kept[i]])
    target = out.reshape([shape[d] for d in kept]).transpose(order)  # a view: out is contiguous
    begin = ref.storage.offset + offset * ref.dtype.itemsize
    dims = [kept[i] for i in order]
    _fill(_Reader(ref), target, begin, tuple(shape[d] for d in dims), tuple(strides[d] for d in dims))
    return out


def _span_bytes(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> int:
    return (sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1) * itemsize


def _fits(span: int, want: int) -> bool:
    """Whether a view spanning ``span`` bytes for ``want`` bytes of elements is read in one go."""
    return span <= min(READ_BUFFER_BYTES, max(SMALL_READ_BYTES, SPAN_RATIO * want))


def _fill(reader: _Reader, target: np.ndarray, begin: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> None:
    """Fill ``target`` (of ``shape``, dimensions in storage order) with the view at byte ``begin``."""
    if strides == contiguous_strides(shape) and target.flags.c_contiguous:
        reader.run(target, begin)
        return
    if _fits(_span_bytes(shape, strides, reader.itemsize), target.nbytes):
        reader.groups(target, begin, shape, strides, shape[0])  # one read of the whole span
        return
    rows, row_bytes = shape[0], strides[0] * reader.itemsize
    inner_shape, inner_strides = shape[1:], strides[1:]
    inner_span = _span_bytes(inner_shape, inner_strides, reader.itemsize)
    row_want = target.nbytes // rows
    if not _fits(inner_span, row_want):  # even one row is too sparse: descend into each
        for row in range(rows):
            interrupts.check()
            _fill(reader, target[row], begin + row * row_bytes, inner_shape, inner_strides)
        return
    group = 1  # the most rows whose common span still fits one read
    while group < rows and _fits((min(2 * group, rows) - 1) * row_bytes + inner_span, min(2 * group, rows) * row_want):
        group = min(2 * group, rows)
    reader.groups(target, begin, shape, strides, group)


class _Reader:
    """Reads of one tensor's file: whole runs into the result, spans through a buffer."""

    def __init__(self, ref: TensorRef) -> None:
        self.ref = ref
        self.src = source.get(ref.storage.path)
        self.itemsize = ref.dtype.itemsize
        self.native = tensors.numpy_dtype(ref).isnative

    def run(self, target: np.ndarray, begin: int) -> None:
        """A contiguous run of elements straight into ``target`` (C-contiguous)."""
        import numpy as np

        if self.native:
            self.src.readinto(target.reshape(-1).view(np.uint8).data, begin)
        else:
            target[...] = tensors.decode_bytes(self.ref, self.src.pread(begin, target.nbytes)).reshape(target.shape)

    def groups(
        self, target: np.ndarray, begin: int, shape: tuple[int, ...], strides: tuple[int, ...], group: int
    ) -> None:
        """The view's rows, ``group`` at a time: each group's byte span is read into its
        own slot of a buffer holding as many slots as :data:`READ_BUFFER_BYTES` allows
        (one read per group, one decode per buffer: a sparse column costs one small read
        an element, not a Python round each)."""
        itemsize, rows = self.itemsize, shape[0]
        step = group * strides[0] * itemsize  # bytes from one group's first row to the next's
        shape_g = (min(group, rows), *shape[1:])
        span = _span_bytes(shape_g, strides, itemsize)
        full, tail = divmod(rows, shape_g[0])
        per_buffer = max(1, min(full, READ_BUFFER_BYTES // span))
        view = memoryview(bytearray(per_buffer * span))  # one buffer, reused by every batch
        for first in range(0, full, per_buffer):
            interrupts.check()
            count = min(per_buffer, full - first)
            for j in range(count):
                self.src.readinto(view[j * span : (j + 1) * span], begin + (first + j) * step)
            laid = tensors.storage_view(
                tensors.decode_bytes(self.ref, view[: count * span]),
                replace(self.ref, shape=(count, *shape_g), strides=(span // itemsize, *strides)),
            )
            top = first * shape_g[0]
            if shape_g[0] == 1:
                target[top : top + count] = laid[:, 0]
            else:
                for j in range(count):
                    target[top + j * shape_g[0] : top + (j + 1) * shape_g[0]] = laid[j]
        if tail:
            top = full * shape_g[0]
            self.groups(target[top:], begin + full * step, (tail, *shape[1:]), strides, tail)
