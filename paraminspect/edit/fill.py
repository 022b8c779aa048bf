"""New values for ``set``: parse a scalar, a JSON list or a ``.npy`` file, and
convert it to the target tensor's dtype without silently losing information."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paraminspect.errors import UsageError
from paraminspect.model import TensorRef

if TYPE_CHECKING:
    import numpy as np

_SCALAR_WORDS = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "true": True, "false": False}


def parse_value(text: str) -> np.ndarray:
    """``0``, ``-1.5``, ``nan``, ``true``; ``[[1, 2], [3, 4]]`` (JSON); or a path to a ``.npy`` file."""
    import numpy as np

    if text.endswith(".npy"):
        return _load_npy(Path(text))
    stripped = text.strip()
    if stripped.lower() in _SCALAR_WORDS:
        return np.asarray(_SCALAR_WORDS[stripped.lower()])
    try:
        parsed: Any = json.loads(stripped, parse_constant=lambda c: _SCALAR_WORDS[c.lower()])
    except (json.JSONDecodeError, KeyError):
        raise UsageError(f"value {text!r} is not a number, a JSON list, or a .npy file") from None
    if isinstance(parsed, str):
        parsed = _SCALAR_WORDS.get(parsed.lower(), parsed)
    try:
        array = np.asarray(parsed)
    except ValueError as exc:
        raise UsageError(f"value is not a rectangular list of numbers ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise UsageError(f"value {text[:40]!r} does not hold only numbers")
    return array


def _load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file of numbers, memory-mapped: its header is checked before any
    data is touched, so a header claiming terabytes costs nothing."""
    import numpy as np

    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:  # 2.0 (3.0 differs only in the header's text encoding, which np.load reads below)
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            data_start = fh.tell()
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise UsageError("no such .npy file", path) from None
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise UsageError(f"cannot read .npy file ({exc})", path) from None
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise UsageError(f".npy file holds {dtype} values; set takes bool, integer or floating-point numbers", path)
    need = math.prod(shape) * dtype.itemsize
    if data_start + need > size:
        raise UsageError(f".npy header claims {need:,} bytes of data but the file holds {size - data_start:,}", path)
    if need == 0:
        return np.zeros(shape, dtype=dtype)
    try:
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read .npy file ({exc})", path) from None


def to_dtype(array: np.ndarray, ref: TensorRef, source: Path, name: str) -> np.ndarray:
    """``array`` broadcast from a scalar (or checked for shape) and converted to ``ref``'s dtype.

    Integer and bool targets refuse values they cannot hold exactly (0.5 into
    int64, 300 into uint8) instead of truncating quietly.
    """
    import numpy as np

    from paraminspect.data.arrays import numpy_dtype
    from paraminspect.data.casting import cast_array

    target = numpy_dtype(ref).newbyteorder("=")
    if array.ndim == 0:
        array = np.full(ref.shape, array)
    elif tuple(array.shape) != ref.shape:
        raise UsageError(f"value has shape {list(array.shape)} but tensor {name!r} has shape {list(ref.shape)}", source)
    if target.kind in "biu" and array.size:
        with np.errstate(invalid="ignore", over="ignore"):
            converted = array.astype(target)
            back = converted.astype(array.dtype)
        if not np.array_equal(back, array):
            raise UsageError(f"tensor {name!r} is {ref.dtype.name}: the value does not fit it exactly", source)
        return np.ascontiguousarray(converted)
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    return np.ascontiguousarray(cast_array(array, target, ref.dtype))
