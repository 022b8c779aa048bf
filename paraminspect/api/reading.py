"""Reading tensor values from Python: the library face of the tensor-data layer.

:func:`safe_open` is a drop-in for ``safetensors.safe_open`` (``keys()``,
``get_tensor()``, ``get_slice()``, ``metadata()``, a context manager) over every
format :func:`~paraminspect.formats.opening.open_checkpoint` reads: ``.safetensors``,
torch ``.pt``/``.bin`` (zip and legacy), sharded indexes, DCP directories. So code
written for safetensors reads any checkpoint, through paraminspect's allow-list
unpickler: nothing in the file is imported or run. Holders of a
:class:`~paraminspect.model.Checkpoint` use :func:`read_tensor`, :func:`read_slice`,
:func:`iter_chunks` and :func:`to_torch` on its TensorRefs directly.

numpy is imported when values are read, torch only for ``framework="pt"`` or
:func:`to_torch`; neither is needed to list names. See docs/library.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from paraminspect.data import arrays as tensors
from paraminspect.data import slicing
from paraminspect.errors import SelectionError, UsageError
from paraminspect.formats.opening import open_checkpoint
from paraminspect.io import source
from paraminspect.model import Checkpoint, TensorRef

if TYPE_CHECKING:
    import numpy as np
    import torch

    from paraminspect.limits import Limits

DEFAULT_CHUNK_ELEMENTS = tensors.DEFAULT_CHUNK_ELEMENTS
# safetensors' spellings of the two frameworks paraminspect hands out.
FRAMEWORKS = {"np": "numpy", "numpy": "numpy", "pt": "torch", "torch": "torch"}
TORCH_HINT = "framework 'pt' needs torch, which is not installed: pip install 'paraminspect[torch]'"


class NoSuchTensor(SelectionError, KeyError):
    """The checkpoint holds no tensor of that name (``except KeyError`` catches it too).

    safetensors raises its own ``SafetensorError`` here; a KeyError is what a
    mapping lookup raises, and a SelectionError is a one-line error like every other.
    """


def read_tensor(ref: TensorRef) -> np.ndarray:
    """The whole tensor as a new native-endian numpy array (bfloat16/float8 via ml_dtypes)."""
    return tensors.read_array(ref)


def read_slice(ref: TensorRef, index: Any) -> np.ndarray:
    """``tensor[index]`` (numpy basic indexing), reading only the bytes the selection needs."""
    return slicing.read_slice(ref, index)


def iter_chunks(ref: TensorRef, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
    """The elements in C order as 1-D arrays of ``chunk_elements`` (the last may be shorter):
    memory bounded by the chunk, whatever the tensor's size."""
    if chunk_elements < 1:
        raise UsageError(f"chunk_elements must be at least 1, not {chunk_elements}")
    return tensors.iter_chunks(ref, chunk_elements)


def to_torch(ref: TensorRef) -> torch.Tensor:
    """The whole tensor as a CPU torch tensor of its own dtype (needs torch installed)."""
    torch_module = _import_torch()  # before reading: a missing torch fails fast
    return _as_torch(torch_module, read_tensor(ref), ref)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError(TORCH_HINT) from None
    return torch


def _as_torch(torch_module: Any, array: np.ndarray, ref: TensorRef) -> torch.Tensor:
    """``array`` (decoded from ``ref``) as a torch tensor of ``ref``'s dtype, sharing its memory.

    Through the raw bytes: torch.from_numpy knows neither ml_dtypes' bfloat16 nor
    float8, and a byte view reinterpreted as the torch dtype is exact for every type.
    """
    import numpy as np

    dtype = getattr(torch_module, ref.dtype.name, None)  # DType names are torch's
    if not isinstance(dtype, torch_module.dtype):
        raise UsageError(f"torch has no dtype {ref.dtype.name}")
    shape = array.shape
    flat = np.ascontiguousarray(array).reshape(-1)
    if not flat.flags.writeable:  # torch.from_numpy warns on read-only memory
        flat = flat.copy()
    tensor: torch.Tensor = torch_module.from_numpy(flat.view(np.uint8)).view(dtype).reshape(shape)
    return tensor


def safe_open(
    path: str | os.PathLike[str],
    framework: str = "np",
    device: Any = "cpu",
    *,
    limits: Limits | None = None,
) -> CheckpointReader:
    """Open any checkpoint like ``safetensors.safe_open(path, framework, device)``.

    ``framework``: ``"np"``/``"numpy"`` (numpy arrays) or ``"pt"``/``"torch"``
    (torch tensors; needs torch). ``device``: ``"cpu"`` only. Anything else is a
    :class:`~paraminspect.errors.UsageError`; an unreadable file a
    :class:`~paraminspect.errors.CheckpointError`. Only headers are read here.
    """
    kind = FRAMEWORKS.get(framework) if isinstance(framework, str) else None
    if kind is None:
        raise UsageError(f"framework {framework!r} is not supported: use 'np' (numpy) or 'pt' (torch)")
    if str(device) != "cpu":
        raise UsageError(f"device {device!r} is not supported: paraminspect reads to the CPU ('cpu')")
    if kind == "torch":
        _import_torch()
    return CheckpointReader(open_checkpoint(path, limits=limits), kind)


class CheckpointReader:
    """What :func:`safe_open` returns: safetensors' reader methods, plus
    :meth:`tensor_ref`, :meth:`iter_chunks` and :attr:`checkpoint`.

    Names are the checkpoint's dotted names of tensors (a trainer ``.pt``'s
    ``state_dict.layer.weight``); its non-tensor values are not keys.
    """

    def __init__(self, checkpoint: Checkpoint, framework: str = "numpy") -> None:
        if framework not in FRAMEWORKS.values():
            raise UsageError(f"framework {framework!r} is not supported: use 'numpy' or 'torch'")
        self._checkpoint: Checkpoint | None = checkpoint
        self._framework = framework
        source.hold(checkpoint.sources, checkpoint)  # a checkpoint made elsewhere is held too

    @property
    def checkpoint(self) -> Checkpoint:
        """The opened :class:`~paraminspect.model.Checkpoint` (all entries, metadata, format)."""
        if self._checkpoint is None:
            raise UsageError("the reader is closed")
        return self._checkpoint

    def keys(self) -> list[str]:
        """Tensor names: sorted (as safetensors gives them) where the file's order means
        nothing (safetensors, sharded indexes), else in the saved order (a state dict's
        module order, the DCP save order)."""
        names = list(self.checkpoint.tensors)
        return names if self.checkpoint.ordered else sorted(names)

    def offset_keys(self) -> list[str]:
        """Tensor names in the order their bytes lie in the file (safetensors), else saved order."""
        ckpt = self.checkpoint
        if ckpt.format != "safetensors":
            return list(ckpt.tensors)
        return sorted(ckpt.tensors, key=lambda name: (ckpt.tensors[name].storage.offset, name))

    def metadata(self) -> dict[str, str] | None:
        """safetensors' ``__metadata__``, a sharded index's ``metadata``, other file-level
        facts (DCP version); None when there are none."""
        return dict(self.checkpoint.metadata) or None

    def tensor_ref(self, name: str) -> TensorRef:
        """The tensor's header facts (dtype, shape, strides, where its bytes are); reads nothing."""
        ckpt = self.checkpoint
        ref = ckpt.entries.get(name)
        if isinstance(ref, TensorRef):
            return ref
        what = (
            f"{name!r} is a value ({ref.type_name}), not a tensor" if ref is not None else f"no tensor named {name!r}"
        )
        raise NoSuchTensor(what, ckpt.path)

    def get_tensor(self, name: str) -> Any:
        """The whole tensor: a numpy array, or a torch tensor for framework ``pt``."""
        ref = self.tensor_ref(name)
        return self._convert(read_tensor(ref), ref)

    def get_slice(self, name: str) -> TensorSlice:
        """A handle that reads parts of the tensor: ``get_slice(name)[0, 2:5]``."""
        return TensorSlice(self, self.tensor_ref(name))

    def iter_chunks(self, name: str, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Iterator[Any]:
        """The tensor's elements in C order, ``chunk_elements`` at a time (1-D, bounded memory)."""
        ref = self.tensor_ref(name)
        for chunk in iter_chunks(ref, chunk_elements):
            yield self._convert(chunk, ref)

    def _convert(self, array: np.ndarray, ref: TensorRef) -> Any:
        if self._framework == "torch":
            return _as_torch(_import_torch(), array, ref)
        return array

    def close(self) -> None:
        """Close the checkpoint's files (later calls raise UsageError). A file another open
        checkpoint reads too (a second ``safe_open`` of it, a sharded model holding the
        shard) shares its handle, which stays open for that one until it is closed too."""
        ckpt, self._checkpoint = self._checkpoint, None
        if ckpt is not None:
            source.release(ckpt.sources, ckpt)

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._checkpoint is None else f"{self._checkpoint.format}, {self._framework}"
        where = "" if self._checkpoint is None else f"{str(self._checkpoint.path)!r}, "
        return f"<CheckpointReader {where}{state}>"


class TensorSlice:
    """``get_slice``'s handle: shape and dtype from the header; ``[index]`` reads only
    the selected part (numpy basic indexing: ints, slices with any bounds and steps,
    ``...``, ``None``)."""

    def __init__(self, reader: CheckpointReader, ref: TensorRef) -> None:
        self._reader = reader
        self.ref = ref

    def get_shape(self) -> list[int]:
        return list(self.ref.shape)

    def get_dtype(self) -> str:
        """The safetensors dtype code (``F32``, ``BF16``); torch's name for a dtype without one."""
        return self.ref.dtype.safetensors or self.ref.dtype.name

    def __getitem__(self, index: Any) -> Any:
        self._reader.checkpoint  # noqa: B018  (raises if the reader was closed)
        return self._reader._convert(read_slice(self.ref, index), self.ref)

    def __repr__(self) -> str:
        return f"<TensorSlice {self.get_dtype()} {self.get_shape()}>"
