"""Integer weights packed into 32-bit words: GPTQ, AWQ, compressed-tensors
``pack-quantized``, MLX affine. Recognised from names and shapes, with the
config's bits and group size where it gives them; a layout whose shapes do not
add up stays storage (and says why when a config claimed it)."""

from __future__ import annotations

from collections.abc import Mapping

from paraminspect.model import TensorRef
from paraminspect.quant.common import PACKABLE_BITS, ceil_div, group_label, sibling, split, storage_bytes
from paraminspect.quant.config import QuantConfig, number
from paraminspect.quant.logical import Logical, Recognition
from paraminspect.quant.small import integers_many

_WORDS = ("int32", "uint32")
GPTQ_BITS = (2, 3, 4, 8)  # AutoGPTQ/GPTQModel: 3 bits pack 32 values into 3 words, as one bit stream


def _is_2d(ref: TensorRef | None, *dtypes: str) -> bool:
    return ref is not None and len(ref.shape) == 2 and (not dtypes or ref.dtype.name in dtypes)


def _method(cfg: QuantConfig | None) -> str | None:
    return cfg.method if cfg is not None else None


def gptq_awq(
    tensors: Mapping[str, TensorRef], entries: Mapping[str, object], cfg: QuantConfig | None, found: Recognition
) -> None:
    """``qweight``/``qzeros``/``scales`` (+ ``g_idx``): GPTQ packs along the input
    dimension ([in·bits/32, out]), AWQ along the output ([in, out·bits/32]); the
    shapes tell which, whatever the config claims."""
    for name, qweight in tensors.items():
        prefix = split(name, "qweight") if name.endswith("qweight") else None
        if prefix is None:
            continue
        qzeros, scales = tensors.get(sibling(prefix, "qzeros")), tensors.get(sibling(prefix, "scales"))
        if not (_is_2d(qweight, *_WORDS) and _is_2d(qzeros, *_WORDS) and _is_2d(scales)):
            continue
        assert qzeros is not None and scales is not None
        groups, out = scales.shape
        rows, cols = qweight.shape
        g_idx = tensors.get(sibling(prefix, "g_idx"))
        layout = "gptq" if cols == out else "awq"
        if layout == "gptq":  # qzeros [groups, out·bits/32]; 3 bits run across words (32 values in 3)
            packed_zeros = qzeros.shape[1] * 32
            bits = packed_zeros // out if out and packed_zeros % out == 0 else 0
            columns = rows * 32 // bits if bits and rows * 32 % bits == 0 else 0
        else:
            pack = out // cols if cols and out % cols == 0 else 0
            bits = 32 // pack if pack and 32 % pack == 0 else 0
            columns = rows
        wanted = number(cfg.get("bits")) if cfg is not None and cfg.method in ("gptq", "awq") else None
        if cfg is not None and cfg.method == "awq":
            wanted = number(cfg.get("w_bit")) or wanted
        ok = (
            bits in (GPTQ_BITS if layout == "gptq" else PACKABLE_BITS)
            and columns > 0
            and qzeros.shape[0] == groups
            and groups > 0
            and qweight.shape[0] > 0
        )
        if ok and layout == "awq":
            ok = qzeros.shape[1] * 32 == out * bits
        if ok and g_idx is not None:
            ok = g_idx.shape == (columns,) and g_idx.dtype.name in ("int32", "int64")
        logical_name = sibling(prefix, "weight")
        if not ok or (logical_name in entries and logical_name not in tensors) or logical_name in tensors:
            if _method(cfg) in ("gptq", "awq"):
                found.notes.append(f"{name}: shapes do not fit {layout} packing; shown as stored")
            continue
        if wanted is not None and wanted != bits:
            found.notes.append(f"{name}: config says {wanted} bits, the shapes say {bits}; read as {bits}-bit")
        group_size = number(cfg.get("group_size") or cfg.get("q_group_size")) if cfg is not None else None
        if group_size is None or group_size <= 0 or ceil_div(columns, group_size) != groups:
            group_size = columns // groups if columns % groups == 0 else None
        if group_size is None:
            continue
        method = _method(cfg)
        if method in ("gptq", "awq") and method != layout:
            found.notes.append(
                f"{prefix or name}: config says {method}, tensors are packed as {layout}; read as {layout}"
            )
        elif layout == "awq" and g_idx is not None:
            found.notes.append(f"{prefix or name}: g_idx suggests gptq, tensors are packed as awq; read as awq")
        storage = tuple(n for n in (name, sibling(prefix, "qzeros"), sibling(prefix, "scales")) if n in tensors)
        if g_idx is not None:
            storage += (sibling(prefix, "g_idx"),)
        fmt = str(cfg.get("checkpoint_format", "gptq")) if cfg is not None and layout == "gptq" else layout
        settings = {
            "bits": bits,
            "group_size": group_size,
            "layout": layout,
            "format": fmt,
            "desc_act": bool(cfg.get("desc_act")) if cfg is not None else False,
        }
        found.add(
            Logical(
                logical_name,
                f"int{bits}",
                (out, columns),
                layout,
                group_label(layout, group_size, columns),
                storage,
                storage_bytes(tensors, storage),
                settings,
            )
        )


def _ct_bits(cfg: QuantConfig | None) -> tuple[int | None, str | None, int | None]:
    """(num_bits, strategy, group_size) of the config's weight scheme when all groups agree."""
    if cfg is None or cfg.method != "compressed-tensors":
        return None, None, None
    groups = cfg.get("config_groups")
    if not isinstance(groups, dict):
        return None, None, None
    seen = set()
    for group in groups.values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if isinstance(weights, dict):
            seen.add((number(weights.get("num_bits")), weights.get("strategy"), number(weights.get("group_size"))))
    return seen.pop() if len(seen) == 1 else (None, None, None)


def compressed_tensors(
    tensors: Mapping[str, TensorRef], entries: Mapping[str, object], cfg: QuantConfig | None, found: Recognition
) -> None:
    """``weight_packed`` int32 [out, in·bits/32] (offset to unsigned, low bits first),
    ``weight_shape`` (the logical shape), ``weight_scale`` [out, groups], optional
    ``weight_zero_point`` and ``weight_g_idx``."""
    cfg_bits, strategy, cfg_group = _ct_bits(cfg)
    if cfg is not None and cfg.method == "compressed-tensors":
        fmt = cfg.get("format")
        if (
            isinstance(fmt, str)
            and fmt not in ("pack-quantized", "mixed-precision")
            and any(split(n, "weight_packed") is not None and r.dtype.name == "int32" for n, r in tensors.items())
        ):
            found.notes.append(f"config format is {fmt!r} but tensors are pack-quantized; read as pack-quantized")
    candidates: list[tuple[str, str, TensorRef, TensorRef, TensorRef | None]] = []
    for name, packed in tensors.items():
        prefix = split(name, "weight_packed") if name.endswith("weight_packed") else None
        if prefix is None or not _is_2d(packed, "int32"):
            continue
        scale = tensors.get(sibling(prefix, "weight_scale"))
        if scale is None or sibling(prefix, "weight") in entries:  # a real weight of that name: leave both be
            continue
        candidates.append((name, prefix, packed, scale, tensors.get(sibling(prefix, "weight_shape"))))
    refs = {c[0]: c[4] for c in candidates if c[4] is not None}
    shapes = dict(zip(refs, integers_many(list(refs.values())), strict=True))  # few reads for thousands
    for name, prefix, packed, scale, _ in candidates:
        rows, words = packed.shape
        shape = shapes.get(name)
        if shape is not None and (len(shape) != 2 or shape[0] != rows or shape[1] <= 0):
            found.notes.append(f"{name}: weight_shape {list(shape)} does not fit the packed tensor; shown as stored")
            continue
        if shape is not None:
            bits = next((b for b in PACKABLE_BITS if ceil_div(shape[1] * b, 32) == words), 0)
            if cfg_bits in PACKABLE_BITS and ceil_div(shape[1] * cfg_bits, 32) == words:
                bits = cfg_bits
            columns = shape[1]
        else:
            bits = cfg_bits or 0
            columns = words * 32 // bits if bits in PACKABLE_BITS else 0
        if bits not in PACKABLE_BITS or columns <= 0:
            continue
        if cfg_bits is not None and cfg_bits != bits:
            found.notes.append(f"{name}: config says {cfg_bits} bits, the shapes say {bits}; read as {bits}-bit")
        groups = scale.shape[-1] if len(scale.shape) == 2 and scale.shape[0] == rows else (1 if scale.numel == 1 else 0)
        if groups <= 0 or (strategy == "group" and cfg_group and ceil_div(columns, cfg_group) != groups):
            continue
        group_size = cfg_group if strategy == "group" and cfg_group else ceil_div(columns, groups)
        label = (
            "compressed-tensors tensor" if scale.numel == 1 else group_label("compressed-tensors", group_size, columns)
        )
        leaves = ("weight_shape", "weight_scale", "weight_zero_point", "weight_g_idx")
        storage = (name, *(n for n in (sibling(prefix, leaf) for leaf in leaves) if n in tensors))
        settings = {"bits": bits, "group_size": group_size, "groups": groups}
        found.add(
            Logical(
                sibling(prefix, "weight"),
                f"int{bits}",
                (rows, columns),
                "compressed-tensors",
                label,
                storage,
                storage_bytes(tensors, storage),
                settings,
            )
        )


def _mlx_setting(cfg: QuantConfig | None, prefix: str) -> tuple[int | None, int | None]:
    if cfg is None or cfg.method != "mlx":
        return None, None
    layer = cfg.get(prefix)
    holder = layer if isinstance(layer, dict) else cfg.settings
    return number(holder.get("bits")), number(holder.get("group_size"))


def mlx(tensors: Mapping[str, TensorRef], cfg: QuantConfig | None, found: Recognition) -> None:
    """``weight`` uint32 [..., in·bits/32] with ``scales`` and ``biases`` [..., in/group_size]."""
    for name, weight in tensors.items():
        if weight.dtype.name != "uint32" or len(weight.shape) < 2:
            continue
        prefix = split(name, "weight")
        if prefix is None:
            continue
        scales, biases = tensors.get(sibling(prefix, "scales")), tensors.get(sibling(prefix, "biases"))
        if scales is None or biases is None or scales.shape != biases.shape:
            continue
        if scales.shape[:-1] != weight.shape[:-1] or not scales.shape[-1]:
            continue
        words, groups = weight.shape[-1], scales.shape[-1]
        bits, group_size = _mlx_setting(cfg, prefix)
        candidates = [
            (b, g)
            for b in PACKABLE_BITS
            for g in (32, 64, 128)
            if words * 32 % b == 0 and ceil_div(words * 32 // b, g) == groups
        ]
        if bits is not None and group_size is not None:
            if (bits, group_size) not in candidates:
                found.notes.append(
                    f"{name}: config bits {bits}, group size {group_size} do not fit the shapes; shown as stored"
                )
                continue
        elif (4, 64) in candidates:  # MLX's defaults
            bits, group_size = 4, 64
            if len(candidates) > 1 and not any("no MLX config" in n for n in found.notes):
                found.notes.append("no MLX config beside the weights: assumed 4 bits, group size 64")
        elif len(candidates) == 1:
            bits, group_size = candidates[0]
        else:
            continue
        columns = words * 32 // bits
        storage = (name, sibling(prefix, "scales"), sibling(prefix, "biases"))
        settings = {"bits": bits, "group_size": group_size}
        found.add(
            Logical(
                name,
                f"int{bits}",
                (*weight.shape[:-1], columns),
                "mlx",
                group_label("mlx", group_size, columns),
                storage,
                storage_bytes(tensors, storage),
                settings,
            )
        )
