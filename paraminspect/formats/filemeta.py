"""Pieces the readers share to fill ``Checkpoint.file_metadata`` (what ``meta`` shows):
type names of decoded values, and a Lightning ``.ckpt``'s ``hyper_parameters`` (what
``save_hyperparameters()`` recorded) for the pickle-based readers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from paraminspect.model import Opaque, TensorRef

HPARAMS_KEY = "hyper_parameters"  # LightningModule.CHECKPOINT_HYPER_PARAMS_KEY


def type_name(value: Any) -> str:
    """The Python type of a decoded value (a placeholder object: its pickled class)."""
    return value.qualname if isinstance(value, Opaque) else type(value).__name__


def plain(value: Any) -> Any:
    """``value`` with every tensor in it shown as text (``tensor float32 [2]``): metadata
    is shown and written as JSON, and a tensor's values are ``get``'s business.
    Recursion is bounded: model.check_value refuses values nested past 100 levels."""
    if isinstance(value, TensorRef):
        return f"tensor {value.dtype.name} [{', '.join(map(str, value.shape))}]"
    if type(value) in (list, tuple):
        return type(value)(plain(v) for v in value)
    if type(value) is dict or isinstance(value, OrderedDict):
        return {k: plain(v) for k, v in value.items()}
    return value


def hyper_parameters(root: Any) -> dict[str, tuple[str, Any]]:
    """``hyper_parameters`` of a checkpoint whose root has one (a mapping), key -> (type, value);
    empty for anything else."""
    hparams = root.get(HPARAMS_KEY) if isinstance(root, Mapping) else None
    if not isinstance(hparams, Mapping):
        return {}
    return {
        str(key): ("Tensor" if isinstance(value, TensorRef) else type_name(value), plain(value))
        for key, value in hparams.items()
    }


def as_file_metadata(facts: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """Facts a reader records about its file (``ir_version``, ``npy_version``...) as the
    key/values ``meta`` shows, each a string."""
    return {key: ("str", value) for key, value in facts.items()}
