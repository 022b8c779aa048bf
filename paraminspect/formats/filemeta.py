"""Pieces the readers share to fill ``Checkpoint.file_metadata`` (what ``meta`` shows):
type names of decoded values, and a Lightning ``.ckpt``'s ``hyper_parameters`` (what
``save_hyperparameters()`` recorded) for the pickle-based readers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paraminspect.model import Opaque

HPARAMS_KEY = "hyper_parameters"  # LightningModule.CHECKPOINT_HYPER_PARAMS_KEY


def type_name(value: Any) -> str:
    """The Python type of a decoded value (a placeholder object: its pickled class)."""
    return value.qualname if isinstance(value, Opaque) else type(value).__name__


def hyper_parameters(root: Any) -> dict[str, tuple[str, Any]]:
    """``hyper_parameters`` of a checkpoint whose root has one (a mapping), key -> (type, value);
    empty for anything else."""
    hparams = root.get(HPARAMS_KEY) if isinstance(root, Mapping) else None
    if not isinstance(hparams, Mapping):
        return {}
    return {str(key): (type_name(value), value) for key, value in hparams.items()}
