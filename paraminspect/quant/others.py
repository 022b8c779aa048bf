"""Weights stored one element per byte (or less) beside their scales: FP8
(``float-quantized``: a float8 ``weight`` and its ``weight_scale``),
bitsandbytes int8 (``SCB``) and 4-bit (``absmax``, ``quant_map``, a
``quant_state`` JSON), and torch's own quantized tensors in ``.pt`` files."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from paraminspect.model import Opaque, StorageRef, TensorRef, Value
from paraminspect.quant.common import ceil_div, sibling, split, storage_bytes
from paraminspect.quant.config import QuantConfig
from paraminspect.quant.logical import QTENSOR, Logical, Recognition
from paraminspect.quant.small import json_object


def fp8(tensors: Mapping[str, TensorRef], cfg: QuantConfig | None, found: Recognition) -> None:
    """A float8 weight with ``weight_scale`` (or DeepSeek's ``weight_scale_inv``):
    per tensor, per output channel, or per block."""
    for name, weight in tensors.items():
        if not weight.dtype.name.startswith("float8") or not name.endswith("weight"):
            continue
        scale_name = next((name + s for s in ("_scale", "_scale_inv") if name + s in tensors), None)
        if scale_name is None:
            continue
        scale = tensors[scale_name]
        shape = weight.shape
        if scale.numel == 1:
            label = "fp8 tensor"
        elif len(shape) == 2 and scale.shape in ((shape[0],), (shape[0], 1)):
            label = "fp8 channel"
        elif len(shape) == 2 and len(scale.shape) == 2 and all(scale.shape):
            block = ceil_div(shape[0], scale.shape[0])
            if ceil_div(shape[0], block) != scale.shape[0] or ceil_div(shape[1], block) != scale.shape[1]:
                continue
            label = f"fp8 block{block}"
        else:
            continue
        storage = (name, scale_name)
        settings = {"scale": scale_name, "inverse": scale_name.endswith("_inv")}
        found.add(
            Logical(name, weight.dtype.name, shape, "fp8", label, storage, storage_bytes(tensors, storage), settings)
        )


def bnb_int8(tensors: Mapping[str, TensorRef], found: Recognition) -> None:
    """LLM.int8(): ``weight`` int8 [out, in] and ``SCB`` float32 [out] (row absmax)."""
    for name, scb in tensors.items():
        prefix = split(name, "SCB") if name.endswith("SCB") else None
        if prefix is None:
            continue
        weight_name = sibling(prefix, "weight")
        weight = tensors.get(weight_name)
        if weight is None or weight.dtype.name != "int8" or len(weight.shape) != 2 or scb.shape != weight.shape[:1]:
            continue
        fmt_name = sibling(prefix, "weight_format")
        storage = (weight_name, name, *((fmt_name,) if fmt_name in tensors else ()))
        found.add(
            Logical(
                weight_name, "int8", weight.shape, "bnb-int8", "bnb int8", storage, storage_bytes(tensors, storage), {}
            )
        )


_STATE = ".quant_state.bitsandbytes__"


def bnb_4bit(tensors: Mapping[str, TensorRef], found: Recognition) -> None:
    """``weight`` uint8 (two codes per byte), ``absmax`` per block (itself quantized
    when ``nested_absmax`` is there), ``quant_map`` (the 16 code values), and the
    ``quant_state`` JSON with the logical shape, block size and quant type."""
    for name, state_ref in tensors.items():
        at = name.rfind(_STATE)
        if at < 0:
            continue
        base, named_type = name[:at], name[at + len(_STATE) :]
        weight = tensors.get(base)
        absmax, quant_map = tensors.get(base + ".absmax"), tensors.get(base + ".quant_map")
        if weight is None or absmax is None or quant_map is None or weight.dtype.name != "uint8":
            continue
        state = json_object(state_ref)
        if state is None:
            continue
        shape, blocksize, quant_type = state.get("shape"), state.get("blocksize"), state.get("quant_type")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 8:
            continue
        if type(blocksize) is not int or blocksize <= 0 or quant_type not in ("nf4", "fp4"):
            continue
        numel = math.prod(shape)
        if weight.numel != ceil_div(numel, 2) or absmax.numel != ceil_div(numel, blocksize) or quant_map.numel != 16:
            continue
        if named_type != quant_type:
            found.notes.append(
                f"{name}: the name says {named_type}, its quant_state says {quant_type}; read as {quant_type}"
            )
        nested = tuple(n for n in (base + ".nested_absmax", base + ".nested_quant_map") if n in tensors)
        if state.get("nested_blocksize") is not None and len(nested) != 2:
            continue
        storage = (base, base + ".absmax", base + ".quant_map", *nested, name)
        settings = {"blocksize": blocksize, "quant_type": quant_type, "state": state}
        found.add(
            Logical(
                base,
                quant_type,
                tuple(shape),
                "bnb-4bit",
                f"bnb {quant_type} b{blocksize}",
                storage,
                storage_bytes(tensors, storage),
                settings,
            )
        )


_SCHEMES = {
    "torch.per_tensor_affine": "per-tensor affine",
    "torch.per_tensor_symmetric": "per-tensor symmetric",
    "torch.per_channel_affine": "per-channel affine",
    "torch.per_channel_symmetric": "per-channel symmetric",
    "torch.per_channel_affine_float_qparams": "per-channel float qparams",
}
_Q_BITS = {"qint8": 8, "quint8": 8, "qint32": 32, "quint4x2": 4, "quint2x4": 2}


def qtensor_parts(value: Any) -> tuple[StorageRef, int, tuple[int, ...], tuple[int, ...], tuple[Any, ...]] | None:
    """(storage, offset, size, stride, quantizer params) of a ``_rebuild_qtensor`` placeholder."""
    if not isinstance(value, Opaque) or value.qualname != QTENSOR or value.kwargs:
        return None
    args = value.args
    if len(args) < 5 or not isinstance(args[0], StorageRef) or type(args[1]) is not int or args[1] < 0:
        return None
    size, stride, qparams = args[2], args[3], args[4]
    for dims in (size, stride):
        if not isinstance(dims, tuple) or not all(type(d) is int and d >= 0 for d in dims) or len(dims) > 64:
            return None
    if len(size) != len(stride) or not isinstance(qparams, tuple) or not qparams:
        return None
    storage, offset = args[0], args[1]
    span = 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else 0
    if offset + span > storage.numel or math.prod(size) > max(storage.numel, 1):
        return None  # a view reaching past its storage (or repeating it) is not decoded as a weight
    return storage, offset, size, stride, qparams


def _scheme_name(qparams: tuple[Any, ...]) -> str | None:
    return _SCHEMES.get(getattr(qparams[0], "qualname", ""))


def torch_qtensors(entries: Mapping[str, object], found: Recognition) -> None:
    """``torch._utils._rebuild_qtensor`` placeholders: their integer storage, shape, and
    quantizer (scale and zero point, or per-channel scales, zero points and axis)."""
    for name, entry in entries.items():
        parts = qtensor_parts(entry.value) if isinstance(entry, Value) else None
        if parts is None:
            continue
        storage, _, size, _, qparams = parts
        scheme = _scheme_name(qparams)
        bits = _Q_BITS.get(storage.dtype.name)
        if scheme is None or bits is None:
            continue
        numel = math.prod(size)
        extra = sum(p.nbytes for p in qparams if isinstance(p, TensorRef))
        if scheme.startswith("per-channel"):
            if len(qparams) != 4 or not all(isinstance(p, TensorRef) for p in qparams[1:3]):
                continue
            axis = qparams[3]
            if type(axis) is not int or not 0 <= axis < len(size) or qparams[1].numel != size[axis]:
                continue
            label = f"torch {scheme} (axis {axis})"
        else:
            if len(qparams) != 3 or not all(isinstance(p, int | float) for p in qparams[1:]):
                continue
            label = f"torch {scheme}"
        nbytes = ceil_div(numel * bits, 8) + extra
        found.add(Logical(name, storage.dtype.name, size, "torch", label, (name,), nbytes, {"bits": bits}))
