"""A diffusers pipeline folder as one checkpoint: one name prefix per component.

A pipeline root holds ``model_index.json`` (``{"unet": ["diffusers",
"UNet2DConditionModel"], "vae": [...], "scheduler": [...], ...}``) and one folder
per component. Components whose folder holds a checkpoint (``unet/``, ``vae/``,
``text_encoder/``) are opened as they would be on their own and their names
prefixed (``unet.conv_in.weight``); the others (scheduler, tokenizer) hold no
weights and are left out. A folder with a ``model_index.json`` that names no
component, or none with weights, is not opened this way (the caller's "which
one?" message stands).
"""

from __future__ import annotations

import json
from pathlib import Path

from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.filemeta import as_file_metadata
from paraminspect.formats.strictjson import unique_keys
from paraminspect.io.files import open_regular
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, Entry

MODEL_INDEX = "model_index.json"


def components(directory: Path, limits: Limits) -> list[str]:
    """The component names ``model_index.json`` lists (entries ``[library, class]``), in its
    order; [] when there is no such file or it names none."""
    index = directory / MODEL_INDEX
    if not index.is_file():
        return []
    with open_regular(index) as fh:
        raw = fh.read(limits.max_header_bytes + 1)
    if len(raw) > limits.max_header_bytes:
        raise LimitExceeded(f"{MODEL_INDEX} is over the {limits.max_header_bytes:,}-byte limit", index)
    try:
        found = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_keys(MODEL_INDEX))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{MODEL_INDEX} is not valid JSON", index) from None
    if not isinstance(found, dict):
        raise CheckpointError(f"{MODEL_INDEX} is not a JSON object", index)
    return [
        name
        for name, value in found.items()
        if not name.startswith("_")
        and "/" not in name
        and name not in (".", "..")
        and isinstance(value, list)
        and len(value) == 2
        and all(v is None or isinstance(v, str) for v in value)
    ]


def merge(directory: Path, parts: list[tuple[str, Checkpoint]]) -> Checkpoint:
    """The components' checkpoints as one, each name under its component's prefix."""
    entries: dict[str, Entry] = {}
    aliases: dict[str, str] = {}
    for prefix, part in parts:
        entries.update((f"{prefix}.{name}", entry) for name, entry in part.entries.items())
        aliases.update((f"{prefix}.{a}", f"{prefix}.{b}") for a, b in part.aliases.items())
    metadata = {"components": ",".join(p for p, _ in parts)}
    metadata.update((f"{prefix}.format", part.format) for prefix, part in parts)
    ordered = all(part.ordered for _, part in parts)
    return Checkpoint(
        directory,
        "diffusers-pipeline",
        entries,
        metadata,
        ordered=ordered,
        aliases=aliases,
        file_metadata=as_file_metadata(metadata),
    )
