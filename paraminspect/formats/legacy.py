"""Reader for the legacy ``torch.save`` format (``_use_new_zipfile_serialization=False``,
and every file written before torch 1.6).

The file is several pickles in a row: a magic number, the protocol version
(1001), a sys-info dict, the object itself, the list of storage keys; then, for
each key in that order, an int64 element count and the storage's raw bytes.
Storage offsets are known only after the object pickle, so the (small) object
pickle is read twice: once to learn each storage's size, once to build
:class:`StorageRef` s with their final offsets. Storage bytes are never read.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from paraminspect import dtypes
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.filemeta import hyper_parameters
from paraminspect.formats.magic import LEGACY_MAGIC_NUMBER
from paraminspect.formats.pickle.guard import read_one
from paraminspect.formats.pickle.unpickler import StorageType, safe_loads
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, StorageRef, flatten

PROTOCOL_VERSION = 1001
_ITEM_SIZES = {1, 2, 4, 8, 16}
# The pickles at the start of the file, in order; storage records follow them.
PICKLES = ("magic number", "protocol version", "sys info", "object", "storage keys")


def raw_pickles(fh: BinaryIO) -> bytes:
    """The file's leading pickles as raw bytes, for ``scan``: found by walking
    opcodes, never unpickled; byte offsets in the result are file offsets."""
    fh.seek(0)
    return b"".join(read_one(fh) for _ in PICKLES)


def _storage_facts(pid: Any) -> tuple[str, dtypes.DType, int]:
    """(key, dtype, nbytes) from a legacy persistent id, checked."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        raise CheckpointError(f"pickle persistent id is not a storage: {str(pid)[:80]}")
    kind, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(kind, StorageType) or not isinstance(key, str) or type(numel) is not int or numel < 0:
        raise CheckpointError(f"malformed storage reference: {str(pid)[:80]}")
    if len(pid) == 6 and pid[5] is not None:
        raise CheckpointError("storage views of the pre-1.0 torch format are not supported")
    dtype = kind.dtype or dtypes.BY_NAME["uint8"]
    return key, dtype, dtype.nbytes(numel)


def read_legacy(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    if safe_loads(fh) != LEGACY_MAGIC_NUMBER:
        raise CheckpointError("legacy torch file with a wrong magic number")
    version = safe_loads(fh)
    if version != PROTOCOL_VERSION:
        raise CheckpointError(f"legacy torch file protocol {version!r} is not {PROTOCOL_VERSION}")
    info = safe_loads(fh)
    if not isinstance(info, dict):
        raise CheckpointError("legacy torch file has no sys-info record")
    byteorder = "little" if info.get("little_endian", True) else "big"

    # Pass 1: which storages exist and how many bytes each holds.
    sizes: dict[str, tuple[dtypes.DType, int]] = {}

    def record(pid: Any) -> StorageRef:
        key, dtype, nbytes = _storage_facts(pid)
        sizes.setdefault(key, (dtype, nbytes))
        return StorageRef(path, key, 0, nbytes, dtype, byteorder)

    start = fh.tell()
    safe_loads(fh, record)
    end = fh.tell()
    if end - start > limits.max_pickle_bytes:
        raise LimitExceeded(f"object pickle is {end - start:,} bytes, over the {limits.max_pickle_bytes:,}-byte limit")
    keys = safe_loads(fh)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("legacy torch file has no list of storage keys after the object")
    if len(keys) > limits.max_entries:
        raise LimitExceeded(f"more than {limits.max_entries:,} storages")
    offsets = _locate_storages(fh, size, keys, sizes, byteorder)
    missing = sorted(set(sizes) - set(offsets))
    if missing:
        raise CheckpointError(f"storage {missing[0]!r} is used by a tensor but not stored in the file")

    # Pass 2: the same pickle, now with every storage at its real offset.
    storages: dict[tuple[str, str], StorageRef] = {}

    def load(pid: Any) -> StorageRef:
        key, dtype, nbytes = _storage_facts(pid)
        found = storages.get((key, dtype.name))
        if found is None:
            found = storages[(key, dtype.name)] = StorageRef(path, key, offsets[key], nbytes, dtype, byteorder)
        return found

    fh.seek(start)
    obj = safe_loads(fh.read(end - start), load)
    entries = dict(flatten(obj, max_depth=limits.max_depth, max_entries=limits.max_entries))
    return Checkpoint(
        path=path, format="torch-legacy", entries=entries, file_metadata=hyper_parameters(obj), ordered=True, root=obj
    )


def _locate_storages(
    fh: BinaryIO, size: int, keys: list[str], sizes: dict[str, tuple[dtypes.DType, int]], byteorder: str
) -> dict[str, int]:
    """Walk the storage records (count, bytes) and return each key's data offset."""
    count_format = "<q" if byteorder == "little" else ">q"
    position = fh.tell()
    offsets: dict[str, int] = {}
    for key in keys:
        if key not in sizes:
            raise CheckpointError(f"storage {key!r} is listed but no tensor uses it")
        fh.seek(position)
        raw = fh.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"storage {key!r} lies past the end of the file (truncated?)")
        (count,) = struct.unpack(count_format, raw)
        nbytes = sizes[key][1]
        # The count is in elements of the tensor's dtype, which an untyped storage
        # does not name: it must divide the byte size into a plausible element size.
        if count < 0 or (count == 0 and nbytes) or (count and (nbytes % count or nbytes // count not in _ITEM_SIZES)):
            raise CheckpointError(f"storage {key!r} record says {count} elements, which cannot hold {nbytes} bytes")
        offsets[key] = position + 8
        position += 8 + nbytes
        if position > size:
            raise CheckpointError(f"storage {key!r} runs past the end of the file (truncated?)")
    return offsets
