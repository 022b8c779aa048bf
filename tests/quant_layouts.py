"""Quantized layouts built with numpy from a known float matrix, packed exactly as
each scheme documents it, with the values each scheme's own dequantization gives.

Written from the schemes' descriptions (GPTQ: values along the input dimension,
low bits first, zeros stored minus one; AWQ: the interleaved order
0,2,4,6,1,3,5,7 within each word; compressed-tensors pack_to_int32: offset to
unsigned, low bits first along the last dimension; MLX: affine groups, low bits
first; bitsandbytes: row absmax/127 for int8, blockwise absmax with the first
code in the high nibble for 4-bit). Each builder returns (tensors, expected),
expected being the float32 matrix the scheme's dequantization gives.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
NF4 = np.array(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=np.float32,
)


def matrix(out: int, inp: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((out, inp)).astype(np.float32)


def _pack_words(values: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Unsigned ``values`` packed 32/bits to a word along ``axis``, low bits first."""
    per = 32 // bits
    v = np.moveaxis(values.astype(np.uint64), axis, -1)
    v = v.reshape(*v.shape[:-1], v.shape[-1] // per, per)
    words = np.zeros(v.shape[:-1], dtype=np.uint64)
    for i in range(per):
        words |= v[..., i] << np.uint64(bits * i)
    return np.ascontiguousarray(np.moveaxis(words.astype(np.uint32), -1, axis))


def _asym_groups(w: np.ndarray, bits: int, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q [out, in], scale f16 [out, groups], zero [out, groups]) min/max quantization."""
    out, inp = w.shape
    g = w.reshape(out, inp // group, group)
    lo, hi = np.minimum(g.min(-1), 0), np.maximum(g.max(-1), 0)
    maxq = 2**bits - 1
    scale = ((hi - lo) / maxq).astype(np.float16)
    zero = np.clip(np.round(-lo / scale.astype(np.float32)), 1, maxq - 1)
    q = np.clip(np.round(g / scale[..., None].astype(np.float32)) + zero[..., None], 0, maxq)
    return q.reshape(out, inp).astype(np.int64), scale, zero.astype(np.int64)


def _pack_3bit(values: np.ndarray) -> np.ndarray:
    """AutoGPTQ's 3-bit packing along axis 0, step by step as its ``pack`` documents it:
    each 32 values fill 3 words; value 10 puts its low 2 bits at the top of the first
    word and its high bit at the bottom of the second, value 21 its low bit at the top
    of the second and its high 2 bits at the bottom of the third."""
    v = values.astype(np.uint64)
    out = np.zeros((v.shape[0] // 32 * 3, *v.shape[1:]), dtype=np.uint64)
    i = row = 0
    while row < out.shape[0]:
        for j in range(i, i + 10):
            out[row] |= v[j] << np.uint64(3 * (j - i))
        i += 10
        out[row] |= (v[i] << np.uint64(30)) & np.uint64(0xFFFFFFFF)
        row += 1
        out[row] |= (v[i] >> np.uint64(2)) & np.uint64(1)
        i += 1
        for j in range(i, i + 10):
            out[row] |= v[j] << np.uint64(3 * (j - i) + 1)
        i += 10
        out[row] |= (v[i] << np.uint64(31)) & np.uint64(0xFFFFFFFF)
        row += 1
        out[row] |= (v[i] >> np.uint64(1)) & np.uint64(3)
        i += 1
        for j in range(i, i + 10):
            out[row] |= v[j] << np.uint64(3 * (j - i) + 2)
        i += 10
        row += 1
    return out.astype(np.uint32)


def gptq(w: np.ndarray, bits: int = 4, group: int = 128, prefix: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    q, scale, zero = _asym_groups(w, bits, group)
    inp = w.shape[1]
    if bits == 3:  # qweight along the input (rows of q.T), qzeros along the output (columns)
        qweight, qzeros = _pack_3bit(q.T), np.ascontiguousarray(_pack_3bit(zero - 1).T)
    else:
        qweight, qzeros = _pack_words(q.T, bits, axis=0), _pack_words((zero - 1).T, bits, axis=1)
    tensors = {
        prefix + "qweight": qweight.view(np.int32),
        prefix + "qzeros": qzeros.view(np.int32),  # v1: zeros minus one
        prefix + "scales": np.ascontiguousarray(scale.T),
        prefix + "g_idx": (np.arange(inp) // group).astype(np.int32),
    }
    g_idx = np.arange(inp) // group
    expected = (q - zero[:, g_idx]) * scale[:, g_idx].astype(np.float32)
    return tensors, expected.astype(np.float32)


def awq(w: np.ndarray, group: int = 128, prefix: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    bits = 4
    q, scale, zero = _asym_groups(w, bits, group)

    def pack(values: np.ndarray) -> np.ndarray:  # [rows, cols] -> [rows, cols/8], AWQ's order
        rows, cols = values.shape
        words = np.zeros((rows, cols // 8), dtype=np.uint64)
        for c in range(cols // 8):
            for i in range(8):
                words[:, c] |= values[:, c * 8 + AWQ_ORDER[i]].astype(np.uint64) << np.uint64(4 * i)
        return words.astype(np.uint32).view(np.int32)

    tensors = {
        prefix + "qweight": pack(q.T),
        prefix + "qzeros": pack(zero.T),
        prefix + "scales": np.ascontiguousarray(scale.T),
    }
    g_idx = np.arange(w.shape[1]) // group
    expected = (q - zero[:, g_idx]) * scale[:, g_idx].astype(np.float32)
    return tensors, expected.astype(np.float32)


def compressed(
    w: np.ndarray, bits: int = 4, group: int = 32, prefix: str = ""
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    out, inp = w.shape
    g = w.reshape(out, inp // group, group)
    qmax = 2 ** (bits - 1) - 1
    scale = (np.abs(g).max(-1) / qmax).astype(np.float16)
    q = np.clip(np.round(g / scale[..., None].astype(np.float32)), -qmax - 1, qmax).reshape(out, inp)
    tensors = {
        prefix + "weight_packed": _pack_words(q + 2 ** (bits - 1), bits, axis=1).view(np.int32),
        prefix + "weight_shape": np.array([out, inp], dtype=np.int64),
        prefix + "weight_scale": scale,
    }
    expected = q * np.repeat(scale.astype(np.float32), group, axis=1)
    return tensors, expected.astype(np.float32)


def mlx(w: np.ndarray, bits: int = 4, group: int = 64, prefix: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    out, inp = w.shape
    g = w.reshape(out, inp // group, group)
    lo, hi = g.min(-1), g.max(-1)
    scale = ((hi - lo) / (2**bits - 1)).astype(np.float16)
    bias = lo.astype(np.float16)
    q = np.clip(
        np.round((g - bias[..., None].astype(np.float32)) / scale[..., None].astype(np.float32)), 0, 2**bits - 1
    )
    q = q.reshape(out, inp)
    tensors = {prefix + "weight": _pack_words(q, bits, axis=1), prefix + "scales": scale, prefix + "biases": bias}
    expected = q * np.repeat(scale.astype(np.float32), group, 1) + np.repeat(bias.astype(np.float32), group, 1)
    return tensors, expected.astype(np.float32)


def bnb_int8(w: np.ndarray, prefix: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    scb = np.abs(w).max(1).astype(np.float32)
    q = np.clip(np.round(w * 127 / scb[:, None]), -127, 127).astype(np.int8)
    expected = q.astype(np.float32) * scb[:, None] / 127
    return {prefix + "weight": q, prefix + "SCB": scb}, expected.astype(np.float32)


def _state_tensor(state: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(json.dumps(state).encode(), dtype=np.uint8).copy()


def bnb_nf4(w: np.ndarray, block: int = 64, prefix: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    flat = w.reshape(-1)
    blocks = flat.reshape(-1, block)
    absmax = np.abs(blocks).max(1).astype(np.float32)
    codes = np.abs((blocks / absmax[:, None])[..., None] - NF4).argmin(-1).reshape(-1).astype(np.uint8)
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8).reshape(-1, 1)
    state = {"quant_type": "nf4", "blocksize": block, "dtype": "float16", "shape": list(w.shape)}
    tensors = {
        prefix + "weight": packed,
        prefix + "weight.absmax": absmax,
        prefix + "weight.quant_map": NF4.copy(),
        prefix + "weight.quant_state.bitsandbytes__nf4": _state_tensor(state),
    }
    expected = (NF4[codes].reshape(-1, block) * absmax[:, None]).reshape(w.shape)
    return tensors, expected.astype(np.float32)


def fp8(w: np.ndarray, prefix: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    import ml_dtypes

    scale = (np.abs(w).max(1, keepdims=True) / 448.0).astype(np.float32)
    q = (w / scale).astype(ml_dtypes.float8_e4m3fn)
    expected = q.astype(np.float32) * scale
    return {prefix + "weight": q, prefix + "weight_scale": scale}, expected.astype(np.float32)


def bnb_nf4_nested(
    w: np.ndarray, block: int = 64, nested: int = 256, prefix: str = ""
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """4-bit with double quantization: absmax itself 8-bit blockwise around its mean
    (``nested_offset``), through a 256-entry map (any monotone map decodes the same way)."""
    tensors, _ = bnb_nf4(w, block, prefix)
    absmax = tensors.pop(prefix + "weight.absmax")
    offset = float(absmax.mean())
    centred = (absmax - offset).reshape(-1, nested)
    nested_absmax = np.abs(centred).max(1).astype(np.float32)
    nested_map = np.linspace(-1, 1, 256, dtype=np.float32)
    q = np.abs((centred / nested_absmax[:, None])[..., None] - nested_map).argmin(-1).astype(np.uint8).reshape(-1)
    state = {
        "quant_type": "nf4",
        "blocksize": block,
        "dtype": "float16",
        "shape": list(w.shape),
        "nested_blocksize": nested,
        "nested_dtype": "float32",
        "nested_offset": offset,
    }
    tensors[prefix + "weight.absmax"] = q
    tensors[prefix + "weight.nested_absmax"] = nested_absmax
    tensors[prefix + "weight.nested_quant_map"] = nested_map
    tensors[prefix + "weight.quant_state.bitsandbytes__nf4"] = _state_tensor(state)
    decoded_absmax = nested_map[q] * np.repeat(nested_absmax, nested) + np.float32(offset)
    packed = tensors[prefix + "weight"].reshape(-1)
    codes = np.empty(packed.size * 2, dtype=np.uint8)
    codes[0::2], codes[1::2] = packed >> 4, packed & 0x0F
    expected = (NF4[codes].reshape(-1, block) * decoded_absmax[:, None]).reshape(w.shape)
    return tensors, expected.astype(np.float32)


E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float32)


def _fp4_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4-bit codes, their float values) of the E2M1 values nearest ``x``: the
    magnitude's index in 0, .5, 1, 1.5, 2, 3, 4, 6 and the sign in bit 3."""
    index = np.abs(np.abs(x)[..., None] - E2M1).argmin(-1)
    negative = np.signbit(x)
    codes = (index + (negative.astype(np.int64) << 3)).astype(np.uint8)
    return codes, np.where(negative, -E2M1[index], E2M1[index])


def _pack_fp4(codes: np.ndarray) -> np.ndarray:
    """compressed-tensors' pack_fp4_to_uint8: consecutive pairs, the first in the low nibble."""
    pairs = codes.reshape(-1, 2)
    return (pairs[:, 0] | (pairs[:, 1] << 4)).astype(np.uint8).reshape(codes.shape[0], -1)


def nvfp4(w: np.ndarray, prefix: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """NVFP4: a global scale 448·6/amax, an E4M3 scale per 16 (amax·global/6), codes of
    w / (scale / global); dequantized as code x scale / global."""
    import ml_dtypes

    out, inp = w.shape
    global_scale = np.float32(448.0 * 6.0 / np.abs(w).max())
    g = w.reshape(out, inp // 16, 16)
    scale = (np.abs(g).max(-1) / 6.0 * global_scale).astype(ml_dtypes.float8_e4m3fn)
    effective = scale.astype(np.float32) / global_scale
    codes, values = _fp4_codes(g / effective[..., None])
    tensors = {
        prefix + "weight_packed": _pack_fp4(codes.reshape(out, inp)),
        prefix + "weight_scale": scale,
        prefix + "weight_global_scale": np.array([global_scale], dtype=np.float32),
    }
    expected = (values * effective[..., None]).reshape(out, inp)
    return tensors, expected.astype(np.float32)


def mxfp4(w: np.ndarray, prefix: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """MXFP4: an E8M0 exponent byte e per 32 (scale 2^(e-127), chosen here as the
    power of two at or above amax/6 so that no value clips); dequantized as code x 2^(e-127)."""
    out, inp = w.shape
    g = w.reshape(out, inp // 32, 32)
    exponent = np.ceil(np.log2(np.abs(g).max(-1) / 6.0)).astype(np.int64)
    scale = np.exp2(exponent.astype(np.float64)).astype(np.float32)
    codes, values = _fp4_codes(g / scale[..., None])
    tensors = {
        prefix + "weight_packed": _pack_fp4(codes.reshape(out, inp)),
        prefix + "weight_scale": (exponent + 127).astype(np.uint8),
    }
    expected = (values * scale[..., None]).reshape(out, inp)
    return tensors, expected.astype(np.float32)
