"""The few bytes of a tiny descriptor tensor, read with the standard library.

compressed-tensors keeps a weight's logical shape in a tensor (``weight_shape``)
and bitsandbytes its 4-bit state in a uint8 tensor holding JSON. Recognition
reads those bytes (a few dozen) through the file's handle, never numpy; a
descriptor that is too big, strided or past the end of its file is no answer.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from paraminspect.errors import CheckpointError
from paraminspect.io import source
from paraminspect.model import TensorRef

MAX_DESCRIPTOR_BYTES = 1 << 16
_INT_CODES = {"int8": "b", "uint8": "B", "int16": "h", "int32": "i", "int64": "q", "uint32": "I", "uint64": "Q"}


def _raw(ref: TensorRef) -> bytes | None:
    if not ref.is_contiguous or ref.nbytes > MAX_DESCRIPTOR_BYTES:
        return None
    begin, end = ref.byte_range()
    try:
        opened = source.get(ref.storage.path)
        if end > opened.size:
            return None
        return bytes(opened.pread(begin, end - begin))
    except CheckpointError:
        return None


def _decode(ref: TensorRef, raw: bytes | None) -> tuple[int, ...] | None:
    code = _INT_CODES.get(ref.dtype.name)
    if raw is None or code is None or len(raw) != ref.nbytes:
        return None
    order = ">" if ref.storage.byteorder == "big" else "<"
    return tuple(struct.unpack(f"{order}{ref.numel}{code}", raw))


def _small_int(ref: TensorRef, most: int) -> bool:
    return ref.dtype.name in _INT_CODES and ref.numel <= most and ref.is_contiguous


def integers(ref: TensorRef, most: int = 8) -> tuple[int, ...] | None:
    """The values of a small integer tensor (a shape), or None."""
    return _decode(ref, _raw(ref)) if _small_int(ref, most) else None


def integers_many(refs: list[TensorRef], most: int = 8) -> list[tuple[int, ...] | None]:
    """:func:`integers` of many descriptors, read in few calls: a writer stores tensors
    of one dtype side by side (safetensors sorts by dtype, then name), so the ranges
    of thousands of ``weight_shape`` tensors merge into one read or a few."""
    # Each descriptor's byte range once: sorting and merging asked for it ~6 times a tensor.
    spans = {i: r.byte_range() for i, r in enumerate(refs) if _small_int(r, most)}
    wanted = sorted(spans, key=lambda i: (str(refs[i].storage.path), spans[i][0]))
    out: list[tuple[int, ...] | None] = [None] * len(refs)
    run: list[int] = []
    run_begin = run_end = 0  # the run's first byte, and the end of its last range
    for i in [*wanted, -1]:
        if run and (i < 0 or not _joins(refs[run[0]].storage.path, run_begin, run_end, refs[i], spans[i])):
            _read_run(refs, run, spans, out)
            run = []
        if i >= 0:
            if not run:
                run_begin = spans[i][0]
            run.append(i)
            run_end = spans[i][1]
    return out


_GAP, _RUN = 1 << 16, 4 << 20  # merge ranges less than 64 KiB apart, into reads of at most 4 MiB


def _joins(path: Path, run_begin: int, run_end: int, ref: TensorRef, span: tuple[int, int]) -> bool:
    """``ref`` (its bytes: ``span``) extends the run in ``path`` that starts at ``run_begin``
    and whose last range ends at ``run_end``."""
    begin, end = span
    return ref.storage.path == path and begin - run_end <= _GAP and end - run_begin <= _RUN


def _read_run(
    refs: list[TensorRef], run: list[int], spans: dict[int, tuple[int, int]], out: list[tuple[int, ...] | None]
) -> None:
    begin, end = spans[run[0]][0], max(spans[i][1] for i in run)
    try:
        opened = source.get(refs[run[0]].storage.path)
        if end > opened.size:
            raise CheckpointError("past the end")
        raw = bytes(opened.pread(begin, end - begin))
    except CheckpointError:
        for i in run:  # one at a time: a bad neighbour must not hide the good ones
            out[i] = integers(refs[i])
        return
    for i in run:
        first, last = spans[i]
        out[i] = _decode(refs[i], raw[first - begin : last - begin])


def json_object(ref: TensorRef) -> dict[str, Any] | None:
    """The JSON object a uint8 tensor holds (bitsandbytes' quant_state), or None."""
    if ref.dtype.name not in ("uint8", "int8"):
        return None
    raw = _raw(ref)
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
