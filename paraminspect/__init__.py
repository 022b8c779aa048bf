"""paraminspect: look inside saved model checkpoints without torch.

The library API is small: :func:`open_checkpoint` returns a :class:`Checkpoint`
whose ``entries`` map dotted names to :class:`TensorRef` or :class:`Value`.
"""

from paraminspect.dtypes import DType
from paraminspect.errors import CheckpointError, LimitExceeded, ParamInspectError, SelectionError, UsageError
from paraminspect.formats import open_checkpoint
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, Opaque, StorageRef, TensorRef, Value

__version__ = "0.1.0"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DType",
    "LimitExceeded",
    "Limits",
    "Opaque",
    "ParamInspectError",
    "SelectionError",
    "StorageRef",
    "TensorRef",
    "UsageError",
    "Value",
    "__version__",
    "open_checkpoint",
]
