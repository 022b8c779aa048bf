"""Reader for ``torch.save`` zip archives (the default format since torch 1.6).

Only the central directory, the local headers of the records we use, and
``data.pkl`` are read. Storage bytes stay on disk: each storage becomes a
:class:`StorageRef` with its absolute byte offset in the file.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from paraminspect import dtypes
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, StorageRef, flatten
from paraminspect.safepickle import StorageType, safe_loads

MAGIC = b"PK\x03\x04"  # a zip local file header
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
SUPPORTED_VERSION = 3  # the ``version`` record torch 2.x writes


class ZipRecords:
    """The records of a torch archive, checked for the tricks a hostile zip can play."""

    def __init__(self, path: Path, fh: BinaryIO, size: int, max_records: int | None = None) -> None:
        self.path = path
        self._fh = fh
        self._size = size
        if max_records is not None:
            claimed = count_records(fh, size)
            if claimed is not None and claimed > max_records:
                raise LimitExceeded(
                    f"zip archive lists {claimed:,} records, over the {max_records:,} limit"
                    " (use --max-entries to raise it)"
                )
        try:
            infos = zipfile.ZipFile(fh).infolist()
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            NotImplementedError,  # e.g. "zip file version 6.4" (found by fuzzing)
            OSError,
            ValueError,
            EOFError,
            OverflowError,
            struct.error,
        ) as exc:
            raise CheckpointError(f"not a readable zip archive ({exc})") from None
        if not infos:
            raise CheckpointError("empty zip archive, not a torch checkpoint")
        self.top = infos[0].filename.split("/", 1)[0]
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if "/" not in info.filename or info.filename.split("/", 1)[0] != self.top:
                raise CheckpointError(f"zip record {info.filename!r} is outside the archive folder {self.top!r}")
            relative = info.filename.split("/", 1)[1]
            if relative in self._infos:
                raise CheckpointError(f"zip record {info.filename!r} appears twice (readers disagree on which wins)")
            self._infos[relative] = info

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def has_folder(self, folder: str) -> bool:
        return any(name.startswith(folder) for name in self._infos)

    def locate(self, name: str) -> tuple[int, int]:
        """Absolute (offset, size) of a record's payload, after checking its local header."""
        info = self._infos.get(name)
        if info is None:
            raise CheckpointError(f"archive has no record {self.top}/{name}")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"zip record {info.filename!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise CheckpointError(f"zip record {info.filename!r} is compressed; torch.save writes records uncompressed")
        self._fh.seek(info.header_offset)
        header = self._fh.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise CheckpointError(f"zip record {info.filename!r} lies past the end of the file (truncated?)")
        signature, *_, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        if signature != MAGIC:
            raise CheckpointError(f"zip record {info.filename!r} has a damaged local header")
        local_name = self._fh.read(name_len)
        if local_name != info.filename.encode("utf-8") and local_name != info.filename.encode("cp437", "replace"):
            raise CheckpointError(
                f"zip record name differs between local header ({local_name!r}) and directory ({info.filename!r})"
            )
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if start + info.file_size > self._size:
            raise CheckpointError(f"zip record {info.filename!r} runs past the end of the file (truncated?)")
        return start, info.file_size

    def recorded_crc(self, name: str) -> int | None:
        """The record's CRC-32 from the zip directory; None when 0 (torch may skip computing it)."""
        info = self._infos.get(name)
        return info.CRC if info is not None and info.CRC else None

    def read(self, name: str, limit: int) -> bytes:
        start, size = self.locate(name)
        if size > limit:
            hint = " (use --max-pickle-bytes to raise it)" if name == "data.pkl" else ""
            raise LimitExceeded(f"record {self.top}/{name} is {size:,} bytes, over the {limit:,}-byte limit{hint}")
        self._fh.seek(start)
        return self._fh.read(size)


def count_records(fh: BinaryIO, size: int) -> int | None:
    """The record count the end-of-central-directory claims, read before ``zipfile``
    builds an object per record (~550 bytes each: a 60 MB hostile file made
    of empty records would otherwise cost half a gigabyte). None if not found."""
    tail_size = min(size, 22 + 65535)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    count, cd_size = struct.unpack_from("<H2xI", tail, at + 10)
    if count != 0xFFFF and cd_size != 0xFFFFFFFF:
        return int(count)
    if at < 20 or tail[at - 20 : at - 16] != b"PK\x06\x07":
        return None
    (z64_offset,) = struct.unpack_from("<Q", tail, at - 20 + 8)
    fh.seek(z64_offset)
    record = fh.read(56)
    if len(record) < 56 or record[:4] != b"PK\x06\x06":
        return None
    return int(struct.unpack_from("<Q", record, 32)[0])


def open_archive(path: Path, fh: BinaryIO, size: int, max_records: int | None = None) -> ZipRecords:
    """The records of a torch.save archive (shared with ``scan``), refusing other zips."""
    records = ZipRecords(path, fh, size, max_records)
    if "constants.pkl" in records or records.has_folder("code/") or "model.json" in records:
        raise CheckpointError("this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
    if "data.pkl" not in records:
        raise CheckpointError(f"zip archive has no {records.top}/data.pkl: not a torch.save checkpoint")
    return records


def max_records(limits: Limits) -> int:
    """Records a torch archive may have: one per storage (at most one per entry) plus metadata."""
    return limits.max_entries + 16


def read_torch_zip(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    records = open_archive(path, fh, size, max_records(limits))
    byteorder = "little"
    if "byteorder" in records:
        byteorder = records.read("byteorder", 16).decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"unknown byteorder record {byteorder!r}")
    if "version" in records:
        text = records.read("version", 16).decode("ascii", "replace").strip()
        if not text.isdigit() or int(text) > SUPPORTED_VERSION:
            raise CheckpointError(f"archive format version {text!r} is newer than this paraminspect understands")

    storages: dict[str, StorageRef] = {}

    def load_storage(pid: Any) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"pickle persistent id is not a storage: {str(pid)[:80]}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, StorageType) or not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise CheckpointError(f"malformed storage reference: {str(pid)[:80]}")
        dtype = kind.dtype or dtypes.BY_NAME["uint8"]
        found = storages.get(key)
        if found is not None and found.dtype == dtype:
            return found
        offset, record_size = records.locate(f"data/{key}")
        nbytes = dtype.nbytes(numel)
        if nbytes > record_size:
            raise CheckpointError(f"storage {key!r} needs {nbytes:,} bytes but its record holds {record_size:,}")
        crc = records.recorded_crc(f"data/{key}") if nbytes == record_size else None
        storage = StorageRef(path, key, offset, nbytes, dtype, byteorder, crc)
        storages[key] = storage
        return storage

    obj = safe_loads(records.read("data.pkl", limits.max_pickle_bytes), load_storage)
    entries = dict(flatten(obj, max_depth=limits.max_depth, max_entries=limits.max_entries))
    return Checkpoint(path=path, format="torch-zip", entries=entries, ordered=True, root=obj)
