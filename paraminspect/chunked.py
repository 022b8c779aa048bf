"""Values of a tensor saved in pieces (DCP chunks from several ranks), reassembled.

Each :class:`~paraminspect.model.Chunk` is an ordinary tensor placed at an
offset in the global shape. ``read_array`` fills the whole tensor and checks
that the pieces cover every element; ``iter_chunks`` assembles slabs of rows
along the first dimension, so memory stays bounded by a slab (at least one row),
not by the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from paraminspect.errors import CheckpointError
from paraminspect.model import Chunk, TensorRef

if TYPE_CHECKING:
    import numpy as np


def _piece_rows(chunk: Chunk, first: int, last: int) -> np.ndarray:
    """Rows [first, last) (along dimension 0, in the piece's own indexing) of one piece."""
    from paraminspect import tensors

    ref = chunk.ref
    if ref.is_contiguous:  # the rows are one contiguous run: read only them
        row = math.prod(ref.shape[1:])
        rows = replace(ref, shape=(last - first, *ref.shape[1:]), storage_offset=ref.storage_offset + first * row)
        return tensors.read_array(rows)
    return tensors.read_array(ref)[first:last]


def read_chunked(ref: TensorRef) -> np.ndarray:
    """The whole tensor, assembled from its pieces."""
    import numpy as np

    from paraminspect import tensors

    out = np.empty(ref.shape, dtype=tensors.numpy_dtype(ref).newbyteorder("="))
    covered = np.zeros(ref.shape, dtype=bool)
    for chunk in ref.chunks:
        out[chunk.slices] = tensors.read_array(chunk.ref)
        covered[chunk.slices] = True
    if not covered.all():
        raise CheckpointError("tensor chunks leave part of the tensor uncovered", ref.storage.path)
    return out


def iter_chunked(ref: TensorRef, chunk_elements: int) -> Iterator[np.ndarray]:
    """The tensor's elements in C order, ``chunk_elements`` at a time."""
    import numpy as np

    from paraminspect import tensors

    if len(ref.shape) == 0:
        yield read_chunked(ref).reshape(1)
        return
    dtype = tensors.numpy_dtype(ref).newbyteorder("=")
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
