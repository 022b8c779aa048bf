"""The leaves of a checkpoint: tensors (metadata and where their bytes live),
storages, pieces of tensors saved in parts, inert placeholders, plain values.

No tensor bytes are held here; they are read on demand from ``StorageRef``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from paraminspect.dtypes import DType


class Sealed:
    """Mixin for frozen dataclasses an unpickler hands out: pickle's BUILD opcode
    writes straight into an object's ``__dict__`` (frozen or not) unless it has
    ``__setstate__``, so a hostile pickle could rewrite a checked tensor's
    offset or a storage's file path after the checks ran. This refuses BUILD;
    ``__reduce__`` rebuilds through the constructor so copy/pickle still work.
    """

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        from paraminspect.errors import CheckpointError

        raise CheckpointError(f"pickle tries to modify a {type(self).__name__} after it was built")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]


_T = TypeVar("_T")


class _computed_once(Generic[_T]):  # lower case: used as a decorator, like property
    """``functools.cached_property`` without its lock (Python < 3.12 takes one on every
    first read: ~1 us each, for 10^5 tensors). Reads of a value derived from frozen
    fields need none: two threads would compute the same value."""

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _computed_once[_T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> _T | _computed_once[_T]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


DEFLATE = "deflate"  # a raw deflate stream (a compressed zip member)
VARINT = "varint"  # protobuf varints, one per element (ONNX int32_data, int64_data, uint64_data)


@dataclass(frozen=True)
class Packing(Sealed):
    """Where a storage's bytes come from when the file does not hold them as they are:
    a run of encoded bytes that :mod:`paraminspect.data.packed` decodes. The storage's
    ``offset`` and ``nbytes`` then count bytes of the decoded stream, not of the file."""

    kind: str  # DEFLATE or VARINT
    offset: int  # absolute first byte of the encoded run in the file
    length: int  # bytes of the encoded run
    size: int  # bytes it must decode to (a zip member's declared size; numel x itemsize for varints)
    crc: int | None = None  # CRC-32 the decoded stream must have (a zip member's), if recorded


@dataclass(frozen=True)
class StorageRef(Sealed):
    """A run of raw bytes inside a file: one torch storage or one safetensors range."""

    path: Path
    key: str  # storage key in the archive, or the tensor name for safetensors
    offset: int  # absolute byte offset of the storage's first byte in ``path``
    nbytes: int
    dtype: DType
    byteorder: str = "little"
    # CRC-32 the file records for exactly these ``nbytes`` (a torch zip record's);
    # lets a writer skip re-reading the source to checksum it. compare=False: not identity.
    recorded_crc: int | None = field(default=None, compare=False)
    packing: Packing | None = None  # the bytes are encoded (compressed, varints): see Packing

    @property
    def numel(self) -> int:
        return self.nbytes * 8 // self.dtype.bits

    @property
    def identity(self) -> tuple[object, ...]:
        """Where the storage's bytes are: file, absolute first byte, length.

        Not the key: a DCP ``.distcp`` holds many small torch.save zips, each
        calling its storage "0", so keys repeat across unrelated storages.
        """
        if self.packing is not None:
            return (self.path, self.offset, self.nbytes, self.packing)
        return (self.path, self.offset, self.nbytes)


@dataclass(frozen=True)
class TensorRef(Sealed):
    """A tensor's metadata: dtype, shape, strides (in elements), and its storage.

    A tensor saved in pieces (a DCP tensor sharded across ranks) has ``chunks``:
    each piece and where it sits in the global shape. Its bytes are then not one
    range: ``storage`` is the first piece's, and values must be read through
    :func:`paraminspect.data.arrays.read_array` / ``iter_chunks``, which assemble them.
    """

    dtype: DType
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    storage: StorageRef
    storage_offset: int = 0  # in elements
    requires_grad: bool = False
    is_parameter: bool = False
    chunks: tuple[Chunk, ...] = ()

    # numel is cached: a 56k-tensor header asks for it ~8 times a tensor (limits, tied
    # groups, byte ranges, sizes). The fields are frozen and BUILD is refused (Sealed), so
    # it cannot go stale; it is not a field (not compared, not pickled). One cached value
    # only: more, added in differing orders, unshare the instances' key-sharing dicts
    # (+0.4 KB a tensor); identity's tuples would stay alive too.
    @_computed_once
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the tensor's elements take, as if stored contiguously."""
        return self.dtype.nbytes(self.numel)

    @property
    def is_contiguous(self) -> bool:
        """One contiguous byte range of its file (never true for a tensor in chunks, nor
        for one whose bytes are encoded: those are read through ``data``, not copied)."""
        return not self.chunks and self.storage.packing is None and self.strides == contiguous_strides(self.shape)

    @property
    def identity(self) -> tuple[object, ...]:
        """Two names with equal identity are one tensor (tied weights): their elements
        are the same bytes of the same file, read the same way (absolute first byte,
        dtype, shape, strides). Everything that decides what reading the tensor
        returns is in it, so a cache keyed by identity never mixes two tensors up.

        An empty tensor has no bytes to share; it is one with another only when both
        name the same storage record (two empty safetensors entries share an offset).
        """
        if self.chunks:
            return ("chunks", self.dtype, self.shape, tuple((c.offsets, c.ref.identity) for c in self.chunks))
        storage = self.storage
        begin = storage.offset + self.storage_offset * self.dtype.itemsize
        record = (storage.key, storage.offset) if self.numel == 0 else ()
        packed = () if storage.packing is None else (storage.packing,)
        return (storage.path, begin, self.dtype, self.shape, self.strides, storage.byteorder, *record, *packed)

    def byte_range(self) -> tuple[int, int]:
        """Absolute [begin, end) of the bytes this tensor's elements span in its file."""
        itemsize = self.dtype.itemsize
        begin = self.storage.offset + self.storage_offset * itemsize
        if self.numel == 0:
            return begin, begin
        if self.dtype.blocked:  # whole blocks, always contiguous (GGUF): the storage's bytes
            return begin, begin + self.storage.nbytes
        if self.dtype.bits % 8:  # packed sub-byte elements (F4, F6, int4), always contiguous
            return begin, begin + self.nbytes  # DType.nbytes: the count the readers check headers with
        last = sum((n - 1) * s for n, s in zip(self.shape, self.strides, strict=True))
        return begin, begin + (last + 1) * itemsize


@dataclass(frozen=True)
class Chunk:
    """One piece of a tensor saved in pieces: the piece, and its offset in each dimension."""

    offsets: tuple[int, ...]
    ref: TensorRef

    @property
    def slices(self) -> tuple[slice, ...]:
        """Where the piece goes in the global tensor (numpy index)."""
        return tuple(slice(o, o + n) for o, n in zip(self.offsets, self.ref.shape, strict=True))


class Opaque:
    """An inert stand-in for a pickled object whose class is not on the allow-list.

    It is shown (``<object argparse.Namespace>``) but never imported or called:
    the unpickler makes a subclass named after the global and records the
    arguments and state the pickle gave it. Tensors inside its state are listed.
    """

    qualname = "object"
    # Class defaults: NEWOBJ without BUILD (an object with an empty __dict__)
    # makes an instance through __new__ alone, so __init__ never runs.
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}  # noqa: RUF012  (never mutated: __init__ assigns a new one)
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # A pickle calling what a placeholder call returned (getattr(...)(...) chains).
        from paraminspect.errors import CheckpointError

        raise CheckpointError(f"pickle calls the result of {self.qualname}, which is not an allowed function")

    def __str__(self) -> str:
        return f"<object {self.qualname}>"

    __repr__ = __str__


_OPAQUE_CLASSES: dict[str, type[Opaque]] = {}
_OPAQUE_CACHE_SIZE = 4096  # classes kept between files; a class is ~1 KB


def opaque_class(qualname: str) -> type[Opaque]:
    """The (cached) inert placeholder class for a global named ``qualname``.

    A class, not an instance, because pickle's NEWOBJ insists on one. The cache
    is bounded so a long-lived process reading many files does not grow with
    every name it meets; placeholders compare by ``qualname``, never by class.
    """
    cls = _OPAQUE_CLASSES.get(qualname)
    if cls is None:
        if len(_OPAQUE_CLASSES) >= _OPAQUE_CACHE_SIZE:
            _OPAQUE_CLASSES.clear()
        cls = type("Opaque", (Opaque,), {"qualname": qualname, "__slots__": ()})
        _OPAQUE_CLASSES[qualname] = cls
    return cls


@dataclass(frozen=True)
class Value:
    """A non-tensor leaf: a number, string, None, empty container, or :class:`Opaque`."""

    value: Any

    @property
    def type_name(self) -> str:
        if isinstance(self.value, Opaque):
            return self.value.qualname
        return type(self.value).__name__


Entry = TensorRef | Value


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides, in elements, for ``shape`` (torch's convention)."""
    strides: list[int] = []
    step = 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))
