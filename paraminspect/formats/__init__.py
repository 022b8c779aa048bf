"""Open any supported checkpoint: sniff the content (never the suffix), dispatch."""

from __future__ import annotations

import os
from pathlib import Path

from paraminspect import limits as _limits
from paraminspect.errors import CheckpointError
from paraminspect.formats.safetensors import looks_like_safetensors, read_safetensors
from paraminspect.formats.torchzip import MAGIC as ZIP_MAGIC
from paraminspect.formats.torchzip import read_torch_zip
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint


def open_checkpoint(path: str | os.PathLike[str], *, limits: Limits | None = None) -> Checkpoint:
    """Read a checkpoint's structure (names, dtypes, shapes, where bytes live).

    No tensor data is read and nothing from the file is imported or executed.
    Raises :class:`~paraminspect.errors.CheckpointError` for anything unreadable.
    ``limits`` defaults to the ones in force (:func:`paraminspect.limits.current`).
    """
    limits = limits or _limits.current()
    with _limits.using(limits):  # so checks deep in the readers (pickleguard) see the same limits
        ckpt = _read(Path(path), limits)
    try:
        _limits.enforce(ckpt, limits)
    except CheckpointError as exc:
        exc.source = exc.source or str(path)
        raise
    return ckpt


def _read(target: Path, limits: Limits) -> Checkpoint:
    try:
        with open(target, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise CheckpointError("file is empty", target)
            head = fh.read(16)
            fh.seek(0)
            try:
                if head.startswith(ZIP_MAGIC):
                    return read_torch_zip(target, fh, size, limits)
                if looks_like_safetensors(head):
                    return read_safetensors(target, fh, size, limits)
            except CheckpointError as exc:
                exc.source = exc.source or str(target)
                raise
    except FileNotFoundError:
        raise CheckpointError("no such file", target) from None
    except IsADirectoryError:
        raise CheckpointError("is a directory, not a checkpoint file", target) from None
    except PermissionError:
        raise CheckpointError("permission denied", target) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read ({exc.strerror or exc})", target) from None
    raise CheckpointError("not a recognised checkpoint (expected a torch.save zip or safetensors file)", target)
