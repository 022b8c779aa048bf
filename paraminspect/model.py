"""The one in-memory model every format reader produces and every command uses.

A checkpoint is an ordered mapping from dotted name to an entry: either a
:class:`TensorRef` (metadata and where its bytes live) or a :class:`Value`
(a non-tensor leaf: epoch, hyper-parameter, inert placeholder object).
No tensor bytes are held here; they are read on demand from ``StorageRef``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from paraminspect.dtypes import DType
from paraminspect.inttext import safe_str
from paraminspect.nnmodule import is_module_state, module_children


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

    @property
    def numel(self) -> int:
        return self.nbytes * 8 // self.dtype.bits

    @property
    def identity(self) -> tuple[object, ...]:
        """Where the storage's bytes are: file, absolute first byte, length.

        Not the key: a DCP ``.distcp`` holds many small torch.save zips, each
        calling its storage "0", so keys repeat across unrelated storages.
        """
        return (self.path, self.offset, self.nbytes)


@dataclass(frozen=True)
class TensorRef(Sealed):
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
        return (storage.path, begin, self.dtype, self.shape, self.strides, storage.byteorder, *record)

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
    # The opened input files (paraminspect.source.Source) every read goes through;
    # held here so they stay open exactly as long as the checkpoint is in use.
    sources: tuple[Any, ...] = field(default=(), repr=False, compare=False)

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
MAX_ENTRIES = 1_000_000


def flatten(obj: Any, *, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES) -> Iterator[tuple[str, Entry]]:
    """Walk a decoded object graph and yield (dotted name, entry) leaves in order.

    Mapping keys are joined with ``.``; list items by position. A container
    reached twice (shared, not cyclic) is listed under both names, as torch
    would load it; cycles end in a ``<cycle>`` placeholder. Before walking,
    :func:`measure` sizes the graph without expanding it, so depth and a
    shared-reference "DAG bomb" (2^64 names from a few hundred bytes) fail at
    once with a clear error instead of after minutes and gigabytes. Paths that
    join to one name keep distinct names (:func:`distinct_names`).
    """
    measure(obj, max_depth=max_depth, max_entries=max_entries)
    leaves = [(name, entry) for _, name, entry in _walk(obj, track=False)]
    return zip(distinct_names(name for name, _ in leaves), (entry for _, entry in leaves), strict=True)


GraphPath = tuple[Any, ...]  # () for the root, else (parent's path, position among its children)


def leaf_names(obj: Any) -> dict[GraphPath, str]:
    """Each leaf's path in the graph -> the name :func:`flatten` gives it. A writer
    rebuilding the graph finds every leaf's name by where it is, so two leaves whose
    keys join to one dotted name keep their own names and are never swapped."""
    leaves = list(_walk(obj, track=True))
    paths = [path for path, _, _ in leaves if path is not None]
    return dict(zip(paths, distinct_names(name for _, name, _ in leaves), strict=True))


COLLISION_MARK = "~"


def distinct_names(names: Iterable[str]) -> list[str]:
    """The names with every repeat respelled so each is distinct and addressable.

    Different paths can join to one dotted name (``{"x": {"y": a}, "x.y": b}``,
    keys ``1`` and ``"1"``). The first in file order keeps the name; each later
    one becomes ``name~1``, ``name~2``, ... skipping spellings the file already
    uses, so a name that occurs once is never changed (docs/formats.md).
    """
    given = list(names)
    taken = set(given)
    if len(taken) == len(given):
        return given
    seen: set[str] = set()
    counters: dict[str, int] = {}
    result: list[str] = []
    for name in given:
        spelled = name
        if name in seen:
            n = counters.get(name, 0)
            while spelled in taken:
                n += 1
                spelled = f"{name}{COLLISION_MARK}{n}"
            counters[name] = n
            taken.add(spelled)
        seen.add(spelled)
        result.append(spelled)
    return result


def _walk(obj: Any, *, track: bool) -> Iterator[tuple[GraphPath | None, str, Entry]]:
    active: set[int] = set()  # containers on the current path, to spot cycles
    stack: list[tuple[GraphPath | None, str, Any] | int] = [(() if track else None, "", obj)]
    while stack:
        top = stack.pop()
        if isinstance(top, int):
            active.discard(top)
            continue
        path, name, item = top
        children = _children(item)
        # A pickled nn.Module is named like its state dict: its tensors, no entry of its own.
        module = isinstance(item, Opaque) and is_module_state(getattr(item, "state", None))
        if (isinstance(item, Opaque) and not module) or not children:
            if not module:
                yield path, name, item if isinstance(item, TensorRef) else Value(_leaf_value(item))
            if not children:
                continue
        if id(item) in active:
            yield path, name, Value(opaque_class("<cycle>")())
            continue
        active.add(id(item))
        stack.append(id(item))
        for index in range(len(children) - 1, -1, -1):
            key, child = children[index]
            stack.append(((path, index) if track else None, f"{name}.{key}" if name else key, child))


def measure(obj: Any, *, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES) -> tuple[int, int]:
    """(entries, depth) :func:`flatten` would produce, in time linear in distinct objects.

    Each container is sized once and its size reused wherever it is shared.
    Raises :class:`~paraminspect.errors.LimitExceeded` past either limit.
    """
    from paraminspect.errors import LimitExceeded

    sizes: dict[int, tuple[int, int]] = {}  # id -> (entries, height)
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(obj, False)]
    while stack:
        item, done = stack.pop()
        key = id(item)
        children = _children(item)
        if not children:
            check_value(item)
            continue
        if done:
            on_path.discard(key)
            entries = 1 if isinstance(item, Opaque) else 0
            height = 0
            for _, child in children:
                # Leaves, cycles back to an ancestor, and childless containers count one.
                child_entries, child_height = sizes.get(id(child), (1, 0))
                entries += child_entries
                height = max(height, child_height)
            if entries > max_entries:
                raise LimitExceeded(
                    f"the saved object expands to more than {max_entries:,} entries"
                    " (use --max-entries to raise the limit)"
                )
            sizes[key] = (entries, height + 1)
            continue
        if key in sizes or key in on_path:
            continue  # shared: sized already; or a cycle: one placeholder entry
        if len(on_path) >= max_depth:
            raise LimitExceeded(f"object nesting deeper than {max_depth} levels (use --max-depth to raise the limit)")
        on_path.add(key)
        stack.append((item, True))
        stack.extend((child, False) for _, child in children)
    return sizes.get(id(obj), (1, 0))


# A sequence is expanded into numbered children only when it holds one of these;
# a plain tuple of numbers (``betas: (0.9, 0.999)``, a shape) stays one value.
_BRANCHES = (Mapping, list, tuple, TensorRef, Opaque)


MAX_VALUE_NESTING = 100


def check_value(value: Any) -> None:
    """Refuse a leaf value (or mapping key) nested past :data:`MAX_VALUE_NESTING`.

    Containers holding tensors are walked iteratively, but a leaf is printed
    with ``str()``, which recurses in C: a 100,000-deep frozenset, tuple key or
    ``slice(slice(...))`` would end in RecursionError. Real leaves (betas,
    shapes, a loss history) nest one or two levels.
    """
    from paraminspect.errors import LimitExceeded

    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str | bytes | int | float | bool) or item is None:
            continue
        if depth >= MAX_VALUE_NESTING:
            raise LimitExceeded(f"a value nests deeper than {MAX_VALUE_NESTING} levels")
        if isinstance(item, list | tuple | set | frozenset):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, Mapping):
            stack.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif isinstance(item, slice):
            stack.extend((child, depth + 1) for child in (item.start, item.stop, item.step))


def _key(key: Any) -> str:
    if not isinstance(key, str):
        check_value(key)
    return safe_str(key)  # an int key of 5,000 digits cannot be str()-ed


def _children(item: Any) -> list[tuple[str, Any]] | None:
    if isinstance(item, Mapping):
        return [(_key(k), v) for k, v in item.items()]
    if isinstance(item, list | tuple) and any(isinstance(v, _BRANCHES) for v in item):
        return [(str(i), v) for i, v in enumerate(item)]
    if isinstance(item, Opaque) and isinstance(item.state, Mapping) and item.state:
        module = module_children(item.state, _key)  # torch.save(model): state-dict names
        return module if module is not None else [(_key(k), v) for k, v in item.state.items()]
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
