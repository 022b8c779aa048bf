"""Reader for torch.export archives (``.pt2``, ``torch.export.save``): weights and constants, never the graph.

A ``.pt2`` is a torch zip (one top folder, records stored) marked by its
``archive_format`` record (``pt2``). For each exported program ``<m>`` it holds
the graph (``models/<m>.json``), and two JSON configs naming every weight
(``data/weights/<m>_weights_config.json``) and constant
(``data/constants/<m>_constants_config.json``): per name, the record holding
its bytes (``weight_0``), whether it is a parameter, whether it is pickled, and
its dtype, sizes, strides and storage offset. A record holds one storage's raw
bytes (no pickle), so a tensor is read in place as a strided view of it, and
names sharing a record share a storage (tied weights stay tied). Names are the
ones ``torch.export.load(f).state_dict`` and ``.constants`` give (``fc.weight``,
``lifted_tensor_0``), weights first; several programs in one archive get their
program's name as a prefix.

Never unpickled: a pickled weight or constant (a tensor subclass, torch.save'd
into its record) is read as a torch.save zip by the allow-list reader, and
listed as a placeholder when that does not give one plain tensor; custom
objects (``custom_obj_*``, ``opaque_obj_*``) are placeholders. The graph, the
example inputs and any AOTInductor build (compiled code) are only counted in
the metadata; ``scan`` analyses every pickle and lists compiled files as code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from paraminspect import dtypes
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.filemeta import as_file_metadata
from paraminspect.formats.pickle.unpickler import make_tensor
from paraminspect.formats.strictjson import unique_keys
from paraminspect.formats.torchzip import ZipRecords, max_records, read_torch_zip
from paraminspect.io import source
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, Entry, StorageRef, TensorRef, Value, opaque_class

FORMAT_RECORD = "archive_format"  # torch/csrc/export/pt2_archive_constants.h
FORMAT_VALUE = b"pt2"
VERSION_RECORD = "archive_version"
MODELS_DIR = "models/"
WEIGHTS = ("data/weights/", "{}_weights_config.json", "weight")
CONSTANTS = ("data/constants/", "{}_constants_config.json", "constant")
AOTINDUCTOR_DIR = "data/aotinductor/"
OTHER_DIRS = {"extra/": "export_extra_files", "data/executorch/": "export_executorch_files"}
SAMPLE_INPUTS = "data/sample_inputs/{}.pt"
TENSOR_PREFIX = "tensor_"  # a constant that is a tensor; custom_obj_/opaque_obj_ are pickled objects
STRIDED = 7  # schema.Layout.Strided
# schema.ScalarType -> dtype name (torch/_export/serde/schema.py)
SCALAR_TYPES: dict[object, str] = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64",
    9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16", 28: "uint16",
    29: "float8_e4m3fn", 30: "float8_e5m2", 31: "float8_e4m3fnuz", 32: "float8_e5m2fnuz",
    33: "float8_e8m0fnu", 34: "uint32", 35: "uint64",
}  # fmt: skip
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")
# A config holds ~350 bytes and ~25 JSON values per tensor. Its bytes are held to the
# pickle-size limit and its values to one per 64 of those bytes (2M, ~80k tensors, by
# default), counted before json.loads builds them, so a JSON bomb costs neither time nor memory.
BYTES_PER_VALUE = 64
MAX_NDIM = 64


def is_pt2(records: ZipRecords) -> bool:
    """A ``torch.export.save`` archive: it has an ``archive_format`` record."""
    return FORMAT_RECORD in records


def model_names(records: ZipRecords) -> list[str]:
    """The exported programs in the archive (``models/<name>.json``), in archive order."""
    names = []
    for record in records.names_under(MODELS_DIR):
        name = record[len(MODELS_DIR) :].removesuffix(".json")
        if record.endswith(".json") and PLAIN_NAME.fullmatch(name):
            names.append(name)
    return names


def code_files(records: ZipRecords) -> list[str]:
    """Records holding compiled code a loader runs: AOTInductor builds (shared libraries,
    their sources), relative to the archive's top folder."""
    return [n for n in records.names_under(AOTINDUCTOR_DIR) if not n.endswith(("/", ".json"))]


def read_pt2(path: Path, records: ZipRecords, limits: Limits) -> Checkpoint:
    found = records.read(FORMAT_RECORD, 64).strip()
    if found != FORMAT_VALUE:
        raise CheckpointError(f"archive_format record says {found[:20]!r}, not a torch.export (pt2) archive")
    version = records.read(VERSION_RECORD, 64).decode("ascii", "replace").strip() if VERSION_RECORD in records else ""
    models = model_names(records)
    code = code_files(records)
    if not models:
        what = f"only an AOTInductor build ({len(code)} files of compiled code)" if code else "no exported program"
        raise CheckpointError(f"torch.export archive holds {what}: no models/*.json naming its weights; not read")
    entries: dict[str, Entry] = {}
    counts = {"weight": 0, "constant": 0}
    for model in models:
        prefix = f"{model}." if len(models) > 1 else ""
        for kind in (WEIGHTS, CONSTANTS):
            for name, entry in _payloads(path, records, model, kind, limits):
                if prefix + name in entries:
                    raise CheckpointError(f"the name {prefix + name!r} is both a weight and a constant")
                if len(entries) >= limits.max_entries:
                    raise LimitExceeded(f"more than {limits.max_entries:,} tensors (use --max-entries to raise it)")
                entries[prefix + name] = entry
                counts[kind[2]] += 1
    metadata = {
        "archive_version": version,
        "exported_programs": ",".join(models),
        "export_weights": str(counts["weight"]),
        "export_constants": str(counts["constant"]),
        "export_graph_bytes": str(sum(records.locate(f"{MODELS_DIR}{m}.json")[1] for m in models)),
    }
    for folder, key in OTHER_DIRS.items():
        if records.has_folder(folder):
            metadata[key] = str(len(records.names_under(folder)))
    if code:
        metadata["aotinductor_files"] = str(len(code))
    metadata["note"] = (
        "holds an exported graph (models/*.json: read by torch.export.load, never here)"
        + (" and an AOTInductor build (compiled code, never run)" if code else "")
        + "; weights are listed before constants"
    )
    return Checkpoint(path, "torch-export", entries, metadata, ordered=True, file_metadata=as_file_metadata(metadata))


def read_config(records: ZipRecords, name: str, limits: Limits) -> dict[str, Any]:
    """A payload config's ``config`` object, its size and value count bounded before parsing."""
    _, size = records.locate(name)
    if size > limits.max_pickle_bytes:
        raise LimitExceeded(
            f"{name} is {size:,} bytes, over the {limits.max_pickle_bytes:,}-byte limit (use --max-pickle-bytes)"
        )
    raw = records.read(name, size)
    values = raw.count(b",") + raw.count(b"{") + raw.count(b"[") + 1  # every JSON value but a few scalars
    if values > limits.max_pickle_bytes // BYTES_PER_VALUE:
        raise LimitExceeded(
            f"{name} holds about {values:,} JSON values, over the {limits.max_pickle_bytes // BYTES_PER_VALUE:,}"
            " limit (use --max-pickle-bytes to raise it)"
        )
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_keys(name))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{name} is not valid JSON") from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"{name} has no 'config' object")
    return config


def _payloads(
    path: Path, records: ZipRecords, model: str, kind: tuple[str, str, str], limits: Limits
) -> Iterator[tuple[str, Entry]]:
    folder, config_name, what = kind
    legacy = f"{folder}{model}.pt"  # archives from before payload configs: one torch.save state dict
    if f"{folder}{config_name.format(model)}" not in records and legacy in records:
        for name, entry in _nested(path, records, legacy, limits).entries.items():
            if name or not isinstance(entry, Value):  # an empty state dict flattens to one empty value
                yield name, entry
        return
    config = read_config(records, folder + config_name.format(model), limits)
    storages: dict[str, StorageRef] = {}
    for name, meta in config.items():
        if not isinstance(meta, dict):
            raise CheckpointError(f"{what} {name!r}: its entry is not an object")
        record = meta.get("path_name")
        if not isinstance(record, str) or not PLAIN_NAME.fullmatch(record) or f"{folder}{record}" not in records:
            raise CheckpointError(f"{what} {name!r}: its record {str(record)[:80]!r} is not a record in {folder}")
        tensor = meta.get("tensor_meta")
        if meta.get("use_pickle") is True or (what == "constant" and not record.startswith(TENSOR_PREFIX)):
            yield name, _pickled(path, records, folder + record, tensor, limits)
            continue
        if not isinstance(tensor, dict):
            raise CheckpointError(f"{what} {name!r}: no tensor_meta")
        yield name, _tensor(path, records, folder + record, name, what, tensor, meta, storages)


def _tensor(
    path: Path,
    records: ZipRecords,
    record: str,
    name: str,
    what: str,
    meta: dict[str, Any],
    entry: dict[str, Any],
    storages: dict[str, StorageRef],
) -> TensorRef:
    dtype_name = SCALAR_TYPES.get(meta.get("dtype"))
    if dtype_name is None or type(meta.get("dtype")) is not int:
        raise CheckpointError(f"{what} {name!r}: unknown dtype {str(meta.get('dtype'))[:40]!r}")
    if meta.get("layout") != STRIDED:
        raise CheckpointError(f"{what} {name!r}: layout {str(meta.get('layout'))[:40]!r} is not strided")
    dtype = dtypes.BY_NAME[dtype_name]
    shape, strides = _ints(meta.get("sizes"), name, "sizes"), _ints(meta.get("strides"), name, "strides")
    offset = _int(meta.get("storage_offset"), name, "storage_offset")
    storage = storages.get(record)
    if storage is None:
        start, size = records.locate(record)
        if size % dtype.itemsize:
            raise CheckpointError(f"{what} {name!r}: record {record} holds {size:,} bytes, not whole {dtype.name}s")
        byteorder = "little"
        if "byteorder" in records:
            byteorder = records.read("byteorder", 16).decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"unknown byteorder record {byteorder!r}")
        crc = records.recorded_crc(record)
        storage = storages[record] = StorageRef(path, record, start, size, dtype, byteorder, crc)
    elif storage.dtype != dtype:  # views of one storage as two dtypes: one StorageRef per reading
        storage = replace(storage, dtype=dtype, recorded_crc=None)
    ref = make_tensor(storage, offset, shape, strides, meta.get("requires_grad") is True, dtype)
    if entry.get("is_param") is True:
        ref = replace(ref, is_parameter=True)
    return ref


def _ints(items: Any, name: str, what: str) -> tuple[int, ...]:
    if not isinstance(items, list) or len(items) > MAX_NDIM:
        raise CheckpointError(f"tensor {name!r}: {what} is not a list of at most {MAX_NDIM} integers")
    return tuple(_int(item, name, what) for item in items)


def _int(item: Any, name: str, what: str) -> int:
    """A ``SymInt`` that is a plain integer (``{"as_int": 3}``); symbolic sizes are refused."""
    value = item.get("as_int") if isinstance(item, dict) and len(item) == 1 else None
    if type(value) is not int:
        raise CheckpointError(f"tensor {name!r}: {what} holds {str(item)[:60]!r}, not a plain integer")
    return value


def _pickled(path: Path, records: ZipRecords, record: str, tensor: Any, limits: Limits) -> Entry:
    """A pickled payload: a torch.save'd tensor (a subclass) when the allow-list reader finds
    one plain tensor in it, else an inert placeholder saying what the config says it is."""
    is_tensor = record.rsplit("/", 1)[-1].startswith(("weight_", TENSOR_PREFIX))
    if is_tensor:
        try:
            nested = _nested(path, records, record, limits)
        except CheckpointError:
            nested = None
        found = nested.entries.get("") if nested is not None and len(nested.entries) == 1 else None
        if isinstance(found, TensorRef):
            return found
    what = "custom object"
    if is_tensor and isinstance(tensor, dict):
        dtype = SCALAR_TYPES.get(tensor.get("dtype"), "?")
        sizes = tensor.get("sizes")
        dims = (
            [s.get("as_int", "?") if isinstance(s, dict) else "?" for s in sizes[:MAX_NDIM]]
            if isinstance(sizes, list)
            else []
        )
        what = f"pickled tensor {dtype} [{', '.join(map(str, dims))}]"
    elif is_tensor:
        what = "pickled tensor"
    return Value(opaque_class(f"torch.export[{what}, never unpickled]")())


def _nested(path: Path, records: ZipRecords, record: str, limits: Limits) -> Checkpoint:
    """A torch.save zip stored as a record, read by the torch.save reader, its offsets made absolute."""
    start, size = records.locate(record)
    window = source.get(path).reader(start, size)
    try:
        inner = read_torch_zip(path, window, size, limits)
    except CheckpointError as exc:
        raise CheckpointError(f"record {record}: {exc.message}") from None
    return replace(inner, entries={k: _rebased(v, start) for k, v in inner.entries.items()})


def _rebased(entry: Entry, base: int) -> Entry:
    if not isinstance(entry, TensorRef):
        return entry
    return replace(entry, storage=replace(entry.storage, offset=entry.storage.offset + base))


def pickled_records(records: ZipRecords, limits: Limits) -> list[str]:
    """The records that hold pickles: each program's example inputs, pickled payloads and
    custom objects (as its configs say), and state dicts in the old layout."""
    found: list[str] = []
    for model in model_names(records):
        found.append(SAMPLE_INPUTS.format(model))
        for folder, config_name, what in (WEIGHTS, CONSTANTS):
            config = f"{folder}{config_name.format(model)}"
            if config not in records:
                found.append(f"{folder}{model}.pt")
                continue
            for meta in read_config(records, config, limits).values():
                record = meta.get("path_name") if isinstance(meta, dict) else None
                if not isinstance(record, str) or not PLAIN_NAME.fullmatch(record):
                    continue
                if meta.get("use_pickle") is True or (what == "constant" and not record.startswith(TENSOR_PREFIX)):
                    found.append(folder + record)
    return [r for r in dict.fromkeys(found) if r in records]


def pickles(path: Path, records: ZipRecords, limits: Limits) -> Iterator[tuple[str, bytes]]:
    """(where, pickle bytes) of every pickle the archive holds, for ``scan``: the ``data.pkl``
    of each torch.save'd record (a zip inside the archive), or the record itself."""
    for name in pickled_records(records, limits):
        start, size = records.locate(name)
        if source.get(path).reader(start, size).read(4) == b"PK\x03\x04":
            inner = ZipRecords(path, source.get(path).reader(start, size), size, max_records(limits))
            if "data.pkl" not in inner:
                raise CheckpointError(f"record {records.top}/{name} is a zip without data.pkl")
            yield f"{records.top}/{name}:{inner.top}/data.pkl", inner.read("data.pkl", limits.max_pickle_bytes)
        else:
            yield f"{records.top}/{name}", records.read(name, limits.max_pickle_bytes)
