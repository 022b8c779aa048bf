"""Reader for ONNX models (``onnx.save_model``): the graph's initializers, by walking protobuf.

ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto: dims (1),
data_type (2), name (8), and the elements in one of raw_data (9), the packed
typed fields float_data (4), int32_data (5), int64_data (7), double_data (10),
uint64_data (11), or an external file (data_location 14 = EXTERNAL, with
external_data (13) entries location/offset/length). Nothing but these fields is
read: raw_data and typed data become byte ranges (varint-encoded fields a
:class:`~paraminspect.model.Packing` that ``data/`` decodes), nodes, subgraphs
and everything else are skipped by length. External files must lie inside the
model's directory once symlinks are resolved.

Left out: initializers of subgraphs (If/Loop/Scan bodies, functions),
``sparse_initializer`` (listed in the metadata by count), Constant nodes'
tensors, and ``training_info``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from paraminspect import dtypes
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats import protowire as pw
from paraminspect.formats.filemeta import as_file_metadata
from paraminspect.io import source
from paraminspect.limits import Limits
from paraminspect.model import VARINT, Checkpoint, Entry, Packing, StorageRef, TensorRef, Value, opaque_class
from paraminspect.model import contiguous_strides as _row_major

# TensorProto.DataType -> paraminspect dtype name (None: listed as a placeholder).
DATA_TYPES: dict[int, str | None] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: None,  # STRING
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
    17: "float8_e4m3fn",
    18: "float8_e4m3fnuz",
    19: "float8_e5m2",
    20: "float8_e5m2fnuz",
    21: "uint4",
    22: "int4",
    23: "float4_e2m1fn",
    24: "float8_e8m0fnu",
    25: "uint2",
    26: "int2",
    27: "float6_e2m3fn",
    28: "float6_e3m2fn",
}
# Typed data fields: number -> (name, element encoding: fixed bytes per value, or 0 = varint).
TYPED = {
    4: ("float_data", 4),
    5: ("int32_data", 0),
    7: ("int64_data", 0),
    10: ("double_data", 8),
    11: ("uint64_data", 0),
}
RAW_DATA, EXTERNAL_DATA, DATA_LOCATION, STRING_DATA, SEGMENT = 9, 13, 14, 6, 3
# The typed field each element type's values go in (onnx.proto); int32_data holds the rest.
_TYPED_FIELD = {"float32": 4, "complex64": 4, "float64": 10, "complex128": 10, "int64": 7, "uint32": 11, "uint64": 11}
MAX_DIMS = 64
MAX_NAME = 1 << 16
MAX_EXTERNAL_ENTRIES = 16
# Model tags a file may start with after ir_version (field 1): producer_name, ..., graph, opset_import.
_SECOND_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42}


def looks_like_onnx(head: bytes) -> bool:
    """ModelProto begins with ir_version (tag 0x08, a small varint), then another model field."""
    return len(head) >= 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in _SECOND_TAGS


def read_onnx(path: Path, fh: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    wire = pw.Wire(fh, size, "ONNX model")
    graph: pw.Field | None = None
    ir_version = None
    for field in wire.fields(0, size, "ModelProto"):
        if field.number == 1:
            pw.expect(field, pw.VARINT, wire.what, "ModelProto.ir_version")
            ir_version = field.value
        elif field.number == 7:
            pw.expect(field, pw.LENGTH, wire.what, "ModelProto.graph")
            if graph is not None:
                raise CheckpointError("ONNX model has two graph fields (protobuf would merge them)")
            graph = field
    if graph is None:
        raise CheckpointError("ONNX model has no graph")
    entries: dict[str, Entry] = {}
    external = _External(path)
    sparse = 0
    for field in wire.fields(graph.offset, graph.offset + graph.value, "GraphProto"):
        if field.number == 15:
            sparse += 1
        if field.number != 5:
            continue
        pw.expect(field, pw.LENGTH, wire.what, "GraphProto.initializer")
        if len(entries) >= limits.max_entries:
            raise LimitExceeded(
                f"ONNX graph has more than {limits.max_entries:,} initializers (use --max-entries to raise the limit)"
            )
        name, entry = _tensor(wire, field, path, external, len(entries))
        if name in entries:
            raise CheckpointError(f"ONNX graph has two initializers named {name!r}")
        entries[name] = entry
    metadata = {"ir_version": str(ir_version)} if ir_version is not None else {}
    if sparse:
        metadata["sparse_initializers_not_listed"] = str(sparse)
    return Checkpoint(path, "onnx", entries, metadata, ordered=True, file_metadata=as_file_metadata(metadata))


def _tensor(wire: pw.Wire, message: pw.Field, path: Path, external: _External, index: int) -> tuple[str, Entry]:
    where = f"initializer {index}"
    dims: list[int] = []
    data_type = None
    name = None
    data: list[tuple[int, pw.Field]] = []  # (field number, field)
    entries: list[pw.Field] = []
    location = 0
    for field in wire.fields(message.offset, message.offset + message.value, where):
        number = field.number
        if number == 1:
            dims.extend(_dims(wire, field, where))
            if len(dims) > MAX_DIMS:
                raise CheckpointError(f"ONNX {where}: more than {MAX_DIMS} dims")
        elif number == 2:
            pw.expect(field, pw.VARINT, wire.what, f"{where}.data_type")
            data_type = field.value
        elif number == 8:
            pw.expect(field, pw.LENGTH, wire.what, f"{where}.name")
            if field.value > MAX_NAME:
                raise CheckpointError(f"ONNX {where}: name is {field.value:,} bytes, over {MAX_NAME:,}")
            name = wire.read(field.offset, field.value).decode("utf-8", "surrogateescape")
            where = f"initializer {name!r}"
        elif number in TYPED or number in (RAW_DATA, STRING_DATA):
            pw.expect(field, pw.LENGTH, wire.what, f"{where}.{TYPED.get(number, ('data', 0))[0]}")
            data.append((number, field))
        elif number == EXTERNAL_DATA:
            pw.expect(field, pw.LENGTH, wire.what, f"{where}.external_data")
            entries.append(field)
            if len(entries) > MAX_EXTERNAL_ENTRIES:
                raise CheckpointError(f"ONNX {where}: more than {MAX_EXTERNAL_ENTRIES} external_data entries")
        elif number == DATA_LOCATION:
            pw.expect(field, pw.VARINT, wire.what, f"{where}.data_location")
            location = field.value
        elif number == SEGMENT:
            raise CheckpointError(f"ONNX {where}: segmented tensors are not supported")
    if name is None:
        raise CheckpointError(f"ONNX {where} has no name")
    if data_type not in DATA_TYPES:
        raise CheckpointError(f"ONNX {where}: data_type {data_type} is not a tensor type this version knows")
    dtype_name = DATA_TYPES[data_type]
    shape = tuple(dims)
    numel = 1
    for d in shape:
        numel *= d
    if dtype_name is None:  # strings
        return name, Value(opaque_class("onnx.TensorProto[STRING]")(list(shape)))
    dtype = dtypes.BY_NAME[dtype_name]
    nbytes = dtype.nbytes(numel)
    if location == 1:
        if data:
            raise CheckpointError(f"ONNX {where}: data_location is EXTERNAL but the tensor holds data too")
        storage = external.storage(wire, entries, name, dtype, nbytes, where)
        return name, TensorRef(dtype, shape, _row_major(shape), storage)
    if location != 0:
        raise CheckpointError(f"ONNX {where}: data_location {location} is not DEFAULT or EXTERNAL")
    if len(data) > 1:
        raise CheckpointError(f"ONNX {where}: elements in more than one field (or a repeated field in pieces)")
    if not data:
        if numel:
            raise CheckpointError(f"ONNX {where}: {numel:,} elements but no data")
        data = [(RAW_DATA, pw.Field(RAW_DATA, pw.LENGTH, 0, message.offset))]
    number, field = data[0]
    if number == STRING_DATA:
        raise CheckpointError(f"ONNX {where}: string_data on a {dtype_name} tensor")
    if number != RAW_DATA and number != _TYPED_FIELD.get(dtype.name, 5):
        raise CheckpointError(f"ONNX {where}: a {dtype_name} tensor cannot hold its values in {TYPED[number][0]}")
    fixed = TYPED[number][1] if number in TYPED else 1
    if number == RAW_DATA or fixed:
        if field.value != nbytes:
            what = "raw_data" if number == RAW_DATA else TYPED[number][0]
            raise CheckpointError(
                f"ONNX {where}: {what} is {field.value:,} bytes; {dtype_name} {list(shape)} needs {nbytes:,}"
            )
        storage = StorageRef(path, name, field.offset, nbytes, dtype)
        return name, TensorRef(dtype, shape, _row_major(shape), storage)
    values = numel if dtype.bits >= 8 else dtype.nbytes(numel) // 4  # sub-byte types: several to a value
    if not values <= field.value <= numel * pw.MAX_VARINT:
        raise CheckpointError(
            f"ONNX {where}: {TYPED[number][0]} is {field.value:,} bytes, which cannot hold {numel:,} varints"
        )
    packing = Packing(VARINT, field.offset, field.value, nbytes)
    storage = StorageRef(path, name, 0, nbytes, dtype, packing=packing)
    return name, TensorRef(dtype, shape, _row_major(shape), storage)


def _dims(wire: pw.Wire, field: pw.Field, where: str) -> list[int]:
    if field.wire == pw.VARINT:
        values = [field.value]
    else:
        pw.expect(field, pw.LENGTH, wire.what, f"{where}.dims")
        if field.value > MAX_DIMS * pw.MAX_VARINT:
            raise CheckpointError(f"ONNX {where}: more than {MAX_DIMS} dims")
        values, at, end = [], field.offset, field.offset + field.value
        while at < end:
            value, at = wire.varint(at, end, f"{where}.dims")
            values.append(value)
    dims = [pw.signed(v) for v in values]
    if any(d < 0 for d in dims):
        raise CheckpointError(f"ONNX {where}: dims {dims} has a negative entry")
    return dims


class _External:
    """External data files, each confined to the model's directory and opened once."""

    def __init__(self, model: Path) -> None:
        self.base = model.resolve().parent
        self._opened: dict[Path, source.Source] = {}

    def storage(
        self, wire: pw.Wire, fields: list[pw.Field], name: str, dtype: dtypes.DType, nbytes: int, where: str
    ) -> StorageRef:
        info: dict[str, str] = {}
        for field in fields:
            key = value = ""
            for part in wire.fields(field.offset, field.offset + field.value, f"{where}.external_data"):
                pw.expect(part, pw.LENGTH, wire.what, f"{where}.external_data")
                if part.value > MAX_NAME:
                    raise CheckpointError(f"ONNX {where}: an external_data entry is over {MAX_NAME:,} bytes")
                text = wire.read(part.offset, part.value).decode("utf-8", "surrogateescape")
                key, value = (text, value) if part.number == 1 else (key, text) if part.number == 2 else (key, value)
            info[key] = value
        location = info.get("location")
        if not location:
            raise CheckpointError(f"ONNX {where}: external data has no location")
        file = self._confined(location, where)
        offset = _number(info.get("offset", "0"), "offset", where)
        opened = self._open(file, where)
        length = _number(info["length"], "length", where) if "length" in info else opened.size - offset
        if length != nbytes:
            raise CheckpointError(f"ONNX {where}: external data is {length:,} bytes; {dtype.name} needs {nbytes:,}")
        if offset + length > opened.size:
            raise CheckpointError(
                f"ONNX {where}: external data [{offset:,}, {offset + length:,}) runs past the end of"
                f" {location!r} ({opened.size:,} bytes)"
            )
        return StorageRef(file, name, offset, nbytes, dtype)

    def _confined(self, location: str, where: str) -> Path:
        if "\0" in location or os.path.isabs(location) or location.startswith(("/", "\\")):
            raise CheckpointError(f"ONNX {where}: external data location {location!r} is not a relative path")
        file = (self.base / location).resolve()
        if file != self.base and self.base not in file.parents:
            raise CheckpointError(f"ONNX {where}: external data location {location!r} leaves the model's directory")
        return file

    def _open(self, file: Path, where: str) -> source.Source:
        opened = self._opened.get(file)
        if opened is None:
            try:
                opened = self._opened[file] = source.open_source(file)
            except FileNotFoundError:
                raise CheckpointError(f"ONNX {where}: external data file {file.name!r} is missing") from None
            except OSError as exc:
                raise CheckpointError(f"ONNX {where}: cannot read external data ({exc.strerror or exc})") from None
        return opened


def _number(text: str, what: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise CheckpointError(f"ONNX {where}: external data {what} {text[:40]!r} is not a non-negative integer")
    return int(text)
