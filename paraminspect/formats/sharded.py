"""Sharded checkpoints: ``model.safetensors.index.json`` / ``pytorch_model.bin.index.json``.

The index maps each tensor name to the shard file holding it. Every shard is
opened header-only by the ordinary file readers, and the tensors are merged
into one :class:`Checkpoint` (``StorageRef.path`` says which shard holds each).
Shard names come from an untrusted file, so they must stay inside the index's
directory: absolute paths, ``..`` and symlinks leading out are refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.strictjson import unique_keys
from paraminspect.io.files import hub_blobs, require_regular
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, Entry

Opener = Callable[[Path, Limits], Checkpoint]

# Checkpoint.problems kinds: a name the index lists that its shard lacks; a tensor a
# shard holds that the index does not list for that shard; index metadata that
# disagrees with the shards.
MISSING_FROM_SHARD = "missing_from_shard"
NOT_IN_INDEX = "not_in_index"
TOTAL_SIZE = "total_size"
TOTAL_PARAMETERS = "total_parameters"
Problem = tuple[str, str, str, str]  # kind, name, expected, actual


def looks_like_index(head: bytes) -> bool:
    """JSON text starting with an object (a safetensors file's first bytes are its length)."""
    return head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"{"


def parse_index(raw: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """The index's weight map (name -> shard file) and its metadata, as strings."""
    weight_map, meta = index_document(raw)
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    return weight_map, metadata


def index_document(raw: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """The index's weight map (name -> shard file) and its ``metadata`` object as parsed."""
    try:
        doc = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=unique_keys("index"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"index is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"index is not valid JSON ({exc.msg} at char {exc.pos})") from None
    except (RecursionError, ValueError) as exc:
        raise CheckpointError(f"index is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or "weight_map" not in doc:
        raise CheckpointError("JSON file without a 'weight_map': not a sharded checkpoint index")
    weight_map = doc["weight_map"]
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError("index 'weight_map' must map tensor names to shard file names")
    if not weight_map:
        raise CheckpointError("index 'weight_map' is empty")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise CheckpointError("index 'metadata' is not an object")
    return weight_map, meta


# The JSON type of each value the index's "metadata" holds, as ``meta`` shows it.
_JSON_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict", type(None): "null"}


def json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def shard_path(directory: Path, name: str) -> Path:
    """Resolve a shard name from the index, refusing anything that leaves ``directory``."""
    if (
        not name
        or "\x00" in name
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
        or ".." in PurePosixPath(name.replace("\\", "/")).parts
    ):
        raise CheckpointError(f"shard file name {name!r} leaves the checkpoint's directory; refused")
    candidate = directory / name
    try:
        inside = candidate.resolve().is_relative_to(directory.resolve())
        if not inside and (blobs := hub_blobs(directory)) is not None:
            inside = candidate.resolve().is_relative_to(blobs)  # a Hub cache snapshot links into its blobs
    except (OSError, RuntimeError):  # symlink loops
        inside = False
    if not inside:
        raise CheckpointError(f"shard file {name!r} resolves outside the checkpoint's directory; refused")
    return candidate


def read_index_bytes(fh: BinaryIO, size: int, limits: Limits) -> bytes:
    """The whole index file, if it is within the header-size limit."""
    if size > limits.max_header_bytes:
        raise LimitExceeded(f"index file is {size:,} bytes, over the {limits.max_header_bytes:,}-byte limit")
    return fh.read()


def group_by_shard(weight_map: dict[str, str], limits: Limits) -> dict[str, list[str]]:
    """Shard file name -> the tensor names the index puts in it, in first-use order."""
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    if len(weight_map) > limits.max_entries:
        raise LimitExceeded(f"index lists more than {limits.max_entries:,} tensors")
    return by_shard


def locate_shard(index: Path, shard: str, names: list[str]) -> Path:
    """A shard's file, inside the index's directory and existing (shared with ``scan``)."""
    file = shard_path(index.parent, shard)
    if file.exists() and not file.is_file():
        require_regular(file)  # a FIFO or device: refused by name, never opened blocking
    if not file.is_file():
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        raise CheckpointError(f"shard {shard!r} (holding {names[0]!r}{more}) does not exist", index)
    return file


def read_index(path: Path, raw: bytes, limits: Limits, open_shard: Opener) -> Checkpoint:
    """Merge the shards an index names into one checkpoint (headers only).

    A name the index lists but its shard lacks, and a tensor a shard holds that the
    index does not list for it, do not stop the read: they are left out (or, for a
    tensor no other shard is listed for, kept) and recorded in ``problems`` for
    ``check`` to report.
    """
    weight_map, meta = index_document(raw)
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    by_shard = group_by_shard(weight_map, limits)

    entries: dict[str, Entry] = {}
    extras: dict[str, Entry] = {}
    aliases: dict[str, str] = {}
    formats: set[str] = set()
    opened: dict[str, Checkpoint] = {}
    problems: list[Problem] = []
    for shard, names in by_shard.items():
        file = locate_shard(path, shard, names)
        try:
            part = open_shard(file, limits)
        except CheckpointError as exc:
            raise CheckpointError(f"shard {shard!r}: {exc.message}", path) from None
        opened[shard] = part
        formats.add(part.format)
        aliases.update(part.aliases)
        problems.extend((MISSING_FROM_SHARD, n, f"in {shard}", "absent") for n in names if n not in part.entries)
        listed = set(names)
        for name, entry in part.entries.items():
            if name in listed:
                continue
            if name not in part.aliases:  # a tied name the shard records is not a tensor of its own
                listed_for = f"listed for {weight_map[name]}" if name in weight_map else "not listed"
                problems.append((NOT_IN_INDEX, name, listed_for, f"in {shard}"))
            if name not in weight_map:
                extras[name] = entry
    for name, shard in weight_map.items():
        if name in opened[shard].entries:
            entries[name] = opened[shard].entries[name]
    entries.update((k, v) for k, v in extras.items() if k not in entries)  # in the shards, not in the index
    problems.extend(totals_problems(meta, list(opened.values())))
    kind = formats.pop() if len(formats) == 1 else "mixed"
    metadata["shards"] = str(len(by_shard))
    if extras:
        metadata["unindexed_tensors"] = str(len(extras))
    return Checkpoint(
        path=path,
        format=f"sharded-{kind}",
        entries=entries,
        metadata=metadata,
        file_metadata={str(k): (json_type(v), v) for k, v in meta.items()},
        ordered=False,
        aliases={k: v for k, v in aliases.items() if k in entries and v in entries},
        problems=problems,
    )


def totals_problems(meta: dict[str, Any], shards: list[Checkpoint]) -> list[Problem]:
    """The index's ``total_size`` and ``total_parameters`` held to what the shards hold.

    transformers (through huggingface_hub's shard splitter) writes ``total_size`` as
    the bytes of every distinct tensor storage it shards, and ``total_parameters`` as
    ``model.num_parameters()``. A tensor stored under two names counts once. The
    shards also hold buffers, which are not parameters, so ``total_parameters`` may
    be smaller than their element count but never larger (bitsandbytes 4-bit shards,
    counted unpacked by transformers, are not held to it).
    """
    seen: set[tuple[object, ...]] = set()
    nbytes = numel = 0
    packed = False
    for part in shards:
        for name, ref in part.tensors.items():
            packed = packed or ".quant_state.bitsandbytes__" in name
            if name in part.aliases or ref.identity in seen:
                continue
            seen.add(ref.identity)
            nbytes += ref.nbytes
            numel += ref.numel
    problems: list[Problem] = []
    size = _count(meta, TOTAL_SIZE)
    if size is not None and size != nbytes:
        problems.append((TOTAL_SIZE, TOTAL_SIZE, _text(meta[TOTAL_SIZE]), f"{nbytes} bytes in the shards"))
    params = _count(meta, TOTAL_PARAMETERS)
    if params is not None and not packed and (params < 0 or params > numel):
        problems.append(
            (TOTAL_PARAMETERS, TOTAL_PARAMETERS, _text(meta[TOTAL_PARAMETERS]), f"{numel} elements in the shards")
        )
    return problems


def _count(meta: dict[str, Any], key: str) -> int | None:
    """An index count as an integer (-1 when it is there but not a count, None when absent)."""
    if key not in meta:
        return None
    value = meta[key]
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 30:
        return int(value)
    return -1


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
