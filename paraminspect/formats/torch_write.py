"""``.pt`` writer: the only module that imports torch (lazily, on first use).

The output object is rebuilt from the input's decoded object graph
(``Checkpoint.root``) when there is one, so nesting, key types, non-tensor
leaves (epoch, optimizer state, hyper-parameters) and a state dict's
``_metadata`` survive; otherwise it is a flat ``OrderedDict`` state dict.
Unchanged tensors are views over memory maps of their original storages
(copy-on-write, nothing read until torch.save streams it), so storage
sharing, views and ties come out exactly as they went in.
"""

from __future__ import annotations

import collections
import pickle
import sys
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from paraminspect.casting import cast_array
from paraminspect.dtypes import DType
from paraminspect.edit import Cast, Keep, NewData, Plan, Source, identity
from paraminspect.errors import UsageError
from paraminspect.inttext import safe_str
from paraminspect.model import Opaque, StorageRef, TensorRef, Value, _children
from paraminspect.safepickle import Record, StorageType, TorchDevice, TorchDType

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
        self._storages: dict[tuple[Path, str], torch.Tensor] = {}
        self._maps: dict[Path, Any] = {}
        self._tensors: dict[object, torch.Tensor] = {}

    def torch_dtype(self, name: str, dtype_name: str) -> Any:
        found = getattr(self.torch, dtype_name, None)
        if not isinstance(found, self.torch.dtype):
            raise UsageError(f"tensor {name!r}: torch has no dtype {dtype_name}")
        return found

    def _storage(self, storage: StorageRef, element: DType) -> torch.Tensor:
        key = (storage.path, storage.key)
        found = self._storages.get(key)
        if found is not None:
            return found
        import numpy as np

        if storage.nbytes == 0:
            raw = np.zeros(0, dtype=np.uint8)
        else:
            # One copy-on-write map per file (each map holds a file descriptor), sliced per storage.
            whole = self._maps.get(storage.path)
            if whole is None:
                whole = self._maps[storage.path] = np.memmap(storage.path, dtype=np.uint8, mode="c")
            raw = whole[storage.offset : storage.offset + storage.nbytes]
        # Untyped storages (uint16, float8...) say nothing of width: use the tensor's.
        width = max(storage.dtype.itemsize, element.itemsize)
        if storage.byteorder != sys.byteorder and width > 1:
            raw = raw.view(f"V{width}")[:, None].view(np.uint8)[:, ::-1].copy().reshape(-1)
        base: torch.Tensor = self.torch.from_numpy(raw)
        self._storages[key] = base
        return base

    def tensor(self, name: str, source: Source) -> torch.Tensor:
        key = identity(source)
        found = self._tensors.get(key)
        if found is not None:
            return found
        if isinstance(source, Keep):
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
            flat = _array(source).reshape(-1).view("uint8")
            result = self.torch.from_numpy(flat.copy()).view(self.torch_dtype(name, source.dtype.name))
            result = result.reshape(source.shape)
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


def _array(source: NewData | Cast) -> Any:
    import numpy as np

    from paraminspect.tensors import numpy_dtype, read_array

    if isinstance(source, NewData):
        return np.ascontiguousarray(source.array)
    from dataclasses import replace

    target = numpy_dtype(replace(source.ref, dtype=source.dtype)).newbyteorder("=")
    return np.ascontiguousarray(cast_array(read_array(source.ref), target, source.dtype))


def _torch_value(value: Any, torch: Any, name: str) -> Any:
    """Turn the reader's inert stand-ins back into the torch objects they stand for."""
    if isinstance(value, TorchDType):
        return getattr(torch, value.dtype.name)
    if isinstance(value, TorchDevice):
        return torch.device(value.spec)
    if isinstance(value, StorageType | Opaque | TensorRef):
        raise UsageError(f"{name!r}: cannot write {type(value).__name__} back")
    if isinstance(value, Record):  # a DCP dataclass, read as its fields only
        raise UsageError(f"{name!r}: cannot write {value.qualname} back (only its fields were read); drop it first")
    if isinstance(value, tuple):
        return tuple(_torch_value(v, torch, name) for v in value)
    if isinstance(value, list):
        return [_torch_value(v, torch, name) for v in value]
    if isinstance(value, dict):
        return type(value)((k, _torch_value(v, torch, name)) for k, v in value.items())
    return value


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

    def rebuild(node: Any, path: str, moved: list[tuple[str, Any]]) -> Any:
        children = _children(node)
        if isinstance(node, TensorRef | Opaque) or not children:
            new = new_name.get(path)
            if new is None:
                return _DROP
            if new != path:
                moved.append((new, leaf(new)))
                return _DROP
            return leaf(new)
        kept: list[tuple[Any, Any]] = []
        keys = list(node.keys()) if isinstance(node, Mapping) else list(range(len(node)))
        prefix = f"{path}." if path else ""
        for key in keys:
            local: list[tuple[str, Any]] = []
            result = rebuild(node[key], f"{prefix}{safe_str(key)}", local)
            if result is not _DROP:
                kept.append((key, result))
            # A renamed leaf lands in the deepest container its new name still fits, at its old position.
            for new, value in local:
                if new.startswith(prefix) and isinstance(node, Mapping):
                    kept.append((new[len(prefix) :], value))
                else:
                    moved.append((new, value))
        if not kept:
            return _DROP
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
        result = rebuild(root, "", moved)
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
