"""Split GGUF models (gguf-split, ``GGUFWriter(split_max_tensors=...)``): files named
``<name>-0000N-of-0000M.gguf`` with ``split.no`` (from 0), ``split.count`` and, in the
first, ``split.tensors.count``, opened as one checkpoint."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from paraminspect.errors import CheckpointError
from paraminspect.model import Checkpoint, Entry

SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def split_files(path: Path, kvs: dict[str, tuple[str, Any]]) -> list[Path] | None:
    """Every file of the split model ``path`` belongs to (in order), or None if it is not split."""
    count = kvs.get("split.count", ("", 1))[1]
    if not isinstance(count, int) or isinstance(count, bool) or count <= 1:
        return None
    found = SPLIT_NAME.match(path.name)
    if found is None or int(found["count"]) != count:
        raise CheckpointError(
            f"is one of {count} GGUF splits (split.count) but is not named <name>-0000N-of-{count:05d}.gguf,"
            " so the other splits cannot be found"
        )
    return [path.with_name(f"{found['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def merge_splits(path: Path, parts: list[Checkpoint]) -> Checkpoint:
    """One checkpoint of all splits: tensors in split order, key/values of the first split."""
    entries: dict[str, Entry] = {}
    for number, part in enumerate(parts):
        where = part.path.name
        if part.format != "gguf":
            raise CheckpointError(f"split {where} is not a GGUF file")
        no = part.file_metadata.get("split.no", ("", None))[1]
        if no != number:
            raise CheckpointError(f"split {where} says it is split.no {no}, not {number}")
        if part.file_metadata.get("split.count") != parts[0].file_metadata.get("split.count"):
            raise CheckpointError(f"split {where} disagrees with the first split about split.count")
        for name, entry in part.entries.items():
            if name in entries:
                raise CheckpointError(f"tensor {name!r} is in more than one split (again in {where})")
            entries[name] = entry
    claimed = parts[0].file_metadata.get("split.tensors.count", ("", None))[1]
    if claimed is not None and claimed != len(entries):
        raise CheckpointError(f"the splits hold {len(entries):,} tensors but split.tensors.count says {claimed:,}")
    return replace(parts[0], path=path, entries=entries)
