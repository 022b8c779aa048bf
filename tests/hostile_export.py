"""Hostile torch.export archives (``.pt2``) for the corpus, written record by record with
zipfile (no torch): configs naming records outside their folder, sizes past their record,
JSON bombs, symbolic sizes, pickles that would run code if unpickled."""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.hostile_build import touch

Build = Callable[[Path, Path], None]


def meta(sizes: list[Any], strides: list[Any] | None = None, dtype: int = 7, offset: Any = None) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "sizes": sizes,
        "requires_grad": False,
        "device": {"type": "cpu", "index": None},
        "strides": strides if strides is not None else [{"as_int": 1}] * len(sizes),
        "storage_offset": offset if offset is not None else {"as_int": 0},
        "layout": 7,
    }


def payload(record: str, tensor: dict[str, Any] | None, *, pickled: bool = False) -> dict[str, Any]:
    return {"path_name": record, "is_param": False, "use_pickle": pickled, "tensor_meta": tensor}


GOOD = {"w": payload("weight_0", meta([{"as_int": 2}]))}


def pt2(
    path: Path,
    weights: dict[str, Any] | str | bytes = GOOD,
    constants: dict[str, Any] | str | bytes | None = None,
    records: dict[str, bytes] | None = None,
    archive_format: bytes = b"pt2",
) -> None:
    """An archive laid out as torch.export.save lays it out (top folder ``archive/``)."""

    def text(config: dict[str, Any] | str | bytes) -> bytes:
        if isinstance(config, dict):
            return json.dumps({"config": config}).encode()
        return config if isinstance(config, bytes) else config.encode()

    data = {"data/weights/weight_0": struct.pack("<2f", 1.5, -2.0), **(records or {})}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, content in data.items():
            z.writestr(f"archive/{name}", content)
        z.writestr("archive/data/weights/model_weights_config.json", text(weights))
        z.writestr("archive/data/constants/model_constants_config.json", text(constants or {}))
        z.writestr("archive/models/model.json", b"{}")
        z.writestr("archive/archive_format", archive_format)
        z.writestr("archive/archive_version", b"0")
        z.writestr("archive/.data/version", b"6\n")  # as torch's stream writer records it
        z.writestr("archive/byteorder", b"little")


def _build(**kwargs: Any) -> Build:
    return lambda path, marker: pt2(path, **kwargs)


def _code_pickle(marker: Path) -> bytes:
    # os.system('touch MARKER') as a protocol-0 pickle: what pickle.loads would run
    return b"cos\nsystem\n(S'" + touch(marker).encode() + b"'\ntR."


def _custom_object(path: Path, marker: Path) -> None:
    """A custom object constant (opaque_obj_0) whose pickle runs code: listed, never loaded."""
    pt2(
        path,
        constants={"obj": payload("opaque_obj_0", None, pickled=True)},
        records={"data/constants/opaque_obj_0": _code_pickle(marker)},
    )


def _pickled_weight(path: Path, marker: Path) -> None:
    """A pickled weight (a torch.save zip in its record) whose data.pkl runs code."""
    import io

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", _code_pickle(marker))
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/version", b"3\n")  # as torch.save writes it
    weights = {**GOOD, "p": payload("weight_1", meta([{"as_int": 2}]), pickled=True)}
    pt2(path, weights=weights, records={"data/weights/weight_1": inner.getvalue()})


SHAPES = ("tree", "shapes")
UNSAFE = "globals outside the allow-list"
EXPORT_CASES: dict[str, tuple[Build, tuple[str, ...], int, str, int | None, str]] = {
    # name: (build, commands, exit code, phrase of the error, scan's exit code (None: the same), scan's phrase)
    "pt2_record_escapes_folder": (
        _build(weights={"w": payload("../../models/model.json", meta([{"as_int": 2}]))}),
        SHAPES,
        2,
        "is not a record in data/weights/",
        None,
        "",
    ),
    "pt2_record_missing": (
        _build(weights={"w": payload("weight_9", meta([{"as_int": 2}]))}),
        SHAPES,
        2,
        "'weight_9' is not a record",
        None,
        "",
    ),
    "pt2_size_past_record": (
        _build(weights={"w": payload("weight_0", meta([{"as_int": 1 << 40}]))}),
        SHAPES,
        2,
        "tensor view runs past its storage",
        None,
        "",
    ),
    "pt2_stride_past_record": (
        _build(weights={"w": payload("weight_0", meta([{"as_int": 2}], [{"as_int": 1 << 50}]))}),
        SHAPES,
        2,
        "tensor view runs past its storage",
        None,
        "",
    ),
    "pt2_negative_offset": (
        _build(weights={"w": payload("weight_0", meta([{"as_int": 1}], offset={"as_int": -1}))}),
        SHAPES,
        2,
        "storage offset -1",
        None,
        "",
    ),
    "pt2_symbolic_size": (
        _build(weights={"w": payload("weight_0", meta([{"as_expr": {"expr_str": "s0"}}]))}),
        SHAPES,
        2,
        "not a plain integer",
        None,
        "",
    ),
    "pt2_unknown_dtype": (
        _build(weights={"w": payload("weight_0", meta([{"as_int": 2}], dtype=99))}),
        SHAPES,
        2,
        "unknown dtype '99'",
        None,
        "",
    ),
    "pt2_record_not_whole_elements": (
        _build(weights={"w": payload("weight_0", meta([{"as_int": 1}], dtype=11))}),
        SHAPES,
        2,
        "holds 8 bytes, not whole complex128s",
        None,
        "",
    ),
    "pt2_json_bomb": (_build(weights=b"[" * 3_000_000), SHAPES, 2, "JSON values, over the", None, ""),
    "pt2_json_deep": (_build(weights=b"[" * 200_000 + b"]" * 200_000), SHAPES, 2, "is not valid JSON", None, ""),
    "pt2_json_many_dims": (
        _build(weights={"w": payload("weight_0", meta([{"as_int": 1}] * 100_000))}),
        SHAPES,
        2,
        "at most 64 integers",
        None,
        "",
    ),
    "pt2_duplicate_key": (
        _build(weights='{"config": {"w": {}, "w": {}}}'),
        SHAPES,
        2,
        "has the key 'w' twice",
        None,
        "",
    ),
    "pt2_wrong_format_value": (_build(archive_format=b"pt3"), SHAPES, 2, "not a torch.export (pt2) archive", None, ""),
    "pt2_custom_object_runs_code": (_custom_object, SHAPES, 0, "", 1, UNSAFE),
    "pt2_pickled_weight_runs_code": (_pickled_weight, ("tree", "shapes", "stats"), 0, "", 1, UNSAFE),
}
