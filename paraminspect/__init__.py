"""paraminspect: look inside saved model checkpoints without torch.

The library API is small: :func:`open_checkpoint` returns a :class:`Checkpoint`
whose ``entries`` map dotted names to :class:`TensorRef` or :class:`Value`;
:func:`read_tensor`, :func:`read_slice`, :func:`iter_chunks` and :func:`to_torch`
read a TensorRef's values; :func:`safe_open` is ``safetensors.safe_open`` over
every format (docs/library.md).

The names below are imported on first use (PEP 562), so ``import
paraminspect.cli`` costs nothing before the console script has installed its
signal handlers (a Ctrl-C during start-up is then a clean exit 130).
"""

from __future__ import annotations

from paraminspect.lazy import attributes

TYPE_CHECKING = False  # not typing's: importing typing would cost start-up time
if TYPE_CHECKING:
    from paraminspect.api.reading import (
        CheckpointReader,
        TensorSlice,
        iter_chunks,
        read_slice,
        read_tensor,
        safe_open,
        to_torch,
    )
    from paraminspect.dtypes import DType
    from paraminspect.errors import CheckpointError, LimitExceeded, ParamInspectError, SelectionError, UsageError
    from paraminspect.formats.opening import open_checkpoint
    from paraminspect.limits import Limits
    from paraminspect.model import Checkpoint, Opaque, StorageRef, TensorRef, Value

__version__ = "0.1.0"

_HOMES = {
    "DType": "dtypes",
    "CheckpointError": "errors",
    "LimitExceeded": "errors",
    "ParamInspectError": "errors",
    "SelectionError": "errors",
    "UsageError": "errors",
    "open_checkpoint": "formats.opening",
    "Limits": "limits",
    "Checkpoint": "model",
    "Opaque": "model",
    "StorageRef": "model",
    "TensorRef": "model",
    "Value": "model",
    "CheckpointReader": "api.reading",
    "TensorSlice": "api.reading",
    "iter_chunks": "api.reading",
    "read_slice": "api.reading",
    "read_tensor": "api.reading",
    "safe_open": "api.reading",
    "to_torch": "api.reading",
}

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointReader",
    "DType",
    "LimitExceeded",
    "Limits",
    "Opaque",
    "ParamInspectError",
    "SelectionError",
    "StorageRef",
    "TensorRef",
    "TensorSlice",
    "UsageError",
    "Value",
    "__version__",
    "iter_chunks",
    "open_checkpoint",
    "read_slice",
    "read_tensor",
    "safe_open",
    "to_torch",
]


if not TYPE_CHECKING:  # mypy sees the imports above; an unknown name stays an error to it
    __getattr__ = attributes(globals(), {name: f"paraminspect.{home}" for name, home in _HOMES.items()})


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
