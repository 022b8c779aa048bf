"""Hostile ONNX files for the corpus, written field by field: overlong or truncated varints,
lengths past their parent message, wrong wire types, lying dims, external paths leaving the folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Build = Callable[[Path, Path], None]


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes | int, wire: int | None = None) -> bytes:
    """One field: an int as a varint (wire type 0), bytes as length-delimited (2)."""
    if isinstance(payload, int):
        return varint(number << 3 | (0 if wire is None else wire)) + varint(payload)
    return varint(number << 3 | (2 if wire is None else wire)) + varint(len(payload)) + payload


def tensor(name: str = "w", dims: tuple[int, ...] = (4,), data_type: int = 1, **extra: bytes) -> bytes:
    body = b"".join(field(1, d) for d in dims) + field(2, data_type) + field(8, name.encode())
    return body + b"".join(extra.values())


def model(*initializers: bytes, graph_extra: bytes = b"") -> bytes:
    graph = field(2, b"g") + b"".join(field(5, t) for t in initializers) + graph_extra
    return field(1, 9) + field(2, b"hostile") + field(7, graph)


def _write(content: bytes) -> Build:
    return lambda path, marker: path.write_bytes(content)


def _escape(path: Path, marker: Path) -> None:
    entries = b"".join(field(13, field(1, k.encode()) + field(2, v.encode())) for k, v in [("location", "../../x")])
    path.write_bytes(model(tensor(rest=entries + field(14, 1))))


RAW = field(9, b"\0" * 16)
SHAPES = ("tree", "shapes")
ONNX_CASES: dict[str, tuple[Build, tuple[str, ...], int, str]] = {
    "onnx_overlong_varint": (_write(field(1, 9) + b"\x3a" + b"\xff" * 11 + b"\x01"), SHAPES, 2, "longer than 10 bytes"),
    "onnx_truncated_varint": (_write(field(1, 9) + b"\x3a\xff\xff"), SHAPES, 2, "runs past the end of its message"),
    "onnx_graph_past_file": (_write(field(1, 9) + b"\x12\x01h" + b"\x3a" + varint(1 << 40)), SHAPES, 2, "past the end"),
    "onnx_tensor_past_graph": (
        _write(field(1, 9) + field(7, b"\x2a" + varint(60) + tensor(extra=RAW)) + field(2, b"x" * 60)),
        SHAPES,
        2,
        "past the end of its message",
    ),
    "onnx_wrong_wire_type": (_write(model(tensor(data_type=1)[:-3] + field(2, b"x") + RAW)), SHAPES, 2, "expected"),
    "onnx_group_wire_type": (_write(model(tensor(extra=RAW), graph_extra=b"\x2b")), SHAPES, 2, "wire type 3"),
    "onnx_dims_lie": (
        _write(model(tensor(dims=(1 << 40,), extra=RAW))),
        SHAPES,
        2,
        "raw_data is 16 bytes; float32 [1099511627776] needs 4,398,046,511,104",
    ),
    "onnx_negative_dim": (_write(model(tensor(dims=((1 << 64) - 4,), extra=RAW))), SHAPES, 2, "negative entry"),
    "onnx_external_escape": (_escape, SHAPES, 2, "leaves the model's directory"),
    "onnx_varints_short": (
        _write(model(tensor(dims=(1000,), data_type=7, extra=field(7, varint(300) * 500)))),  # 2 bytes each
        ("stats",),
        2,
        "packed varints end after 500 values; its dims say 1,000",
    ),
}
