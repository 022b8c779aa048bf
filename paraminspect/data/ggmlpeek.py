"""Single weights of GGUF's block-quantized tensors, decoded with the standard library.

The twin of ggml.py's numpy decoders for peek.py: a summarised ``get`` of a
huge Q4_K matrix shows 36 numbers, and importing numpy to dequantize them
costs more than everything else the command does. Each decoder gives weight
``j`` of the block at byte ``at``, computed as ggml.py computes it in float32,
operation by operation and in the same order: every product and sum is rounded
to float32 (:func:`_f32`). That is exact, not close: a double holds the product
of two float32 values exactly, and a float32 sum rounded twice (to double, then
to float32) is the correctly rounded one, since 53 >= 2 * 24 + 2. So the values,
signed zeros, infinities and NaNs included, are ggml.py's; tests hold the two
to each other and to ``gguf.quants.dequantize``. Layouts: ``ggml-common.h``,
little-endian in either file byte order (as ggml.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from paraminspect.data.ggml import MXFP4_VALUES

ElementDecoder = Callable[[Any, int, int], float]  # (buffer, block's byte offset, index in block) -> value

_F16 = struct.Struct("<e").unpack_from
_U32 = struct.Struct("<I").unpack_from
_F32 = struct.Struct("<f")


def _f32(x: float) -> float:
    """``x`` rounded to float32, as numpy's float32 arithmetic rounds each result."""
    try:
        value: float = _F32.unpack(_F32.pack(x))[0]
    except OverflowError:  # rounds past float32's largest: inf, as in float32 arithmetic
        return math.copysign(math.inf, x)
    return value


def _nibble(data: Any, at: int, j: int) -> int:
    """Weight ``j`` of 32 stored as 16 bytes at ``at``: low nibbles, then high nibbles."""
    byte: int = data[at + (j & 15)]
    return byte & 0x0F if j < 16 else byte >> 4


def _q4_0(data: Any, at: int, j: int) -> float:
    return _f32(_F16(data, at)[0] * (_nibble(data, at + 2, j) - 8))


def _q4_1(data: Any, at: int, j: int) -> float:
    return _f32(_f32(_F16(data, at)[0] * _nibble(data, at + 4, j)) + _F16(data, at + 2)[0])


def _q5_0(data: Any, at: int, j: int) -> float:
    q = _nibble(data, at + 6, j) | ((_U32(data, at + 2)[0] >> j) & 1) << 4
    return _f32(_F16(data, at)[0] * (q - 16))


def _q5_1(data: Any, at: int, j: int) -> float:
    q = _nibble(data, at + 8, j) | ((_U32(data, at + 4)[0] >> j) & 1) << 4
    return _f32(_f32(_F16(data, at)[0] * q) + _F16(data, at + 2)[0])


def _q8_0(data: Any, at: int, j: int) -> float:
    q = (data[at + 2 + j] ^ 0x80) - 0x80  # int8
    return _f32(_F16(data, at)[0] * q)


def _two_bit(data: Any, at: int, j: int) -> int:
    """K-quant 2-bit codes at ``at``: per 128 weights, 32 bytes hold bits 0-1 of weights
    0-31, bits 2-3 of weights 32-63, 4-5, then 6-7."""
    half, rest = divmod(j, 128)
    shift, byte = divmod(rest, 32)
    code: int = (data[at + half * 32 + byte] >> (2 * shift)) & 3
    return code


def _mask_bit(data: Any, at: int, j: int) -> int:
    """Bit ``j // 32`` of byte ``j % 32`` of the 32-byte mask at ``at``."""
    bit: int = (data[at + (j & 31)] >> (j >> 5)) & 1
    return bit


def _q2_k(data: Any, at: int, j: int) -> float:
    scale = data[at + j // 16]
    dl = _f32(_F16(data, at + 80)[0] * (scale & 0x0F))
    ml = _f32(_F16(data, at + 82)[0] * (scale >> 4))
    return _f32(_f32(dl * _two_bit(data, at + 16, j)) - ml)


def _q3_k(data: Any, at: int, j: int) -> float:
    k, packed = j // 16, at + 96
    low = data[packed + k] & 0x0F if k < 8 else data[packed + k - 8] >> 4
    high = (data[packed + 8 + (k & 3)] >> (2 * (k >> 2))) & 3
    scale = (low | high << 4) - 32
    q = _two_bit(data, at + 32, j) - (0 if _mask_bit(data, at, j) else 4)  # a clear high bit subtracts 4
    return _f32(_f32(_F16(data, at + 108)[0] * scale) * q)


def _k_scale_min(data: Any, packed: int, k: int) -> tuple[int, int]:
    """Q4_K/Q5_K: sub-block ``k``'s 6-bit scale and min from the 12 bytes at ``packed``."""
    if k < 4:
        return data[packed + k] & 0x3F, data[packed + 4 + k] & 0x3F
    c = data[packed + 4 + k]
    return (c & 0x0F) | (data[packed + k - 4] >> 6) << 4, (c >> 4) | (data[packed + k] >> 6) << 4


def _k_nibble(data: Any, at: int, j: int) -> int:
    """Q4_K/Q5_K: each 32 bytes at ``at`` hold 64 weights, low nibbles then high."""
    group, rest = divmod(j, 64)
    byte: int = data[at + group * 32 + (rest & 31)]
    return byte & 0x0F if rest < 32 else byte >> 4


def _by_32(data: Any, at: int, j: int, q: int) -> float:
    scale, low = _k_scale_min(data, at + 4, j // 32)
    d = _f32(_F16(data, at)[0] * scale)
    m = _f32(_F16(data, at + 2)[0] * low)
    return _f32(_f32(d * q) - m)


def _q4_k(data: Any, at: int, j: int) -> float:
    return _by_32(data, at, j, _k_nibble(data, at + 16, j))


def _q5_k(data: Any, at: int, j: int) -> float:
    return _by_32(data, at, j, _k_nibble(data, at + 48, j) | _mask_bit(data, at + 16, j) << 4)


def _q6_k(data: Any, at: int, j: int) -> float:
    half, rest = divmod(j, 128)
    run, byte = divmod(rest, 32)
    packed = data[at + half * 64 + (run & 1) * 32 + byte]  # runs 0, 1: low nibbles; 2, 3: high
    low = packed & 0x0F if run < 2 else packed >> 4
    high = _two_bit(data, at + 128, j)
    scale = (data[at + 192 + j // 16] ^ 0x80) - 0x80  # int8
    return _f32(_f32(_F16(data, at + 208)[0] * scale) * ((low | high << 4) - 32))


def _mxfp4(data: Any, at: int, j: int) -> float:
    d = math.ldexp(1.0, data[at] - 128)  # E8M0 halved, exact in float32 (subnormal below 2^-126)
    return _f32(d * MXFP4_VALUES[_nibble(data, at + 1, j)])


DECODERS: dict[str, ElementDecoder] = {
    "Q4_0": _q4_0,
    "Q4_1": _q4_1,
    "Q5_0": _q5_0,
    "Q5_1": _q5_1,
    "Q8_0": _q8_0,
    "Q2_K": _q2_k,
    "Q3_K": _q3_k,
    "Q4_K": _q4_k,
    "Q5_K": _q5_k,
    "Q6_K": _q6_k,
    "MXFP4": _mxfp4,
}
