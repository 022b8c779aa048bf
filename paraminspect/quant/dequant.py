"""A logical weight's values, decoded from its storage tensors block by block.

Rows of the logical matrix come a block at a time (about a million values), so
memory stays bounded by the block plus the per-group scales and zero points,
which are read whole (a small fraction of the weight). numpy is imported inside
the functions only. A scheme this cannot decode says so (:func:`undecodable`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from paraminspect import dtypes
from paraminspect.data.arrays import read_array
from paraminspect.errors import CheckpointError
from paraminspect.model import TensorRef, Value, contiguous_strides
from paraminspect.quant.logical import Logical
from paraminspect.quant.others import qtensor_parts

if TYPE_CHECKING:
    import numpy as np

BLOCK_ELEMENTS = 1 << 20
_AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
_Q_STORAGE = {"qint8": "int8", "quint8": "uint8", "qint32": "int32"}


def undecodable(weight: Logical, entries: Mapping[str, object]) -> str | None:
    """Why ``weight``'s values cannot be decoded here, or None when they can."""
    bits = weight.params.get("bits")
    if weight.family == "awq" and bits != 4:
        return f"awq with {bits} bits is not decoded (only 4-bit AWQ packing is known)"
    if weight.family == "torch" and weight.dtype not in _Q_STORAGE:
        return f"torch {weight.dtype} tensors are not decoded"
    if weight.family == "compressed-tensors":
        zero = entries.get(weight.storage[0].removesuffix("weight_packed") + "weight_zero_point")
        scale = entries.get(weight.storage[0].removesuffix("weight_packed") + "weight_scale")
        if isinstance(zero, TensorRef) and isinstance(scale, TensorRef) and zero.shape != scale.shape:
            return "packed zero points are not decoded"
    if weight.family == "gptq" and weight.params.get("format") not in ("gptq", "gptq_v2"):
        return f"gptq checkpoint format {weight.params.get('format')!r} is not decoded"
    return None


def _rows(ref: TensorRef, first: int, last: int) -> TensorRef:
    """Rows [first, last) of a contiguous tensor, as a view."""
    inner = math.prod(ref.shape[1:])
    shape = (last - first, *ref.shape[1:])
    return replace(
        ref, shape=shape, strides=contiguous_strides(shape), storage_offset=ref.storage_offset + first * inner
    )


def _columns(ref: TensorRef, first: int, last: int) -> TensorRef:
    """Columns [first, last) of a contiguous 2-D tensor, as a strided view."""
    return replace(
        ref, shape=(ref.shape[0], last - first), strides=ref.strides, storage_offset=ref.storage_offset + first
    )


def _contiguous(ref: TensorRef, what: str) -> TensorRef:
    if not ref.is_contiguous:
        raise CheckpointError(f"{what}: quantized storage that is not contiguous is not decoded", ref.storage.path)
    return ref


def _unpack(words: np.ndarray, bits: int, order: tuple[int, ...] | None = None) -> np.ndarray:
    """Values packed 32/bits to a word along the last axis, low bits first (or in ``order``)."""
    import numpy as np

    per = 32 // bits
    shifts = np.arange(per, dtype=np.uint32) * np.uint32(bits)
    values = (words.astype(np.uint32)[..., None] >> shifts) & np.uint32((1 << bits) - 1)
    if order is not None:
        values = values[..., np.argsort(order)]
    return values.reshape(*words.shape[:-1], words.shape[-1] * per).astype(np.int32)


def _unpack_stream(words: np.ndarray, bits: int) -> np.ndarray:
    """Values packed as one little-endian bit stream along the last axis, value k in
    bits [k·bits, (k+1)·bits): GPTQ's 3 bits, 32 values in 3 words, some across a
    word boundary (for 2, 4 and 8 bits this is :func:`_unpack`'s order)."""
    import numpy as np

    count = words.shape[-1] * 32 // bits
    wide = np.zeros((*words.shape[:-1], words.shape[-1] + 1), dtype=np.uint64)
    wide[..., :-1] = words.astype(np.uint32)
    position = np.arange(count, dtype=np.uint64) * np.uint64(bits)
    index, offset = (position // np.uint64(32)).astype(np.intp), position % np.uint64(32)
    window: np.ndarray = wide[..., index] | (wide[..., index + 1] << np.uint64(32))
    values: np.ndarray = (window >> offset) & np.uint64((1 << bits) - 1)
    return values.astype(np.int32)


def _words(words: np.ndarray, bits: int, order: tuple[int, ...] | None = None) -> np.ndarray:
    return _unpack(words, bits, order) if 32 % bits == 0 else _unpack_stream(words, bits)


def _per_row(values: np.ndarray, rows: int) -> np.ndarray:
    """Scales or zero points as [rows, groups] float32 (one value for the whole tensor broadcast)."""
    import numpy as np

    values = values.astype(np.float32)
    if values.size == 1:
        return np.broadcast_to(values.reshape(1, 1), (rows, 1))
    return values.reshape(rows, -1)


def _indices(values: np.ndarray, count: int, groups: int, name: str) -> np.ndarray:
    """A ``g_idx``: ``count`` group numbers, each naming one of ``groups``."""
    import numpy as np

    index = values.astype(np.int64).reshape(-1)
    if index.size != count or (index.size and (index.min() < 0 or index.max() >= groups)):
        raise CheckpointError(f"{name}: g_idx names groups the scales do not have")
    return index


def _block_rows(columns: int, multiple: int = 8) -> int:
    rows = max(1, BLOCK_ELEMENTS // max(columns, 1))
    return max(multiple, rows // multiple * multiple)


def iter_rows(weight: Logical, entries: Mapping[str, object]) -> Iterator[np.ndarray]:
    """The logical weight's values as float32 blocks of whole rows, in order."""
    reason = undecodable(weight, entries)
    if reason is not None:
        raise CheckpointError(f"{weight.name}: {reason}")
    tensors = {n: e for n, e in entries.items() if isinstance(e, TensorRef)}
    decoder = _DECODERS[weight.family]
    try:
        yield from decoder(weight, tensors, entries)
    except CheckpointError as exc:
        if exc.source is not None:
            raise
        first = entries.get(weight.storage[0])
        path = first.storage.path if isinstance(first, TensorRef) else None
        raise CheckpointError(
            exc.message if exc.message.startswith(weight.name) else f"{weight.name}: {exc.message}", path
        ) from None


def dequantize(weight: Logical, entries: Mapping[str, object]) -> np.ndarray:
    """The whole logical weight as float32 (for ``get``)."""
    import numpy as np

    blocks = list(iter_rows(weight, entries))
    if not blocks:
        return np.zeros(weight.shape, dtype=np.float32)
    return np.concatenate(blocks).reshape(weight.shape)


def _gptq_awq(weight: Logical, tensors: Mapping[str, TensorRef], _: Mapping[str, object]) -> Iterator[np.ndarray]:
    import numpy as np

    bits, out, columns = weight.params["bits"], weight.shape[0], weight.shape[1]
    qweight, qzeros, scales = (_contiguous(tensors[n], n) for n in weight.storage[:3])
    awq = weight.family == "awq"
    order = _AWQ_ORDER if awq else None
    zeros = _words(read_array(qzeros), bits, order)[:, :out]
    if weight.params.get("format") == "gptq":
        zeros = zeros + 1  # GPTQ's v1 checkpoints store zero points minus one
    scale = read_array(scales).astype(np.float32)
    if len(weight.storage) > 3:
        g_idx = _indices(read_array(tensors[weight.storage[3]]), columns, scale.shape[0], weight.name)
    else:
        g_idx = np.arange(columns) // weight.params["group_size"]
    per = 32 // bits if awq else 1
    step = _block_rows(columns, 8)
    for first in range(0, out, step):
        last = min(out, first + step)
        if awq:
            words = read_array(_columns(qweight, first // per, -(-last // per)))
            q = _unpack(words, bits, order)[:, first % per : first % per + last - first]
        else:
            words = read_array(_columns(qweight, first, last))  # [in/per, rows]
            q = _words(np.ascontiguousarray(words.T), bits).T[:columns]  # [in, rows]
        block = (q - zeros[g_idx, first:last]) * scale[g_idx, first:last]
        yield np.ascontiguousarray(block.T, dtype=np.float32)


def _compressed(weight: Logical, tensors: Mapping[str, TensorRef], _: Mapping[str, object]) -> Iterator[np.ndarray]:
    import numpy as np

    bits, (out, columns) = weight.params["bits"], weight.shape
    prefix = weight.storage[0].removesuffix("weight_packed")
    packed = _contiguous(tensors[weight.storage[0]], weight.storage[0])
    scale = _per_row(read_array(tensors[prefix + "weight_scale"]), out)
    zero_ref = tensors.get(prefix + "weight_zero_point")
    zero = _per_row(read_array(zero_ref), out) if zero_ref is not None else None
    g_ref = tensors.get(prefix + "weight_g_idx")
    groups = scale.shape[1]
    if g_ref is not None:
        g_idx = _indices(read_array(g_ref), columns, groups, weight.name)
    else:
        g_idx = np.minimum(np.arange(columns) // max(1, -(-columns // groups)), groups - 1)
    step = _block_rows(columns, 1)
    for first in range(0, out, step):
        last = min(out, first + step)
        q = _unpack(read_array(_rows(packed, first, last)).view(np.uint32), bits)[:, :columns] - (1 << (bits - 1))
        values = q.astype(np.float32)
        if zero is not None:
            values = values - zero[first:last][:, g_idx]
        yield values * scale[first:last][:, g_idx]


E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def _fp4(weight: Logical, tensors: Mapping[str, TensorRef], _: Mapping[str, object]) -> Iterator[np.ndarray]:
    """compressed-tensors' NVFP4 (code x E4M3 scale / global scale) and MXFP4
    (code x 2^(e-127)); each byte holds two codes, the first in its low nibble."""
    import numpy as np

    prefix = weight.storage[0].removesuffix("weight_packed")
    packed = _contiguous(tensors[weight.storage[0]], weight.storage[0])
    (out, columns), group = weight.shape, weight.params["group_size"]
    scale_ref = tensors[prefix + "weight_scale"]
    scale = read_array(scale_ref)
    if scale_ref.dtype.name == "uint8":  # E8M0 stored as its biased exponent byte
        scale = np.where(scale == 255, np.float32(np.nan), np.exp2(scale.astype(np.float32) - 127))
    scale = scale.astype(np.float32).reshape(out, -1)
    if weight.params["kind"] == "nvfp4":
        scale = scale / read_array(tensors[prefix + "weight_global_scale"]).astype(np.float32).reshape(-1)[0]
    table = np.array(E2M1, dtype=np.float32)
    g_idx = np.arange(columns) // group
    step = _block_rows(columns, 1)
    for first in range(0, out, step):
        last = min(out, first + step)
        raw = read_array(_rows(packed, first, last))
        codes = np.empty((last - first, raw.shape[1] * 2), dtype=np.uint8)
        codes[:, 0::2], codes[:, 1::2] = raw & 0x0F, raw >> 4
        yield table[codes[:, :columns]] * scale[first:last][:, g_idx]


def _mlx(weight: Logical, tensors: Mapping[str, TensorRef], _: Mapping[str, object]) -> Iterator[np.ndarray]:
    import numpy as np

    bits, group = weight.params["bits"], weight.params["group_size"]
    packed, scales, biases = (_contiguous(tensors[n], n) for n in weight.storage)
    rows, columns = math.prod(weight.shape[:-1]), weight.shape[-1]
    flat = (rows, packed.shape[-1])
    packed = replace(packed, shape=flat, strides=contiguous_strides(flat))
    side = (rows, scales.shape[-1])
    scales = replace(scales, shape=side, strides=contiguous_strides(side))
    biases = replace(biases, shape=side, strides=contiguous_strides(side))
    g_idx = np.arange(columns) // group
    step = _block_rows(columns, 1)
    for first in range(0, rows, step):
        last = min(rows, first + step)
        q = _unpack(read_array(_rows(packed, first, last)), bits)[:, :columns].astype(np.float32)
        s = read_array(_rows(scales, first, last)).astype(np.float32)[:, g_idx]
        b = read_array(_rows(biases, first, last)).astype(np.float32)[:, g_idx]
        yield q * s + b  # rows of the flattened leading dimensions; dequantize() reshapes


def _bnb_int8(weight: Logical, tensors: Mapping[str, TensorRef], _: Mapping[str, object]) -> Iterator[np.ndarray]:
    import numpy as np

    q_ref, scb = tensors[weight.storage[0]], read_array(tensors[weight.storage[1]]).astype(np.float32)
    q_ref = _contiguous(q_ref, weight.storage[0])
    out, columns = weight.shape
    step = _block_rows(columns, 1)
    for first in range(0, out, step):
        last = min(out, first + step)
        yield read_array(_rows(q_ref, first, last)).astype(np.float32) * (scb[first:last, None] / np.float32(127))


def _bnb_4bit(weight: Logical, tensors: Mapping[str, TensorRef], _: Mapping[str, object]) -> Iterator[np.ndarray]:
    import numpy as np

    base = weight.name
    state, blocksize = weight.params["state"], weight.params["blocksize"]
    absmax = read_array(tensors[base + ".absmax"])
    if base + ".nested_absmax" in tensors:
        nested = read_array(tensors[base + ".nested_absmax"]).astype(np.float32)
        nested_map = read_array(tensors[base + ".nested_quant_map"]).astype(np.float32)
        nested_block = int(state.get("nested_blocksize", 256))
        offset = float(state.get("nested_offset", 0.0))
        index = np.arange(absmax.size) // max(nested_block, 1)
        if nested_map.size < 256 or (index.size and index[-1] >= nested.size) or absmax.dtype != np.uint8:
            raise CheckpointError(f"{base}: nested absmax does not fit its quant map and blocks")
        absmax = nested_map[absmax.astype(np.int64)] * nested[index] + offset
    absmax = absmax.astype(np.float32).reshape(-1)
    if absmax.size < -(-weight.numel // blocksize):
        raise CheckpointError(f"{base}: fewer absmax values than blocks")
    code = read_array(tensors[base + ".quant_map"]).astype(np.float32).reshape(-1)
    packed = read_array(_contiguous(tensors[base], base)).reshape(-1)
    numel = weight.numel
    codes = np.empty(packed.size * 2, dtype=np.uint8)
    codes[0::2], codes[1::2] = packed >> 4, packed & 0x0F  # the first value sits in the high nibble
    values = code[codes[:numel]] * absmax[np.arange(numel) // blocksize]
    yield values.reshape(weight.shape).astype(np.float32)


def _fp8(weight: Logical, tensors: Mapping[str, TensorRef], _: Mapping[str, object]) -> Iterator[np.ndarray]:
    import numpy as np

    q_ref = _contiguous(tensors[weight.storage[0]], weight.storage[0])
    scale = read_array(tensors[weight.storage[1]]).astype(np.float32)
    shape = weight.shape
    if len(shape) != 2:
        yield read_array(q_ref).astype(np.float32) * scale.reshape(-1)[0]
        return
    out, columns = shape
    block = weight.label.removeprefix("fp8 block")
    step = _block_rows(columns, int(block) if block.isdigit() else 1)
    for first in range(0, out, step):
        last = min(out, first + step)
        values = read_array(_rows(q_ref, first, last)).astype(np.float32)
        if scale.size == 1:
            yield values * scale.reshape(-1)[0]
        elif block.isdigit():
            b = int(block)
            rows, cols = np.arange(first, last) // b, np.arange(columns) // b
            yield values * scale[rows][:, cols]
        else:
            yield values * scale.reshape(-1)[first:last, None]


def _torch(weight: Logical, _: Mapping[str, TensorRef], entries: Mapping[str, object]) -> Iterator[np.ndarray]:
    import numpy as np

    entry = entries[weight.name]
    parts = qtensor_parts(entry.value) if isinstance(entry, Value) else None
    if parts is None:
        raise CheckpointError(f"{weight.name}: not a quantized tensor")
    storage, offset, size, stride, qparams = parts
    dtype = dtypes.BY_NAME[_Q_STORAGE[storage.dtype.name]]
    ref = TensorRef(dtype, size, stride, replace(storage, dtype=dtype), offset)
    q = read_array(ref).astype(np.float64)
    if weight.label.startswith("torch per-tensor"):
        yield ((q - float(qparams[2])) * float(qparams[1])).astype(np.float32)
        return
    scales, zeros, axis = read_array(qparams[1]).astype(np.float64), read_array(qparams[2]), qparams[3]
    view = [1] * len(size)
    view[axis] = -1
    if weight.label.startswith("torch per-channel float qparams"):
        yield (q * scales.reshape(view) + zeros.astype(np.float64).reshape(view)).astype(np.float32)
        return
    yield ((q - zeros.astype(np.float64).reshape(view)) * scales.reshape(view)).astype(np.float32)


_DECODERS: dict[str, Any] = {
    "gptq": _gptq_awq,
    "awq": _gptq_awq,
    "compressed-tensors": _compressed,
    "fp4": _fp4,
    "mlx": _mlx,
    "bnb-int8": _bnb_int8,
    "bnb-4bit": _bnb_4bit,
    "fp8": _fp8,
    "torch": _torch,
}
