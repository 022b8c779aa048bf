"""Reader for ``torch.save`` zip archives (the default format since torch 1.6).

The zip structure is read by :mod:`~paraminspect.formats.zipstrict`, which
accepts only archives every reader reads alike; then only ``data.pkl`` and
the small metadata records are read. Storage bytes stay on disk: each storage becomes a
:class:`StorageRef` with its absolute byte offset in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from paraminspect import dtypes
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats import zipstrict
from paraminspect.formats.filemeta import hyper_parameters
from paraminspect.formats.pickle.unpickler import StorageType, safe_loads
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, StorageRef, flatten

# The archive format versions torch's reader opens (caffe2/serialize/versions.h of torch 2.13:
# kMinSupportedFileFormatVersion, kMaxSupportedFileFormatVersion); torch.save writes 3.
MIN_VERSION, MAX_VERSION = 1, 10
_C_SPACE = b" \t\n\v\f\r"  # C's isspace
_DIGITS = b"0123456789"
_U64 = 1 << 64
VERSION_SCAN_BYTES = 1 << 20  # how far into a version record its number may start or end


class ZipRecords:
    """The records of a torch archive, read so that torch's reader would see the same ones."""

    def __init__(self, path: Path, fh: BinaryIO, size: int, max_records: int | None = None) -> None:
        self.path = path
        self._fh = fh
        self._size = size
        records = zipstrict.read_directory(fh, size, max_records)
        if not records:
            raise CheckpointError("empty zip archive, not a torch checkpoint")
        self.top = next(iter(records.values())).name.split("/", 1)[0]  # torch: the first record's folder
        # torch finds a record by "<top>/<name>" ignoring ASCII case, and so do we: zipstrict
        # refused names that are equal ignoring case, so the lookup has one answer.
        self._prefix = zipstrict.fold(self.top) + "/"
        for key, record in records.items():
            if not key.startswith(self._prefix):
                raise CheckpointError(f"zip record {record.name!r} is outside the archive folder {self.top!r}")
        self._records = records
        check_version(self)

    def _get(self, name: str) -> zipstrict.Record | None:
        return self._records.get(self._prefix + zipstrict.fold(name))

    def __contains__(self, name: str) -> bool:
        return self._get(name) is not None

    def has_folder(self, folder: str) -> bool:
        return any(key.startswith(self._prefix + zipstrict.fold(folder)) for key in self._records)

    def names_under(self, folder: str) -> list[str]:
        """Names (relative to the top folder) of the records under ``folder``, in archive order."""
        start = self._prefix + zipstrict.fold(folder)
        return [r.name[len(self.top) + 1 :] for key, r in self._records.items() if key.startswith(start)]

    def locate(self, name: str) -> tuple[int, int]:
        """Absolute (offset, size) of a record's payload (its local header was checked on opening)."""
        record = self._get(name)
        if record is None:
            raise CheckpointError(f"archive has no record {self.top}/{name}")
        if record.method != 0:
            raise CheckpointError(f"zip record {record.name!r} is compressed; torch.save writes records uncompressed")
        return record.data_offset, record.size

    def recorded_crc(self, name: str) -> int | None:
        """The record's CRC-32 from the zip directory; None when 0 (torch may skip computing it)."""
        record = self._get(name)
        return record.crc if record is not None and record.crc else None

    def read_prefix(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (within a located record's payload)."""
        self._fh.seek(offset)
        data = self._fh.read(length)
        if len(data) != length:
            raise CheckpointError(f"zip record at byte {offset:,} runs past the end of the file (truncated?)")
        return data

    def read(self, name: str, limit: int) -> bytes:
        start, size = self.locate(name)
        if size > limit:
            hint = " (use --max-pickle-bytes to raise it)" if name == "data.pkl" else ""
            raise LimitExceeded(f"record {self.top}/{name} is {size:,} bytes, over the {limit:,}-byte limit{hint}")
        self._fh.seek(start)
        data = self._fh.read(size)
        if len(data) != size:
            raise CheckpointError(f"zip record {self.top}/{name} runs past the end of the file (truncated?)")
        return data


def check_version(records: ZipRecords) -> None:
    """Refuse the archives whose version record torch's reader refuses (PyTorchStreamReader::init):
    ``.data/version`` if present, else ``version``, read like C's ``stoull`` (leading C spaces, a
    sign, decimal digits; what follows them is ignored), within [MIN_VERSION, MAX_VERSION]."""
    name = ".data/version" if ".data/version" in records else "version"
    record = records._get(name)
    if record is None:
        raise CheckpointError(
            f"archive has no version record ({records.top}/version or {records.top}/.data/version); torch refuses it"
        )
    where = f"version record {record.name!r}"
    value, text = _stoull(records, name, where)
    if value is None:
        raise CheckpointError(f"{where} holds no version number ({text!r}), which torch refuses")
    if value >= _U64:
        raise CheckpointError(f"{where} holds a version number of 2^64 or more ({text!r}), which torch refuses")
    if not MIN_VERSION <= value <= MAX_VERSION:
        age = "newer" if value > MAX_VERSION else "older"
        raise CheckpointError(
            f"archive format version {value} ({where}: {text!r}) is {age} than torch reads"
            f" ({MIN_VERSION} to {MAX_VERSION})"
        )


def _stoull(records: ZipRecords, name: str, where: str) -> tuple[int | None, str]:
    """What ``std::stoull`` makes of the record: its value (None when it holds no number; 2^64
    or more when out of range), and the text that spelled it (for messages)."""
    offset, size = records.locate(name)
    raw = records.read_prefix(offset, min(size, VERSION_SCAN_BYTES))
    body = raw.lstrip(_C_SPACE)
    sign = body[:1] if body[:1] in (b"+", b"-") else b""
    digits = body[len(sign) :]
    number = digits[: len(digits) - len(digits.lstrip(_DIGITS))]
    if len(raw) < size and len(sign) + len(number) == len(body):  # the number may go on past what was read
        raise LimitExceeded(f"{where} does not end its number within {VERSION_SCAN_BYTES:,} bytes")
    shown = ((sign + number)[:40] if number else raw[:40]).decode("ascii", "backslashreplace")
    if not number:
        return None, shown
    significant = number.lstrip(b"0")
    value = int(significant or b"0") if len(significant) <= 20 else _U64  # 2^64 has 20 digits
    if sign == b"-" and value < _U64:
        value = -value % _U64  # strtoull negates in unsigned arithmetic: "-1" is 2^64 - 1
    return value, shown


def is_torchscript(records: ZipRecords) -> bool:
    """A ``torch.jit.save`` archive: it holds code and constants beside its data."""
    return "constants.pkl" in records or records.has_folder("code/") or "model.json" in records


def open_archive(path: Path, fh: BinaryIO, size: int, max_records: int | None = None) -> ZipRecords:
    """The records of a torch.save archive (shared with ``scan``), refusing other zips."""
    records = ZipRecords(path, fh, size, max_records)
    if is_torchscript(records):
        raise CheckpointError("this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
    if "data.pkl" not in records:
        raise CheckpointError(f"zip archive has no {records.top}/data.pkl: not a torch.save checkpoint")
    check_load_records(records)
    return records


def check_load_records(records: ZipRecords) -> None:
    """Refuse what ``torch.load`` refuses before it unpickles: a ``byteorder`` record that is not
    exactly ``little`` or ``big``, a ``.storage_alignment`` that Python's ``int()`` cannot read."""
    if "byteorder" in records:
        raw = records.read("byteorder", 16)
        if raw not in (b"little", b"big"):  # compared as bytes: no stripping, no case folding
            raise CheckpointError(f"unknown byteorder record {raw.decode('ascii', 'backslashreplace')!r}")
    if ".storage_alignment" in records:
        alignment = records.read(".storage_alignment", 4096)
        try:
            int(alignment)  # torch.load's very call
        except ValueError:
            shown = alignment[:40].decode("ascii", "backslashreplace")
            raise CheckpointError(f"storage alignment record {shown!r} is not an integer") from None


def max_records(limits: Limits) -> int:
    """Records a torch archive may have: one per storage (at most one per entry) plus metadata."""
    return limits.max_entries + 16


def read_torch_zip(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    records = open_archive(path, fh, size, max_records(limits))
    obj = load_pickle(path, records, "data.pkl", limits)
    entries = dict(flatten(obj, max_depth=limits.max_depth, max_entries=limits.max_entries))
    return Checkpoint(
        path=path, format="torch-zip", entries=entries, file_metadata=hyper_parameters(obj), ordered=True, root=obj
    )


def load_pickle(path: Path, records: ZipRecords, name: str, limits: Limits) -> Any:
    """Record ``name`` (``data.pkl``) unpickled by the allow-list unpickler, its storages
    located in the archive's ``data/`` records (shared with the TorchScript reader)."""
    byteorder = "little"
    if "byteorder" in records:
        byteorder = records.read("byteorder", 16).decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"unknown byteorder record {byteorder!r}")

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

    return safe_loads(records.read(name, limits.max_pickle_bytes), load_storage)
