"""numpy arrays, dtypes and scalars in a pickle, built as inert values (numpy is never called).

Training checkpoints hold numpy data: the Trainer's ``rng_state.pth`` and
accelerate's ``random_states_0.pkl`` keep ``np.random.get_state()``
(``('MT19937', uint32 array, pos, has_gauss, cached)``), optimizers and metrics
keep numpy scalars. numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')``
then BUILD with ``(version, shape, dtype, fortran, raw bytes)``, a dtype as
``dtype('u4', False, True)`` then BUILD with its byte order, and a scalar as
``scalar(dtype, raw bytes)``. Each is checked here and kept as plain data: an
:class:`ndarray` knows its dtype, shape and bytes; a scalar becomes the Python
number its bytes encode. An object array (dtype ``O``) keeps the items the
pickle built (each checked by the unpickler like any other value).
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

from paraminspect.errors import CheckpointError
from paraminspect.model import Sealed, opaque_class

_CODE = re.compile(r"([biufcOUSVMm])(\d*)")
_NUMERIC = {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex"}
_MAX_DIMS = 64  # numpy's own limit (NPY_MAXDIMS)


class NumpyDType(Sealed):
    """A pickled ``numpy.dtype``: its type code and, once built, its byte order."""

    __slots__ = ("_built", "byteorder", "code", "fields", "kind", "size", "subarray")

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        found = _CODE.fullmatch(code) if isinstance(code, str) else None
        if found is None:
            raise CheckpointError(f"numpy.dtype called with an unknown type code {str(code)[:40]!r}")
        self.code = code
        self.kind = found.group(1)
        self.size = int(found.group(2) or 0)
        self.byteorder = "|" if self.size <= 1 else "<"
        self.fields = False
        self.subarray = False
        self._built = False

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if self._built or not isinstance(state, tuple) or not 8 <= len(state) <= 9:
            raise CheckpointError("pickle gives a numpy dtype a state it cannot have")
        order, subarray, names, elsize = state[1], state[2], state[3], state[5]
        if order not in ("<", ">", "|", "=") or type(elsize) is not int:
            raise CheckpointError("pickle gives a numpy dtype a state it cannot have")
        self.byteorder = order
        self.subarray = subarray is not None
        self.fields = names is not None
        if elsize > 0:  # flexible types (U, S, V) carry their size here
            self.size = elsize
        self._built = True

    @property
    def name(self) -> str:
        """numpy's name for numeric types (``uint32``), its ``str`` for the rest (``<U2``, ``|V8``)."""
        if self.kind in _NUMERIC and not self.fields and not self.subarray:
            return "bool" if self.kind == "b" else f"{_NUMERIC[self.kind]}{self.size * 8}"
        if self.kind == "O":
            return "object"
        order = "|" if self.kind in "SV" or self.size <= 1 else ("<" if self.byteorder == "=" else self.byteorder)
        return f"{order}{self.kind}{self.size // 4 if self.kind == 'U' else self.size}"

    @property
    def numpy_code(self) -> str | None:
        """The code ``numpy.dtype`` takes to make this dtype again (None: not a plain one, e.g.
        structured or datetime, whose details are not kept)."""
        if self.fields or self.subarray or self.kind in "OMm":
            return None
        order = "|" if self.size <= 1 or self.kind in "SV" else self.byteorder
        return f"{order}{self.kind}{self.size // 4 if self.kind == 'U' else self.size}"

    def __str__(self) -> str:
        return f"dtype({self.name!r})"

    __repr__ = __str__

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        raise CheckpointError("a numpy dtype read from a file is not written back")


class NdarrayType(Sealed):
    """``numpy.ndarray`` itself, as ``_reconstruct`` receives it (never called)."""

    __slots__ = ()

    def __str__(self) -> str:
        return "<class numpy.ndarray>"


NDARRAY = NdarrayType()


class ndarray(Sealed):
    """A pickled numpy array: dtype, shape, memory order and raw bytes, built once by BUILD.

    ``qualname`` names it in messages (an edit cannot write it back).
    """

    __slots__ = ("_built", "data", "dtype", "fortran", "items", "shape")
    qualname = "numpy.ndarray"

    def __init__(self) -> None:
        self.dtype: NumpyDType | None = None
        self.shape: tuple[int, ...] = (0,)
        self.fortran = False
        self.data = b""
        self.items: list[Any] | None = None  # an object array's items
        self._built = False

    def __setstate__(self, state: Any) -> None:
        if self._built:
            raise CheckpointError("pickle tries to modify a numpy array after it was built")
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, fortran, data)
        if not isinstance(state, tuple) or len(state) != 4:
            raise CheckpointError("pickle gives a numpy array a state it cannot have")
        shape, dtype, fortran, data = state
        if not isinstance(dtype, NumpyDType):
            raise CheckpointError("numpy array dtype is not a numpy dtype")
        if not isinstance(shape, tuple) or len(shape) > _MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
            raise CheckpointError("numpy array shape is not a tuple of non-negative integers")
        if not isinstance(fortran, bool):
            raise CheckpointError("numpy array memory order is not a boolean")
        numel = math.prod(shape)
        if dtype.kind == "O":
            if not isinstance(data, list) or len(data) != numel:
                raise CheckpointError(
                    f"numpy object array holds {_count(data)} items; its shape {list(shape)} needs {numel}"
                )
            self.items = data
        else:
            if not isinstance(data, bytes):
                raise CheckpointError("numpy array data is not bytes")
            if len(data) != numel * dtype.size:
                raise CheckpointError(
                    f"numpy array data is {len(data):,} bytes; {dtype.name} {list(shape)} needs {numel * dtype.size:,}"
                )
            self.data = data
        self.shape, self.dtype, self.fortran, self._built = shape, dtype, fortran, True

    @property
    def dtype_name(self) -> str:
        return "(not built)" if self.dtype is None else self.dtype.name

    def __str__(self) -> str:
        return f"ndarray {self.dtype_name} {list(self.shape)}"

    __repr__ = __str__

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        raise CheckpointError("a numpy array read from a file is not written back")


def _count(items: Any) -> str:
    return f"{len(items):,}" if isinstance(items, list) else "no list of"


def reconstruct(subtype: Any, shape: Any = (0,), code: Any = b"b") -> Any:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: an empty array BUILD fills in.
    Any other subtype (a subclass named by another global) stays a placeholder."""
    if subtype is not NDARRAY:
        return opaque_class("numpy._core.multiarray._reconstruct")(subtype, shape, code)
    return ndarray()


_STRUCT = {("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q", ("u", 1): "B", ("u", 2): "H"}
_STRUCT.update({("u", 4): "I", ("u", 8): "Q", ("f", 2): "e", ("f", 4): "f", ("f", 8): "d", ("b", 1): "?"})
_STRUCT.update({("c", 8): "ff", ("c", 16): "dd"})


def scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, raw bytes)``: the Python number the bytes encode
    (an object scalar is the object itself); other kinds keep their bytes as a string."""
    if not isinstance(dtype, NumpyDType):
        raise CheckpointError("numpy scalar dtype is not a numpy dtype")
    if dtype.kind == "O":
        return data
    if not isinstance(data, bytes) or len(data) != dtype.size:
        raise CheckpointError(f"numpy {dtype.name} scalar data is not {dtype.size} bytes")
    layout = _STRUCT.get((dtype.kind, dtype.size))
    if layout is None:
        return f"numpy {dtype.name} scalar 0x{data.hex()}"
    values = struct.unpack((">" if dtype.byteorder == ">" else "<") + layout, data)
    return complex(*values) if dtype.kind == "c" else values[0]


def dtype(code: Any, align: Any = False, copy: Any = True) -> NumpyDType:
    return NumpyDType(code, align, copy)


def empty_bytes(*args: Any) -> bytes:
    """``builtins.bytes()`` (how protocol 2 writes ``b''``: an empty array's data); nothing else."""
    if args:
        raise CheckpointError("builtins.bytes called with arguments (only bytes() is allowed)")
    return b""


_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
# (module, name) -> stand-in; ndarray is the class object _reconstruct receives.
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, "_reconstruct"): reconstruct for module in _MODULES},
    **{(module, "scalar"): scalar for module in _MODULES},
    ("numpy", "dtype"): dtype,
    ("numpy", "ndarray"): NDARRAY,
}
