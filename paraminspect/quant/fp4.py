"""Four-bit floats two to a byte: compressed-tensors ``nvfp4-pack-quantized`` and
``mxfp4-pack-quantized``.

Both store ``weight_packed`` uint8 [out, in/2] (E2M1 codes, the first of each
pair in the low nibble) and a ``weight_scale`` per group of the row: NVFP4 an
FP8 E4M3 scale per 16 values and a ``weight_global_scale`` that divides it;
MXFP4 an E8M0 exponent (uint8, 2^(e-127)) per 32 values. The scale's dtype tells
the two apart, whatever the config's ``format`` says (a note says so then).
"""

from __future__ import annotations

from collections.abc import Mapping

from paraminspect.model import TensorRef
from paraminspect.quant.common import ceil_div, sibling, split, storage_bytes
from paraminspect.quant.config import QuantConfig, number
from paraminspect.quant.logical import Logical, Recognition
from paraminspect.quant.small import integers

FORMATS = {"nvfp4": "nvfp4-pack-quantized", "mxfp4": "mxfp4-pack-quantized"}
_GROUP = {"nvfp4": 16, "mxfp4": 32}
_E8M0 = ("uint8", "float8_e8m0fnu")


def _config_group(cfg: QuantConfig | None) -> int | None:
    """The group size of the config's 4-bit float weights, when every group agrees."""
    groups = cfg.get("config_groups") if cfg is not None and cfg.method == "compressed-tensors" else None
    if not isinstance(groups, dict):
        return None
    seen = set()
    for group in groups.values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if isinstance(weights, dict) and weights.get("type") == "float" and number(weights.get("num_bits")) == 4:
            seen.add(number(weights.get("group_size")))
    return seen.pop() if len(seen) == 1 else None


def _kind(scale: TensorRef, global_scale: TensorRef | None) -> str | None:
    if scale.dtype.name == "float8_e4m3fn" and global_scale is not None and global_scale.numel == 1:
        return "nvfp4"
    if scale.dtype.name in _E8M0 and global_scale is None:
        return "mxfp4"
    return None


def compressed_fp4(
    tensors: Mapping[str, TensorRef], entries: Mapping[str, object], cfg: QuantConfig | None, found: Recognition
) -> None:
    """``weight_packed`` uint8 with ``weight_scale`` (and NVFP4's ``weight_global_scale``)."""
    fmt = cfg.get("format") if cfg is not None and cfg.method == "compressed-tensors" else None
    cfg_group = _config_group(cfg)
    seen: set[str] = set()
    for name, packed in tensors.items():
        if packed.dtype.name != "uint8" or len(packed.shape) != 2:
            continue
        prefix = split(name, "weight_packed")
        if prefix is None:
            continue
        scale = tensors.get(sibling(prefix, "weight_scale"))
        global_scale = tensors.get(sibling(prefix, "weight_global_scale"))
        if scale is None or sibling(prefix, "weight") in entries or len(scale.shape) != 2:
            continue
        kind = _kind(scale, global_scale)
        rows, half = packed.shape
        if kind is None or scale.shape[0] != rows or not half:
            continue
        shape_ref = tensors.get(sibling(prefix, "weight_shape"))
        shape = integers(shape_ref) if shape_ref is not None else None
        columns = shape[1] if shape is not None and len(shape) == 2 and shape[0] == rows else 2 * half
        if ceil_div(columns, 2) != half or columns <= 0:
            continue
        group = cfg_group if cfg_group and ceil_div(columns, cfg_group) == scale.shape[1] else _GROUP[kind]
        if ceil_div(columns, group) != scale.shape[1]:
            found.notes.append(f"{name}: {scale.shape[1]} scales per row do not fit {kind} groups; shown as stored")
            continue
        if isinstance(fmt, str) and fmt in FORMATS.values() and fmt != FORMATS[kind] and kind not in seen:
            found.notes.append(f"config format is {fmt!r}, tensors are laid out as {kind}; read as {kind}")
        seen.add(kind)
        leaves = ("weight_shape", "weight_scale", "weight_global_scale")
        storage = (name, *(n for n in (sibling(prefix, leaf) for leaf in leaves) if n in tensors))
        found.add(
            Logical(
                sibling(prefix, "weight"),
                "float4_e2m1fn",
                (rows, columns),
                "fp4",
                f"{kind} g{group}",
                storage,
                storage_bytes(tensors, storage),
                {"kind": kind, "group_size": group},
            )
        )
