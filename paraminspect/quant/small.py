"""The few bytes of a tiny descriptor tensor, read with the standard library.

compressed-tensors keeps a weight's logical shape in a tensor (``weight_shape``)
and bitsandbytes its 4-bit state in a uint8 tensor holding JSON. Recognition
reads those bytes (a few dozen) through the file's handle, never numpy; a
descriptor that is too big, strided or past the end of its file is no answer.
"""

from __future__ import annotations

import json
import struct
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


def integers(ref: TensorRef, most: int = 8) -> tuple[int, ...] | None:
    """The values of a small integer tensor (a shape), or None."""
    code = _INT_CODES.get(ref.dtype.name)
    if code is None or ref.numel > most:
        return None
    raw = _raw(ref)
    if raw is None:
        return None
    order = ">" if ref.storage.byteorder == "big" else "<"
    return tuple(struct.unpack(f"{order}{ref.numel}{code}", raw))


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
