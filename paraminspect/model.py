"""The one in-memory model every format reader produces and every command uses.

A checkpoint is an ordered mapping from dotted name to an entry: either a
:class:`TensorRef` (metadata and where its bytes live) or a :class:`Value`
(a non-tensor leaf: epoch, hyper-parameter, inert placeholder object).
No tensor bytes are held here; they are read on demand from ``StorageRef``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paraminspect.dtypes import DType


@dataclass(frozen=True)
class StorageRef:
    """A run of raw bytes inside a file: one torch storage or one safetensors range."""

    path: Path
    key: str  # storage key in the archive, or the tensor name for safetensors
    offset: int  # absolute byte offset of the storage's first byte in ``path``
    nbytes: int
    dtype: DType
    byteorder: str = "little"

    @property
    def numel(self) -> int:
        return self.nbytes * 8 // self.dtype.bits


@dataclass(frozen=True)
class TensorRef:
    """A tensor's metadata: dtype, shape, strides (in elements), and its storage.

    A tensor saved in pieces (a DCP tensor sharded across ranks) has ``chunks``:
    each piece and where it sits in the global shape. Its bytes are then not one
    range: ``storage`` is the first piece's, and values must be read through
    :func:`paraminspect.tensors.read_array` / ``iter_chunks``, which assemble them.
    """

    dtype: DType
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    storage: StorageRef
    storage_offset: int = 0  # in elements
    requires_grad: bool = False
    is_parameter: bool = False
    chunks: tuple[Chunk, ...] = ()

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the tensor's elements take, as if stored contiguously."""
        return self.dtype.nbytes(self.numel)

    @property
    def is_contiguous(self) -> bool:
        """One contiguous byte range (never true for a tensor in chunks)."""
        return not self.chunks and self.strides == contiguous_strides(self.shape)

    @property
    def identity(self) -> tuple[object, ...]:
        """Two names with equal identity are the same tensor (tied weights)."""
        return (self.storage.path, self.storage.key, self.storage_offset, self.shape, self.strides)

    def byte_range(self) -> tuple[int, int]:
        """Absolute [begin, end) of the bytes this tensor's elements span in its file."""
        itemsize = self.dtype.itemsize
        begin = self.storage.offset + self.storage_offset * itemsize
        if self.numel == 0:
            return begin, begin
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __str__(self) -> str:
        return f"<object {self.qualname}>"

    __repr__ = __str__


_OPAQUE_CLASSES: dict[str, type[Opaque]] = {}


def opaque_class(qualname: str) -> type[Opaque]:
    """The (cached) inert placeholder class for a global named ``qualname``."""
    cls = _OPAQUE_CLASSES.get(qualname)
    if cls is None:
        cls = type("Opaque", (Opaque,), {"qualname": qualname})
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


@dataclass
class Checkpoint:
    """A whole checkpoint file: entries by dotted name, plus file-level facts."""

    path: Path
    format: str  # "torch-zip", "safetensors", ...
    entries: dict[str, Entry]
    metadata: dict[str, str] = field(default_factory=dict)
    # True when the file's own order is meaningful (a torch state dict keeps
    # module order); False when writers reorder (safetensors sorts by dtype).
    ordered: bool = True
    # Tied names recorded by the file itself (safetensors save_model metadata):
    # alias name -> name that holds the data.
    aliases: dict[str, str] = field(default_factory=dict)
    # The decoded object graph (dicts, lists, TensorRef, Opaque, values) for
    # pickle-based formats, kept so writers can rebuild the original structure
    # (key types, nesting) that flat dotted names alone cannot express.
    root: Any = None
    # The dotted key this checkpoint was cut from by :meth:`subtree` ("" = whole file).
    selected: str = ""

    def subtree(self, prefix: str) -> Checkpoint:
        """The part under a dotted ``prefix`` (``state_dict``, ``model.encoder``) as a
        checkpoint of its own, names relative to it, so state-dict commands can run on
        a trainer checkpoint. Raises SelectionError if nothing lies under ``prefix``."""
        from paraminspect.errors import SelectionError

        prefix = prefix.strip(".")
        if not prefix:
            return self
        start = prefix + "."
        entries = {k[len(start) :]: v for k, v in self.entries.items() if k.startswith(start)}
        if not entries:
            hint = "a single value, not a group" if prefix in self.entries else "no such key"
            raise SelectionError(f"--root {prefix!r}: {hint}", self.path)
        aliases = {
            k[len(start) :]: v[len(start) :]
            for k, v in self.aliases.items()
            if k.startswith(start) and v.startswith(start)
        }
        selected = f"{self.selected}.{prefix}" if self.selected else prefix
        return replace(self, entries=entries, aliases=aliases, root=_descend(self.root, prefix), selected=selected)

    @property
    def tensors(self) -> dict[str, TensorRef]:
        return {k: v for k, v in self.entries.items() if isinstance(v, TensorRef)}

    @property
    def values(self) -> dict[str, Value]:
        return {k: v for k, v in self.entries.items() if isinstance(v, Value)}

    def opaque_objects(self) -> dict[str, Opaque]:
        """Every placeholder object, by the name where it sits."""
        return {k: v.value for k, v in self.entries.items() if isinstance(v, Value) and isinstance(v.value, Opaque)}

    def tied_groups(self) -> dict[str, str]:
        """Map each alias name to the first name (in file order) sharing its tensor."""
        first: dict[tuple[object, ...], str] = {}
        tied: dict[str, str] = {}
        for name, ref in self.tensors.items():
            owner = first.setdefault(ref.identity, name)
            if owner != name:
                tied[name] = owner
        for alias, owner in self.aliases.items():
            if alias in self.entries and owner in self.entries:
                tied.setdefault(alias, owner)
        return tied


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides, in elements, for ``shape`` (torch's convention)."""
    strides: list[int] = []
    step = 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


MAX_DEPTH = 1000
MAX_ENTRIES = 10_000_000


def flatten(obj: Any, *, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES) -> Iterator[tuple[str, Entry]]:
    """Walk a decoded object graph and yield (dotted name, entry) leaves in order.

    Mapping keys are joined with ``.``; list items by position. The walk is
    iterative with explicit limits, so hostile depth, cycles and shared-reference
    "DAG bombs" end in a clear error instead of a crash or an endless walk. An
    object placeholder with state yields itself, then what its state holds.
    """
    from paraminspect.errors import LimitExceeded

    count = 0
    active: set[int] = set()  # containers on the current path, to spot cycles
    stack: list[tuple[str, Any, int] | int] = [("", obj, 0)]
    while stack:
        top = stack.pop()
        if isinstance(top, int):
            active.discard(top)
            continue
        name, item, depth = top
        children = _children(item)
        if isinstance(item, Opaque) or not children:
            count += 1
            if count > max_entries:
                raise LimitExceeded(f"more than {max_entries:,} entries (use --max-entries to raise the limit)")
            yield name, item if isinstance(item, TensorRef) else Value(_leaf_value(item))
            if not children:
                continue
        if id(item) in active:
            yield name, Value(opaque_class("<cycle>")())
            continue
        if depth >= max_depth:
            raise LimitExceeded(f"object nesting deeper than {max_depth} levels")
        active.add(id(item))
        stack.append(id(item))
        for key, child in reversed(children):
            stack.append((f"{name}.{key}" if name else key, child, depth + 1))


# A sequence is expanded into numbered children only when it holds one of these;
# a plain tuple of numbers (``betas: (0.9, 0.999)``, a shape) stays one value.
_BRANCHES = (Mapping, list, tuple, TensorRef, Opaque)


def _children(item: Any) -> list[tuple[str, Any]] | None:
    if isinstance(item, Mapping):
        return [(str(k), v) for k, v in item.items()]
    if isinstance(item, list | tuple) and any(isinstance(v, _BRANCHES) for v in item):
        return [(str(i), v) for i, v in enumerate(item)]
    if isinstance(item, Opaque) and isinstance(item.state, Mapping) and item.state:
        return [(str(k), v) for k, v in item.state.items()]
    return None


def _leaf_value(item: Any) -> Any:
    # Only an empty mapping reaches here as a container; show it as {} not as a class.
    if isinstance(item, Mapping) and not isinstance(item, dict):
        return dict(item)
    return item


def _descend(obj: Any, prefix: str) -> Any:
    """The object under a dotted prefix, matching keys that may themselves hold dots;
    None when the graph is absent or the prefix cannot be followed unambiguously."""
    rest = prefix
    while rest and obj is not None:
        children = _children(obj) or []
        matches = [(k, v) for k, v in children if rest == k or rest.startswith(k + ".")]
        if len(matches) != 1:
            return None
        key, obj = matches[0]
        rest = rest[len(key) + 1 :]
    return obj
