"""An allow-list unpickler: the only way paraminspect reads pickle data.

``find_class`` never imports anything. Known torch/collections globals map to
this project's inert stand-ins; every other global becomes an
:func:`~paraminspect.model.opaque_class` placeholder that records what the
pickle tried to build. Storages arrive through ``persistent_load``, which the
format reader supplies, so this module knows nothing about zip or file layout.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

from paraminspect import dtypes
from paraminspect import limits as _limits
from paraminspect.dtypes import DType
from paraminspect.errors import CheckpointError, LimitExceeded, ParamInspectError
from paraminspect.formats.pickle.guard import precheck, read_one
from paraminspect.formats.pickle.numpydata import NUMPY_GLOBALS, empty_bytes
from paraminspect.model import Opaque, Sealed, StorageRef, TensorRef, opaque_class

INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class StorageType(Sealed):
    """Stand-in for ``torch.FloatStorage`` & co; ``dtype`` is None for UntypedStorage."""

    dtype: DType | None


@dataclass(frozen=True)
class TorchDType(Sealed):
    """Stand-in for a pickled ``torch.float16`` (a value, e.g. in an AMP config)."""

    dtype: DType

    def __str__(self) -> str:
        return f"torch.{self.dtype.name}"


@dataclass(frozen=True)
class TorchDevice(Sealed):
    """Stand-in for a pickled ``torch.device``."""

    spec: str

    def __str__(self) -> str:
        return f"device({self.spec!r})"


class TorchSize(Sealed, tuple[int, ...]):
    """Stand-in for a pickled ``torch.Size``: a tuple of ints that remembers it was
    a Size, so a ``.pt`` writer gives a Size back (and a tuple in its place shows)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"torch.Size({list(self)!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return TorchSize, (tuple(self),)


@dataclass(frozen=True)
class TorchLayout(Sealed):
    """Stand-in for a pickled tensor layout (``torch.strided``, ``torch.sparse_coo``)."""

    name: str  # as torch writes it: "torch.strided"

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


@dataclass(frozen=True)
class PathValue(Sealed):
    """Stand-in for a pickled ``pathlib`` path: its class name and the parts it was built from."""

    kind: str  # "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"
    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        flavour = PureWindowsPath if "Windows" in self.kind else PurePosixPath
        return str(flavour(*self.parts))

    def __str__(self) -> str:
        return f"{self.kind}({self.text!r})"

    __repr__ = __str__


def _check_ints(what: str, items: Any, *, minimum: int | None = 0) -> tuple[int, ...]:
    if not isinstance(items, tuple | list) or not all(type(i) is int for i in items):
        raise CheckpointError(f"tensor {what} is not a tuple of integers")
    if minimum is not None and any(i < minimum for i in items):
        raise CheckpointError(f"tensor {what} has a negative entry: {_short(items)}")
    if any(abs(i) > INT64_MAX for i in items):
        raise CheckpointError(f"tensor {what} has an entry that does not fit in 64 bits")
    return tuple(items)


def _short(items: Any) -> str:
    # str() of a huge int raises ValueError past 4300 digits; keep messages short anyway.
    text = ", ".join(str(i) if abs(i) <= INT64_MAX else "<huge>" for i in items)
    return f"({text[:200]})"


def make_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, dtype: DType) -> TensorRef:
    """Build and bounds-check a TensorRef the way torch's ``_rebuild_tensor`` would."""
    if not isinstance(storage, StorageRef):
        raise CheckpointError("tensor storage is not a storage record")
    if not isinstance(dtype, DType):
        raise CheckpointError("tensor dtype is not a known dtype")
    shape = _check_ints("size", size)
    strides = _check_ints("stride", stride)
    if len(strides) != len(shape):
        raise CheckpointError(f"tensor stride {strides} does not match size {shape}")
    if type(offset) is not int or not 0 <= offset <= INT64_MAX:
        raise CheckpointError(f"tensor storage offset {offset!r} is not a non-negative integer")
    ref = TensorRef(dtype, shape, strides, storage, offset, bool(requires_grad))
    if ref.numel:
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        elements = storage.nbytes * 8 // dtype.bits
        if last >= elements:
            raise CheckpointError(
                f"tensor view runs past its storage {storage.key!r} (needs element {last}, storage has {elements})"
            )
    return ref


def _rebuild_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, *_: Any) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise CheckpointError("tensor storage is not a storage record")
    return make_tensor(storage, offset, size, stride, requires_grad, storage.dtype)


def _rebuild_v3(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: Any, *_: Any
) -> TensorRef:
    if not isinstance(dtype, TorchDType):
        raise CheckpointError("tensor dtype argument is not a torch dtype")
    return make_tensor(storage, offset, size, stride, requires_grad, dtype.dtype)


def _rebuild_parameter(data: Any, requires_grad: Any, *_: Any) -> Any:
    if not isinstance(data, TensorRef):
        return data  # an inert placeholder stays one
    return TensorRef(data.dtype, data.shape, data.strides, data.storage, data.storage_offset, bool(requires_grad), True)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # func is whatever find_class returned, i.e. one of our stand-ins or a placeholder.
    rebuilds = (_rebuild_v2, _rebuild_v3, _rebuild_parameter)
    if isinstance(func, StandIn) and func.func in rebuilds and isinstance(args, tuple):
        return func(*args)
    return opaque_class("torch._tensor._rebuild_from_type_v2")(func, new_type, args, state)


def _size(dims: Any = ()) -> TorchSize:
    return TorchSize(_check_ints("torch.Size", dims))


def _device(spec: Any = "cpu", index: Any = None) -> TorchDevice:
    return TorchDevice(f"{spec}:{index}" if index is not None else str(spec))


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("_codecs.encode called with unexpected arguments")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if isinstance(cls, type) and issubclass(cls, Opaque):
        return cls(state)
    raise CheckpointError("copyreg._reconstructor called with a non-placeholder class")


class Record:
    """Stand-in for a plain data class (the dataclasses in a DCP ``.metadata`` file).

    Built by NEWOBJ then BUILD, it only keeps the state it is given; nothing of
    the real class is imported. Each global gets its own subclass (``qualname``).
    """

    qualname = "record"
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def field(self, name: str, default: Any = None) -> Any:
        """A field from a dict state (dataclasses pickle their ``__dict__``)."""
        return self.state.get(name, default) if isinstance(self.state, dict) else default

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


def _record_class(qualname: str) -> type[Record]:
    return type(qualname.rpartition(".")[2], (Record,), {"qualname": qualname})


def _layout(name: Any) -> TorchLayout:
    """``torch.serialization._get_layout('torch.strided')``: keep the name."""
    if not isinstance(name, str):
        raise CheckpointError("tensor layout name is not a string")
    return TorchLayout(name)


def _enum_value(value: Any) -> Any:
    """An enum looked up by value (``_MEM_FORMAT_ENCODING(0)``): keep the value."""
    return value


def _path_of(kind: str) -> Callable[..., PathValue]:
    """A pickled ``pathlib`` path (DCP's ``StorageMeta.checkpoint_id``): its class and parts;
    nothing is built but a pure path from strings (for its text), which touches no file."""

    def build(*parts: Any) -> PathValue:
        if not all(isinstance(part, str) for part in parts):
            raise CheckpointError("pickled path has parts that are not strings")
        return PathValue(kind, parts)

    return build


_DCP_METADATA = "torch.distributed.checkpoint.metadata"
DCP_RECORDS: dict[tuple[str, str], type[Record]] = {
    (module, name): _record_class(f"{module}.{name}")
    for module, names in {
        _DCP_METADATA: (
            "Metadata",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "MetadataIndex",
            "StorageMeta",
        ),
        "torch.distributed.checkpoint.filesystem": ("_StorageInfo",),
    }.items()
    for name in names
}


class StandIn(Sealed):
    """A stand-in function as find_class hands it out. Wrapped because BUILD on
    a bare function could set its ``__defaults__`` for the whole process."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return StandIn, (self.func,)


SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): StandIn(_rebuild_v2),
    ("torch._utils", "_rebuild_tensor_v3"): StandIn(_rebuild_v3),
    ("torch._utils", "_rebuild_parameter"): StandIn(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): StandIn(_rebuild_parameter),
    ("torch._tensor", "_rebuild_from_type_v2"): StandIn(_rebuild_from_type_v2),
    ("torch", "Size"): StandIn(_size),
    ("torch", "device"): StandIn(_device),
    ("torch.storage", "UntypedStorage"): StorageType(None),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): StandIn(_codecs_encode),
    ("copyreg", "_reconstructor"): StandIn(_reconstructor),
    ("torch.serialization", "_get_layout"): StandIn(_layout),
    (_DCP_METADATA, "_MEM_FORMAT_ENCODING"): StandIn(_enum_value),
}
SAFE_GLOBALS.update(DCP_RECORDS)
SAFE_GLOBALS.update(
    {
        ("pathlib", f"{kind}{system}Path"): StandIn(_path_of(f"{kind}{system}Path"))
        for kind in ("", "Pure")
        for system in ("Posix", "Windows")
    }
)
# numpy arrays, dtypes and scalars (RNG states, metrics), built as inert values;
# builtins.bytes only as bytes(), how protocol 2 writes an empty array's b''.
SAFE_GLOBALS.update({key: v if isinstance(v, Sealed) else StandIn(v) for key, v in NUMPY_GLOBALS.items()})
SAFE_GLOBALS[("builtins", "bytes")] = StandIn(empty_bytes)
SAFE_GLOBALS.update({("torch", name): StorageType(d) for name, d in dtypes.BY_STORAGE.items()})
SAFE_GLOBALS.update({("torch", name): TorchDType(d) for name, d in dtypes.BY_NAME.items()})

# Python 2 module names that pickle maps for us unless find_class is overridden.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def canonical(module: str, name: str) -> tuple[str, str]:
    """The (module, name) a global resolves to, as find_class sees it; shared with ``scan``."""
    return _PY2_MODULES.get(module, module), name


class SafeUnpickler(pickle.Unpickler):
    """Unpickle with :data:`SAFE_GLOBALS`; record every global the data names."""

    def __init__(self, data: bytes | BinaryIO, persistent_load: Callable[[Any], Any] | None = None) -> None:
        # A stream is read up to the pickle's STOP and left there (legacy torch.save
        # files are several pickles in a row).
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self._load_persistent = persistent_load
        self.globals_seen: list[str] = []
        self._distinct: set[str] = set()
        self._max_globals = _limits.current().max_globals

    def find_class(self, module: str, name: str) -> Any:
        module, name = canonical(module, name)
        qualname = f"{module}.{name}"
        self.globals_seen.append(qualname)
        self._distinct.add(qualname)
        if len(self._distinct) > self._max_globals:
            # Each unknown global costs a placeholder class: bound how many one file makes.
            raise LimitExceeded(
                f"pickle names more than {self._max_globals:,} distinct globals (use --max-globals to raise it)"
            )
        found = SAFE_GLOBALS.get((module, name))
        return found if found is not None else opaque_class(qualname)

    def persistent_load(self, pid: Any) -> Any:
        if self._load_persistent is None:
            raise CheckpointError("pickle refers to external data (persistent id) where none is expected")
        return self._load_persistent(pid)


def safe_loads(data: bytes | BinaryIO, persistent_load: Callable[[Any], Any] | None = None) -> Any:
    """Unpickle ``data`` without importing or calling anything from it."""
    if not isinstance(data, bytes):  # a stream: take exactly its next pickle
        data = read_one(data)
    precheck(data)
    unpickler = SafeUnpickler(data, persistent_load)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return unpickler.load()
    except ParamInspectError:
        raise
    except RecursionError:
        raise CheckpointError("pickle nests too deeply") from None
    except MemoryError:
        raise CheckpointError("pickle asks for more memory than is available") from None
    except Exception as exc:  # the C unpickler raises many types on malformed data
        raise CheckpointError(f"malformed pickle data ({type(exc).__name__}: {exc})") from None
