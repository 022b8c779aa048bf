"""Open any supported checkpoint: sniff the content (never the suffix), dispatch."""

from __future__ import annotations

import os
from pathlib import Path

from paraminspect.errors import CheckpointError
from paraminspect.limits import DEFAULT_LIMITS, Limits
from paraminspect.model import Checkpoint

ZIP_MAGIC = b"PK\x03\x04"


def _looks_like_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then the JSON header's opening brace."""
    return len(head) >= 9 and head[8:9] == b"{"


def open_checkpoint(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Checkpoint:
    """Read a checkpoint's structure (names, dtypes, shapes, where bytes live).

    No tensor data is read and nothing from the file is imported or executed.
    Raises :class:`~paraminspect.errors.CheckpointError` for anything unreadable.
    """
    target = Path(path)
    try:
        with open(target, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise CheckpointError("file is empty", target)
            head = fh.read(16)
            fh.seek(0)
            # Readers are imported on demand: each run pays only for its own format.
            try:
                if head.startswith(ZIP_MAGIC):
                    from paraminspect.formats.torchzip import read_torch_zip

                    return read_torch_zip(target, fh, size, limits)
                if _looks_like_safetensors(head):
                    from paraminspect.formats.safetensors import read_safetensors

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
