"""Reader for ``torch.distributed.checkpoint`` (DCP) directories.

``.metadata`` is a pickle of DCP's dataclasses: per dotted name, either a
``TensorStorageMetadata`` (dtype, global size, the chunks each rank saved) or a
``BytesStorageMetadata`` (any other object); ``storage_data`` says where each
item lives: ``(relative_path, offset, length)`` inside the ``*.distcp`` files,
each item being a complete ``torch.save`` zip. torch reads ``.metadata`` with
plain pickle; here it goes through the allow-list unpickler, whose stand-ins
only record fields. A tensor saved in several chunks becomes one
:class:`TensorRef` with ``chunks``, reassembled when its values are read.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.filemeta import type_name
from paraminspect.formats.magic import METADATA_NAME
from paraminspect.formats.pickle.unpickler import PathValue, Record, TorchDType, safe_loads
from paraminspect.formats.sharded import shard_path
from paraminspect.formats.torchzip import read_torch_zip
from paraminspect.io import source
from paraminspect.limits import Limits
from paraminspect.model import (
    Checkpoint,
    Chunk,
    Entry,
    TensorRef,
    Value,
    contiguous_strides,
    distinct_names,
    opaque_class,
)

Location = tuple[str, int, int]  # relative path, offset, length


def _kind(item: Any) -> str:
    return item.qualname.rpartition(".")[2] if isinstance(item, Record) else type(item).__name__


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(type(i) is int and i >= 0 for i in value):
        raise CheckpointError(f"DCP metadata: {what} is not a tuple of non-negative integers")
    return tuple(value)


def _locations(meta: Record) -> dict[tuple[str, tuple[int, ...] | None], Location]:
    """storage_data as {(name, chunk offsets or None): (file, offset, length)}."""
    found: dict[tuple[str, tuple[int, ...] | None], Location] = {}
    storage_data = meta.field("storage_data")
    if not isinstance(storage_data, dict):
        raise CheckpointError("DCP metadata has no storage_data mapping")
    for index, info in storage_data.items():
        if _kind(index) != "MetadataIndex" or _kind(info) != "_StorageInfo":
            raise CheckpointError("DCP metadata: storage_data holds something other than storage records")
        fqn, offset = index.field("fqn"), index.field("offset")
        path, begin, length = info.field("relative_path"), info.field("offset"), info.field("length")
        if not isinstance(fqn, str) or not isinstance(path, str) or type(begin) is not int or type(length) is not int:
            raise CheckpointError("DCP metadata: malformed storage record")
        if info.field("transform_descriptors"):
            raise CheckpointError(f"DCP item {fqn!r} is stored transformed (compressed?); not supported")
        key = (fqn, None if offset is None else _ints(offset, f"{fqn!r} chunk offset"))
        found[key] = (path, begin, length)
    return found


def item_locations(meta: Record) -> list[Location]:
    """Every stored item the metadata references, once each, in its order (for ``scan``)."""
    return list(dict.fromkeys(_locations(meta).values()))


class Items:
    """Opens the torch.save zips inside the .distcp files, one file handle per file."""

    def __init__(self, directory: Path, limits: Limits) -> None:
        self.directory, self.limits = directory, limits
        self._files: dict[str, tuple[Path, source.Source]] = {}
        # Many items may point at one stored item: each location is parsed once,
        # and the entries handed out in total are held to the entry limit.
        self._parsed: dict[Location, Checkpoint] = {}
        self._handed_out = 0

    def window(self, what: str, location: Location) -> tuple[Path, BinaryIO]:
        """The data file holding an item, and a stream over just the item's bytes."""
        relative, begin, length = location
        if relative not in self._files:
            file = shard_path(self.directory, relative)
            try:
                opened = source.open_source(file)  # every later read of the file goes through this handle
            except OSError as exc:
                raise CheckpointError(f"{what}: cannot open its data file {relative!r} ({exc.strerror})") from None
            except CheckpointError as exc:
                raise CheckpointError(f"{what}: its data file {relative!r} {exc.message}") from None
            self._files[relative] = (file, opened)
        file, opened = self._files[relative]
        if begin < 0 or length <= 0 or begin + length > opened.size:
            raise CheckpointError(
                f"{what}: bytes [{begin}, {begin + length}) lie outside {relative!r} ({opened.size} bytes)"
            )
        return file, opened.reader(begin, length)

    def open(self, what: str, location: Location) -> Checkpoint:
        """The stored item at ``location``, read once however many items point at it."""
        relative, begin, length = location
        parsed = self._parsed.get(location)
        if parsed is None:
            file, window = self.window(what, location)
            try:
                parsed = self._parsed[location] = read_torch_zip(file, window, length, self.limits)
            except CheckpointError as exc:
                raise CheckpointError(f"{what} in {relative!r} at byte {begin}: {exc.message}") from None
        self._handed_out += max(1, len(parsed.entries))
        if self._handed_out > self.limits.max_entries:
            raise LimitExceeded(
                f"DCP items expand to more than {self.limits.max_entries:,} entries (use --max-entries to raise it)"
            )
        return parsed

    def close(self) -> None:
        """Nothing to close: the data files' handles live as long as the checkpoint's sources."""
        self._files.clear()


def read_metadata_bytes(directory: Path, limits: Limits) -> bytes:
    """The raw ``.metadata`` pickle, within the pickle-size limit (``scan`` reads it so)."""
    opened = source.open_source(directory / METADATA_NAME)
    if opened.size > limits.max_pickle_bytes:
        raise LimitExceeded(
            f"{METADATA_NAME} is {opened.size:,} bytes, over the {limits.max_pickle_bytes:,}-byte limit"
        )
    return opened.reader().read()


def read_metadata(directory: Path, limits: Limits) -> Record:
    """The directory's ``.metadata``, unpickled through the allow-list and checked."""
    return parse_metadata(read_metadata_bytes(directory, limits))


def parse_metadata(raw: bytes) -> Record:
    """``.metadata`` bytes unpickled through the allow-list and checked (``scan`` reads the bytes once)."""
    meta = safe_loads(raw)
    if (
        not isinstance(meta, Record)
        or _kind(meta) != "Metadata"
        or not isinstance(meta.field("state_dict_metadata"), dict)
    ):
        raise CheckpointError(f"{METADATA_NAME} is not torch.distributed.checkpoint metadata")
    return meta


def read_dcp(directory: Path, limits: Limits) -> Checkpoint:
    """Read a DCP directory's ``.metadata`` and locate every item (no tensor data read)."""
    meta = read_metadata(directory, limits)
    items_meta: dict[Any, Any] = meta.field("state_dict_metadata")
    if len(items_meta) > limits.max_entries:
        raise LimitExceeded(f"more than {limits.max_entries:,} items")
    locations = _locations(meta)
    items = Items(directory, limits)
    found: list[tuple[str, Entry]] = []
    try:
        for fqn, item in items_meta.items():
            if not isinstance(fqn, str):
                raise CheckpointError("DCP metadata: an item name is not a string")
            kind = _kind(item)
            if kind == "TensorStorageMetadata":
                found.append((fqn, _tensor(fqn, item, locations, items)))
            elif kind == "BytesStorageMetadata":
                location = locations.get((fqn, None))
                if location is None:
                    raise CheckpointError(f"DCP item {fqn!r} has no storage record")
                for name, entry in items.open(f"item {fqn!r}", location).entries.items():
                    # The item is a zip inside the .distcp: its offsets count from the item's start.
                    rebased = _rebased(entry, location[1]) if isinstance(entry, TensorRef) else entry
                    found.append((f"{fqn}.{name}" if name else fqn, rebased))
            else:
                found.append((fqn, Value(opaque_class(f"dcp.{kind}")())))
    finally:
        items.close()
    # An item "x.y" and an object item "x" holding "y" join to one name: keep both.
    entries: dict[str, Entry] = dict(zip(distinct_names(n for n, _ in found), (e for _, e in found), strict=True))
    version = meta.field("version")
    metadata = {"dcp_version": str(version)} if isinstance(version, str) else {}
    return Checkpoint(
        path=directory,
        format="dcp",
        entries=entries,
        metadata=metadata,
        file_metadata=file_metadata(meta),
        ordered=True,
    )


def _plain(value: Any) -> Any:
    """A field value as ``meta`` shows it: a pickled path as its text, a record by its class."""
    if isinstance(value, PathValue):
        return value.text
    if isinstance(value, Record):
        return repr(value)
    return value


def file_metadata(meta: Record) -> dict[str, tuple[str, Any]]:
    """What ``.metadata`` says about the checkpoint beside its items: its ``version``, the
    ``storage_meta`` fields (checkpoint_id, save_id, load_id, modules) and the planner's
    data (the default planner's: each flattened name -> its path in the saved state dict)."""
    found: dict[str, tuple[str, Any]] = {}
    version = meta.field("version")
    if version is not None:
        found["version"] = (type_name(version), version)
    storage = meta.field("storage_meta")
    if isinstance(storage, Record):
        for name in ("checkpoint_id", "save_id", "load_id", "modules"):
            value = storage.field(name)
            if value is not None:
                shown = _plain(value)
                kind = "Path" if isinstance(value, PathValue) else type_name(shown)
                found[f"storage_meta.{name}"] = (kind, shown)
    planner = meta.field("planner_data")
    if planner is not None:
        found["planner_data"] = (type_name(planner), _plain(planner))
    return found


def _properties(fqn: str, item: Record) -> tuple[Any, bool]:
    props = item.field("properties")
    state = props.state if isinstance(props, Record) else None
    if isinstance(state, tuple) and state:  # torch >= 2.2 pickles a tuple
        dtype, requires_grad = state[0], len(state) > 2 and state[2] is True
    elif isinstance(state, dict):
        dtype, requires_grad = state.get("dtype"), state.get("requires_grad") is True
    else:
        dtype, requires_grad = None, False
    if not isinstance(dtype, TorchDType):
        raise CheckpointError(f"DCP item {fqn!r}: tensor properties carry no dtype")
    return dtype.dtype, requires_grad


def _tensor(
    fqn: str, item: Record, locations: dict[tuple[str, tuple[int, ...] | None], Location], items: Items
) -> TensorRef:
    dtype, requires_grad = _properties(fqn, item)
    shape = _ints(item.field("size"), f"{fqn!r} size")
    chunk_records = item.field("chunks")
    if not isinstance(chunk_records, list) or not chunk_records:
        raise CheckpointError(f"DCP item {fqn!r} has no chunks")
    chunks: list[Chunk] = []
    for record in chunk_records:
        offsets = _ints(record.field("offsets") if isinstance(record, Record) else None, f"{fqn!r} chunk offsets")
        sizes = _ints(record.field("sizes"), f"{fqn!r} chunk sizes")
        if len(offsets) != len(shape) or len(sizes) != len(shape):
            raise CheckpointError(f"DCP item {fqn!r}: chunk rank differs from the tensor's {list(shape)}")
        if any(o + n > d for o, n, d in zip(offsets, sizes, shape, strict=True)):
            raise CheckpointError(f"DCP item {fqn!r}: chunk at {list(offsets)} of {list(sizes)} exceeds {list(shape)}")
        location = locations.get((fqn, offsets))
        if location is None:
            raise CheckpointError(f"DCP item {fqn!r}: chunk at {list(offsets)} has no storage record")
        piece = items.open(f"tensor {fqn!r} chunk {list(offsets)}", location).entries.get("")
        if not isinstance(piece, TensorRef) or piece.dtype != dtype or piece.shape != sizes:
            raise CheckpointError(
                f"DCP item {fqn!r}: chunk at {list(offsets)} is not a {dtype.name} tensor of shape {list(sizes)}"
            )
        chunks.append(Chunk(offsets, _rebased(piece, location[1])))
    if sum(c.ref.numel for c in chunks) != math.prod(shape):
        raise CheckpointError(f"DCP item {fqn!r}: chunks do not add up to the tensor's {list(shape)}")
    if len(chunks) == 1:
        return replace(chunks[0].ref, requires_grad=requires_grad)
    return TensorRef(
        dtype,
        shape,
        contiguous_strides(shape),
        chunks[0].ref.storage,
        requires_grad=requires_grad,
        chunks=tuple(chunks),
    )


def _rebased(ref: TensorRef, base: int) -> TensorRef:
    """``ref`` read from an item's zip, with its storage at its absolute offset in the file."""
    return replace(ref, storage=replace(ref.storage, offset=ref.storage.offset + base))
