"""``.pt`` writer: the only module that imports torch (lazily, on first use).

The output object is rebuilt from the input's decoded object graph
(``Checkpoint.root``) when there is one, so nesting, key types, non-tensor
leaves (epoch, optimizer state, hyper-parameters) and a state dict's
``_metadata`` survive; otherwise it is a flat ``OrderedDict`` state dict.
Unchanged tensors are views over their original storages, read once each
through the input's file handle (into memory: a memory map would fault with
SIGBUS if the input were truncated mid-save), so storage sharing, views and
ties come out exactly as they went in.
"""

from __future__ import annotations

import collections
import pickle
import sys
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from paraminspect.data.casting import cast_array
from paraminspect.dtypes import DType
from paraminspect.edit.plan import Keep, NewData, Plan, Source, identity
from paraminspect.edit.unknown import describe
from paraminspect.errors import UsageError
from paraminspect.formats.pickle.numpydata import ndarray
from paraminspect.formats.pickle.unpickler import (
    PathValue,
    StorageType,
    TorchDevice,
    TorchDType,
    TorchLayout,
    TorchSize,
)
from paraminspect.inttext import safe_str
from paraminspect.io import source as input_files
from paraminspect.model import GraphPath, Opaque, StorageRef, TensorRef, Value, leaf_names
from paraminspect.model.graph import children_of
from paraminspect.model.nnmodule import is_module_state

if TYPE_CHECKING:
    import torch

INSTALL_HINT = "writing .pt files needs torch: pip install 'paraminspect[torch]'"
_DROP = object()


def import_torch() -> Any:
    """torch, or a clear UsageError telling the user how to get it."""
    try:
        import torch
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return torch


class TorchBuilder:
    """Turns plan sources into torch tensors, sharing storages and tied tensors."""

    def __init__(self, plan: Plan) -> None:
        self.torch = import_torch()
        self.plan = plan
        self._storages: dict[tuple[object, ...], torch.Tensor] = {}
        self._tensors: dict[object, torch.Tensor] = {}

    def torch_dtype(self, name: str, dtype_name: str) -> Any:
        found = getattr(self.torch, dtype_name, None)
        if not isinstance(found, self.torch.dtype):
            raise UsageError(f"tensor {name!r}: torch has no dtype {dtype_name}")
        return found

    def _storage(self, storage: StorageRef, element: DType) -> torch.Tensor:
        # One storage per byte range of the source (views of it share it); an empty
        # one has no bytes to share, so each stays its own (not tied by accident).
        key = storage.identity
        found = self._storages.get(key)
        if found is not None:
            return found
        import numpy as np

        # Read into memory through the handle opened with the checkpoint, not mapped: a
        # map of a file truncated underneath kills the process with SIGBUS mid-save.
        raw = np.frombuffer(input_files.get(storage.path).pread(storage.offset, storage.nbytes), dtype=np.uint8)
        # Untyped storages (uint16, float8...) say nothing of width: use the tensor's.
        width = max(storage.dtype.itemsize, element.itemsize)
        if storage.byteorder != sys.byteorder and width > 1:
            raw = raw.view(f"V{width}")[:, None].view(np.uint8)[:, ::-1].copy().reshape(-1)
        base: torch.Tensor = self.torch.from_numpy(raw)
        if storage.nbytes:
            self._storages[key] = base
        return base

    def tensor(self, name: str, source: Source) -> torch.Tensor:
        key = identity(source)
        found = self._tensors.get(key)
        if found is not None:
            return found
        # Pieces (DCP ranks) are assembled, and encoded bytes (deflated, varints) decoded, below.
        if isinstance(source, Keep) and not source.ref.chunks and source.ref.storage.packing is None:
            ref = source.ref
            dtype = self.torch_dtype(name, ref.dtype.name)
            storage = self._storage(ref.storage, ref.dtype)
            typed = storage.view(dtype) if storage.numel() else self.torch.empty(0, dtype=dtype)
            result = typed.as_strided(ref.shape, ref.strides, ref.storage_offset)
            if ref.is_parameter:
                result = self.torch.nn.Parameter(result, requires_grad=ref.requires_grad)
            elif ref.requires_grad and result.is_floating_point():
                result.requires_grad_(True)
        else:
            dtype = self.torch_dtype(name, source.dtype.name)
            flat = _array(source).reshape(-1).view("uint8")
            # torch cannot view an empty byte tensor as a wider type: make the empty tensor directly.
            empty = not flat.size
            result = self.torch.empty(source.shape, dtype=dtype) if empty else self.torch.from_numpy(flat.copy())
            result = result if empty else result.view(dtype).reshape(source.shape)
        self._tensors[key] = result
        return result

    def checksums(self) -> dict[object, int]:
        """CRC-32 of every tensor built so far (identity -> CRC), two at a time (parallel.py)."""
        from paraminspect.parallel import ordered_map

        return dict(zip(self._tensors, ordered_map(self._crc, list(self._tensors.values())), strict=True))

    def _crc(self, tensor: torch.Tensor) -> int:
        """CRC-32 of the values handed to torch.save, in the verifier's byte order."""
        data = tensor.detach().contiguous().reshape(-1)
        return zlib.crc32(data.view(self.torch.uint8).numpy().data) if data.numel() else 0


def _array(source: Source) -> Any:
    import numpy as np

    from paraminspect.data.arrays import numpy_dtype, read_array

    if isinstance(source, NewData):
        return np.ascontiguousarray(source.array)
    if isinstance(source, Keep):
        return np.ascontiguousarray(read_array(source.ref))
    from dataclasses import replace

    target = numpy_dtype(replace(source.ref, dtype=source.dtype)).newbyteorder("=")
    return np.ascontiguousarray(cast_array(read_array(source.ref), target, source.dtype))


def _torch_value(value: Any, torch: Any, name: str) -> Any:
    """Turn the reader's inert stand-ins back into the torch objects they stand for."""
    if isinstance(value, TorchSize):
        return torch.Size(value)
    if isinstance(value, TorchDType | TorchLayout | StorageType) and _torch_has(_torch_name(value)):
        return getattr(torch, _torch_name(value))
    if isinstance(value, TorchDevice):
        return torch.device(value.spec)
    if isinstance(value, PathValue):
        return _path(value)
    if isinstance(value, ndarray) and unwritable(value) is None:
        return _numpy_array(value, torch, name)
    if isinstance(value, tuple | list | set | frozenset):
        return type(value)(_torch_value(v, torch, name) for v in value)
    if isinstance(value, dict):
        out: Any = type(value)((_torch_value(k, torch, name), _torch_value(v, torch, name)) for k, v in value.items())
        if hasattr(value, "_metadata") and hasattr(out, "__dict__"):
            out._metadata = value._metadata
        return out
    if unwritable(value) is not None:
        raise UsageError(f"{name!r}: cannot write {describe(value)} back")
    return value


_PLAIN = (type(None), bool, int, float, complex, str, bytes, TorchSize, PathValue)


def unwritable(value: Any) -> str | None:
    """What in ``value`` this writer cannot give back as the object it was (None: all of it).

    Plain Python values, containers of them and the reader's stand-ins for torch
    objects (Size, dtype, layout, device, storage class) and pathlib paths are
    rebuilt; placeholders for anything else are not. torch is imported only
    when a torch stand-in needs checking against it.
    """
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > 1_000_000:
            return "a value too large to check"
        if isinstance(item, _PLAIN):
            continue
        if isinstance(item, tuple | list | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(k for pair in item.items() for k in pair)
        elif isinstance(item, slice):
            stack.extend((item.start, item.stop, item.step))
        elif isinstance(item, TorchDType | TorchLayout | StorageType):
            if not _torch_has(_torch_name(item)):
                return f"{_torch_name(item)} (this torch has no such object)"
        elif isinstance(item, TorchDevice):
            if not _valid_device(item.spec):
                return f"device {item.spec!r} (torch does not know it)"
        elif isinstance(item, ndarray) and item.dtype is not None and item.dtype.kind == "O":
            stack.extend(item.items or ())
        elif isinstance(item, ndarray) and (item.dtype is None or item.dtype.numpy_code is None):
            return f"numpy array of dtype {item.dtype_name} (not kept in full)"
        elif not isinstance(item, ndarray):
            return describe(item)
    return None


def _numpy_array(value: ndarray, torch: Any, name: str) -> Any:
    """A numpy array again, from the dtype, shape and bytes the reader checked (no numpy reconstruct)."""
    import numpy as np

    order: Literal["C", "F"] = "F" if value.fortran else "C"
    if value.items is not None:  # an object array: its items, each written back like any value
        out = np.empty(len(value.items), dtype=object)
        out[:] = [_torch_value(v, torch, name) for v in value.items]
        return out.reshape(value.shape, order=order)
    assert value.dtype is not None and value.dtype.numpy_code is not None  # unwritable() said so
    return (
        np.frombuffer(value.data, dtype=np.dtype(value.dtype.numpy_code))
        .reshape(value.shape, order=order)
        .copy(order=order)
    )


def _torch_name(value: TorchDType | TorchLayout | StorageType) -> str:
    """The attribute of the torch module the stand-in names."""
    if isinstance(value, TorchDType):
        return value.dtype.name
    if isinstance(value, TorchLayout):
        return value.name.removeprefix("torch.")
    if value.dtype is None:
        return "UntypedStorage"
    return value.dtype.storage or ""


def _torch_has(attribute: str) -> bool:
    torch = import_torch()
    found = getattr(torch, attribute, None) if attribute.isidentifier() else None
    return isinstance(found, torch.dtype | torch.layout) or (isinstance(found, type) and attribute.endswith("Storage"))


def _valid_device(spec: str) -> bool:
    torch = import_torch()
    try:
        torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


class _Rebuilt:
    """Pickles as ``cls(*args)`` without building it here (a WindowsPath on Linux)."""

    def __init__(self, cls: type, args: tuple[Any, ...]) -> None:
        self.cls, self.args = cls, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.cls, self.args


def _path(value: PathValue) -> Any:
    import pathlib

    cls = getattr(pathlib, value.kind)
    try:
        return cls(*value.parts)
    except NotImplementedError:  # a concrete path of another system cannot be made here
        return _Rebuilt(cls, value.parts)


def build_object(plan: Plan, builder: TorchBuilder) -> Any:
    """The object torch.save will write."""
    new_name = {old: new for new, old in plan.origin.items()}

    def leaf(new: str) -> Any:
        item = plan.items[new]
        if isinstance(item, Value):
            return _torch_value(item.value, builder.torch, new)
        return builder.tensor(new, item)

    root = plan.ckpt.root
    if root is None or not isinstance(root, Mapping | list | tuple):
        return collections.OrderedDict((name, leaf(name)) for name in plan.items)

    names = leaf_names(root)  # by position: keys that join to one dotted name stay apart
    module_states: set[int] = set()  # state dicts built from modules (merged into their parent module's)

    def rebuild(node: Any, path: str, where: GraphPath, moved: list[tuple[str, Any]]) -> Any:
        children = children_of(node)
        # A whole pickled module is written as its state dict (save.py says so).
        module = isinstance(node, Opaque) and is_module_state(node.state)
        if module and not children:
            return _DROP  # a module without state (ReLU): no state-dict entry, as torch has none
        if (isinstance(node, TensorRef | Opaque) and not module) or not children:
            name = names[where]
            new = new_name.get(name)
            if new is None:
                return _DROP
            if new != name:
                moved.append((new, leaf(new)))
                return _DROP
            return leaf(new)
        kept: list[tuple[Any, Any]] = []
        pairs: list[tuple[Any, Any]]
        if module:
            pairs = list(children or [])
        elif isinstance(node, Mapping):
            pairs = list(node.items())
        else:
            pairs = list(enumerate(node))
        prefix = f"{path}." if path else ""
        for index, (key, child) in enumerate(pairs):
            local: list[tuple[str, Any]] = []
            result = rebuild(child, f"{prefix}{safe_str(key)}", (where, index), local)
            if result is not _DROP:
                # A key that is a stand-in (a dtype, a Size) goes back as the torch object.
                plain = isinstance(key, str | int)
                kept.append((key if plain else _torch_value(key, builder.torch, path), result))
            # A renamed leaf lands in the deepest container its new name still fits, at its old position.
            for new, value in local:
                if new.startswith(prefix) and isinstance(node, Mapping):
                    kept.append((new[len(prefix) :], value))
                else:
                    moved.append((new, value))
        if not kept:
            return _DROP
        if module:
            # One flat state dict per outermost module, as Module.state_dict() gives.
            state: collections.OrderedDict[str, Any] = collections.OrderedDict()
            for key, value in kept:
                if id(value) in module_states:
                    state.update((f"{key}.{inner}", v) for inner, v in value.items())
                else:
                    state[key] = value
            module_states.add(id(state))
            return state
        if isinstance(node, Mapping):
            out: Any = (collections.OrderedDict if isinstance(node, collections.OrderedDict) else dict)(kept)
            metadata = getattr(node, "_metadata", None)
            if isinstance(metadata, Mapping):
                out._metadata = _renamed_metadata(metadata, prefix, plan)
            return out
        values = [v for _, v in kept]
        return tuple(values) if isinstance(node, tuple) else values

    moved: list[tuple[str, Any]] = []
    try:
        result = rebuild(root, "", (), moved)
    except RecursionError:
        raise UsageError("object nesting too deep to rebuild") from None
    if moved:
        if result is _DROP:
            result = collections.OrderedDict()
        if not isinstance(result, dict):
            raise UsageError(f"cannot place {moved[0][0]!r}: the file's top level is not a mapping")
        result.update(moved)
    return collections.OrderedDict() if result is _DROP else result


def _renamed_metadata(metadata: Mapping[Any, Any], prefix: str, plan: Plan) -> Any:
    """A state dict's ``_metadata`` (module path -> version) renamed like its tensors were."""
    if plan.rename is None:
        return metadata
    renamed: collections.OrderedDict[Any, Any] = collections.OrderedDict()
    for key, value in metadata.items():
        if not isinstance(key, str):
            renamed.setdefault(key, value)
            continue
        # Rename a stand-in for a tensor inside the module; what precedes it is the
        # module's new path ("" when a stripped wrapper collapses into the root).
        full = plan.rename(f"{prefix}{key}.{_PROBE}" if key else f"{prefix}{_PROBE}")
        if full.startswith(prefix) and full.endswith(_PROBE):
            renamed.setdefault(full[len(prefix) : -len(_PROBE)].removesuffix("."), value)
    return renamed


_PROBE = "\0"  # cannot occur in a real module path


class _Recording:
    """The output file as torch.save sees it, keeping the first exception its writes raised.

    torch's zip writer turns an exception inside ``write`` into a RuntimeError
    of its own ("unexpected pos 704 vs 598"): the disk-full OSError (and a
    Ctrl-C) is kept here and raised instead.
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        try:
            return self.out.write(data)
        except BaseException as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.out.flush()


def write(plan: Plan, out: BinaryIO) -> dict[str, int]:
    """torch.save the plan's object into ``out``; return each output tensor name's CRC-32."""
    builder = TorchBuilder(plan)
    recording = _Recording(out)
    try:
        obj = build_object(plan, builder)
        crcs = builder.checksums()  # of the values handed to torch, checked against the file later
        builder.torch.save(obj, recording)
    except (RuntimeError, TypeError, ValueError, pickle.PicklingError) as exc:  # torch reports its refusals as these
        if recording.error is not None:  # the file's own failure (ENOSPC, EIO, Ctrl-C), not torch's
            raise recording.error from None
        raise UsageError(f"torch could not write the result ({type(exc).__name__}: {exc})") from None
    if recording.error is not None:
        raise recording.error
    return {name: crcs[identity(source)] for name, source in plan.tensors.items()}
