"""Convert values to another floating dtype the way ``tensor.to(dtype)`` in torch does.

numpy/ml_dtypes round the same way as torch (to nearest, ties to even) but
differ at the edges for float8: torch saturates float8_e4m3fn to +-448
instead of producing NaN, writes NaN as 0x7F with the sign kept, and takes
the magnitude for the sign-less float8_e8m0fnu. Matching torch bit for bit
keeps a cast through paraminspect indistinguishable from one done in torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from paraminspect.dtypes import DType

if TYPE_CHECKING:
    import numpy as np

_E4M3FN_MAX = 448.0


def cast_array(array: np.ndarray, target: np.dtype[np.generic], dtype: DType) -> np.ndarray:
    """``array`` converted to ``target`` (the numpy form of ``dtype``) with torch's edge cases."""
    import numpy as np

    if array.ndim == 0:  # ufuncs turn 0-d arrays into scalars, which the fix-ups below cannot index
        return cast_array(array.reshape(1), target, dtype).reshape(())
    name = dtype.name
    narrow = dtype.bits <= 16 and not dtype.name.startswith("complex")
    if narrow and array.dtype != np.float32 and array.dtype.kind not in "biu":
        # torch converts to these types from float32 (c10's Half/BFloat16/Float8
        # constructors take a float), so a float64 source is rounded twice there too.
        with np.errstate(over="ignore", invalid="ignore"):
            array = (array.real if array.dtype.kind == "c" else array).astype(np.float32)
    if not name.startswith("float8") or name.endswith("fnuz"):
        with np.errstate(over="ignore", invalid="ignore"):
            return array.astype(target)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "float8_e8m0fnu":
            zero = array == 0
            magnitude: np.ndarray = np.abs(array).astype(target)
            magnitude.view(np.uint8)[zero] = 0
            return magnitude
        source = np.clip(array, -_E4M3FN_MAX, _E4M3FN_MAX) if name == "float8_e4m3fn" else array
        result: np.ndarray = source.astype(target)
    nan = np.isnan(array)
    if nan.any():
        result.view(np.uint8)[nan] = np.where(np.signbit(array[nan]), 0xFF, 0x7F).astype(np.uint8)
    return result
