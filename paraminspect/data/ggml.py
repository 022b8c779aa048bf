"""GGUF's block-quantized tensors (ggml types) to float32 numpy arrays.

A ggml quant type stores ``block`` weights in ``block_bytes`` bytes: float16
scales (and mins) next to packed 2- to 8-bit codes. Reads always cover whole
blocks, so memory is bounded by the chunk asked for, not by the tensor. The
layouts are ggml's (``ggml-common.h``); tests hold every decoder to
``gguf.quants.dequantize``. Blocks are decoded little-endian in either file byte
order: gguf-py writes quantized data as bytes, which a big-endian file leaves as
they are. numpy is imported inside the functions, as everywhere on the read path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from paraminspect import interrupts
from paraminspect.dtypes import DType
from paraminspect.errors import CheckpointError
from paraminspect.io import source
from paraminspect.model import TensorRef

if TYPE_CHECKING:
    import numpy as np

Decoder = Callable[["np.ndarray"], "np.ndarray"]  # (n, block_bytes) uint8 -> (n, block) float32


def _f16(blocks: np.ndarray, at: int) -> np.ndarray:
    """The little-endian float16 at byte ``at`` of every block, as a float32 column."""
    import numpy as np

    return np.ascontiguousarray(blocks[:, at : at + 2]).view("<f2").astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """Low nibbles of each byte, then high nibbles (ggml's order within 32 weights)."""
    import numpy as np

    return np.concatenate([packed & 0x0F, packed >> 4], axis=-1)


def _fifth_bits(blocks: np.ndarray, at: int) -> np.ndarray:
    """Q5_0/Q5_1: bit j of the little-endian uint32 at ``at`` is weight j's fifth bit."""
    import numpy as np

    qh = np.ascontiguousarray(blocks[:, at : at + 4]).view("<u4")
    return ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)


def _q4_0(b: np.ndarray) -> np.ndarray:
    import numpy as np

    return _f16(b, 0) * (_nibbles(b[:, 2:18]).astype(np.int8) - np.int8(8)).astype(np.float32)


def _q4_1(b: np.ndarray) -> np.ndarray:
    import numpy as np

    out: np.ndarray = _f16(b, 0) * _nibbles(b[:, 4:20]).astype(np.float32) + _f16(b, 2)
    return out


def _q5_0(b: np.ndarray) -> np.ndarray:
    import numpy as np

    q = (_nibbles(b[:, 6:22]) | (_fifth_bits(b, 2) << 4)).astype(np.int8) - np.int8(16)
    out: np.ndarray = _f16(b, 0) * q.astype(np.float32)
    return out


def _q5_1(b: np.ndarray) -> np.ndarray:
    import numpy as np

    q = _nibbles(b[:, 8:24]) | (_fifth_bits(b, 4) << 4)
    out: np.ndarray = _f16(b, 0) * q.astype(np.float32) + _f16(b, 2)
    return out


def _q8_0(b: np.ndarray) -> np.ndarray:
    import numpy as np

    return _f16(b, 0) * b[:, 2:34].view(np.int8).astype(np.float32)


def _two_bits(packed: np.ndarray) -> np.ndarray:
    """K-quant order: 32 bytes give 4 runs of 32 weights, bits 0-1, then 2-3, 4-5, 6-7."""
    import numpy as np

    n = packed.shape[0]
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    return ((packed.reshape(n, -1, 1, 32) >> shifts) & 3).reshape(n, -1)


def _bits_of(mask: np.ndarray, count: int) -> np.ndarray:
    """Bit k of byte l of 32-byte ``mask`` for weight 32k + l (k < count)."""
    import numpy as np

    n = mask.shape[0]
    shifts = np.arange(count, dtype=np.uint8).reshape(1, count, 1)
    return ((mask.reshape(n, 1, 32) >> shifts) & 1).reshape(n, -1)


def _per_16(scale: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Scale each run of 16 weights by its own factor (``scale``: (n, 16)), in place:
    ``q`` is a fresh (n, 256) float32 array of codes."""
    n = q.shape[0]
    runs = q.reshape(n, 16, 16)
    runs *= scale.reshape(n, 16, 1)
    return q


def _q2_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    scales = b[:, 0:16]
    q = _two_bits(b[:, 16:80]).astype(np.float32)
    runs = q.reshape(n, 16, 16)  # in place: d * code - min, rounded as float32 like the expression
    runs *= (_f16(b, 80) * (scales & 0x0F).astype(np.float32)).reshape(n, 16, 1)
    runs -= (_f16(b, 82) * (scales >> 4).astype(np.float32)).reshape(n, 16, 1)
    return q


def _q3_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    packed = b[:, 96:108]
    low = np.concatenate([packed[:, 0:8] & 0x0F, packed[:, 0:8] >> 4], axis=1)  # scale j's low 4 bits
    high = (packed[:, 8:12].reshape(n, 1, 4) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 4, 1)) & 3
    scales = ((low | (high.reshape(n, 16) << 4)).astype(np.int8) - np.int8(32)).astype(np.float32)
    # a clear high bit (hmask) subtracts 4 from the 2-bit code
    q = _two_bits(b[:, 32:96]).astype(np.int8) - ((_bits_of(b[:, 0:32], 8) ^ 1) << 2).astype(np.int8)
    return _per_16(_f16(b, 108) * scales, q.astype(np.float32))


def _k_scales(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: eight 6-bit scales and eight 6-bit mins packed in 12 bytes."""
    import numpy as np

    a, m, c = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scale = np.concatenate([a & 0x3F, (c & 0x0F) | ((a >> 6) << 4)], axis=1)
    low = np.concatenate([m & 0x3F, (c >> 4) | ((m >> 6) << 4)], axis=1)
    return scale.astype(np.float32), low.astype(np.float32)


def _by_32(b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K: d * code - min per sub-block of 32, in place on the fresh (n, 256)
    float32 codes ``q`` (one array, no temporaries the size of the output)."""
    n = b.shape[0]
    scale, low = _k_scales(b[:, 4:16])
    runs = q.reshape(n, 8, 32)
    runs *= (_f16(b, 0) * scale).reshape(n, 8, 1)
    runs -= (_f16(b, 2) * low).reshape(n, 8, 1)
    return q


def _k_codes_into(packed: np.ndarray, out: np.ndarray) -> None:
    """Q4_K/Q5_K codes, written straight into ``out`` ((n, 4, 2, 32), any numeric dtype):
    each 32 bytes hold two sub-blocks of 32, low nibbles then high."""
    import numpy as np

    runs = packed.reshape(packed.shape[0], 4, 32)
    np.bitwise_and(runs, 0x0F, out=out[:, :, 0], casting="unsafe")
    np.right_shift(runs, 4, out=out[:, :, 1], casting="unsafe")


def _q4_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    q = np.empty((n, 4, 2, 32), dtype=np.float32)
    _k_codes_into(b[:, 16:144], q)
    return _by_32(b, q.reshape(n, 256))


def _q5_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    q = np.empty((n, 4, 2, 32), dtype=np.uint8)
    _k_codes_into(b[:, 48:176], q)
    codes = q.reshape(n, 256)
    codes |= _bits_of(b[:, 16:48], 8) << 4
    return _by_32(b, codes.astype(np.float32))


def _q6_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    ql = b[:, 0:128].reshape(n, 2, 2, 32)  # per half of 128: two runs of 32 bytes
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 128)  # runs 0,1 low nibbles; 2,3 high
    high = _two_bits(b[:, 128:192]).reshape(n, 2, 128)
    q = ((low | (high << 4)).astype(np.int8) - np.int8(32)).reshape(n, 256).astype(np.float32)
    scales = b[:, 192:208].view(np.int8).astype(np.float32)
    return _per_16(_f16(b, 208) * scales, q)


MXFP4_VALUES = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)  # e2m1, doubled


def _mxfp4(b: np.ndarray) -> np.ndarray:
    import numpy as np

    # E8M0 scale halved (the values above are doubled): 2^(e - 128), subnormal for e < 2
    d = np.ldexp(np.float32(1), b[:, 0:1].astype(np.int32) - 128).astype(np.float32)
    values = np.array(MXFP4_VALUES, dtype=np.float32)
    out: np.ndarray = d * values[_nibbles(b[:, 1:17])]
    return out


DECODERS: dict[str, Decoder] = {
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


def decoder(ref: TensorRef) -> Decoder:
    """The decoder for ``ref``'s type, or the one-line "cannot decode" error."""
    found = DECODERS.get(ref.dtype.name)
    if found is None:
        what = (
            "an unknown ggml type" if not ref.dtype.size_known else "a GGUF type paraminspect does not dequantize yet"
        )
        raise CheckpointError(f"cannot decode {ref.dtype.name} values ({what})", ref.storage.path)
    return found


def decode_blocks(dtype: DType, raw: bytes | bytearray | memoryview) -> np.ndarray:
    """Whole blocks of stored bytes as a 1-D float32 array."""
    import numpy as np

    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, dtype.block_bytes)
    with np.errstate(all="ignore"):  # inf/nan scales decode to inf/nan, as in ggml, silently
        return DECODERS[dtype.name](blocks).reshape(-1)


def read_elements(ref: TensorRef, first: int, count: int) -> np.ndarray:
    """Elements [first, first+count) (C order) of a quantized tensor, reading only their blocks."""
    decode = decoder(ref)
    import numpy as np

    block, size = ref.dtype.block, ref.dtype.block_bytes
    b0, b1 = first // block, -(-(first + count) // block)
    raw = source.get(ref.storage.path).pread(ref.byte_range()[0] + b0 * size, (b1 - b0) * size)
    with np.errstate(all="ignore"):
        values = decode(np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)).reshape(-1)
    start = first - b0 * block
    return values[start : start + count]


def iter_elements(ref: TensorRef, chunk_elements: int) -> Iterator[np.ndarray]:
    """The tensor's values in chunks of exactly ``chunk_elements`` (the last may be shorter)."""
    decoder(ref)
    for first in range(0, ref.numel, chunk_elements):
        interrupts.check()
        yield read_elements(ref, first, min(chunk_elements, ref.numel - first))


def gather(ref: TensorRef, flat: np.ndarray) -> np.ndarray:
    """The elements at C-order positions ``flat``, reading each needed run of blocks once."""
    import numpy as np

    decode = decoder(ref)
    block, size = ref.dtype.block, ref.dtype.block_bytes
    needed = np.unique(flat // block)
    cut = np.nonzero(np.diff(needed) > 1)[0] + 1
    src = source.get(ref.storage.path)
    base = ref.byte_range()[0]
    decoded = np.empty((len(needed), block), dtype=np.float32)
    at = 0
    for run in np.split(needed, cut):
        first, n = int(run[0]), len(run)
        raw = src.pread(base + first * size, n * size)
        with np.errstate(all="ignore"):
            decoded[at : at + n] = decode(np.frombuffer(raw, dtype=np.uint8).reshape(n, size))
        at += n
    rows = np.searchsorted(needed, flat // block)
    out: np.ndarray = decoded[rows, flat % block]
    return out
