"""One table of element types, shared by every format.

Each dtype is known by its torch name (``float32``), its safetensors code
(``F32``), its torch storage class (``FloatStorage``) and its width in bits.
Nothing here imports numpy: header-only commands must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    """An element type as paraminspect sees it."""

    name: str  # torch spelling without the "torch." prefix
    bits: int
    safetensors: str | None  # safetensors dtype code, None if it has no such code
    storage: str | None  # legacy torch typed-storage class name, None if untyped only
    numpy: str | None  # numpy / ml_dtypes name used to decode, None if not decodable
    # Block-quantized types (GGUF's ggml types) store ``block`` elements in
    # ``block_bytes`` bytes (scales and packed codes together), so their size is
    # per block, not per element. ``block == 0``: a layout paraminspect does not know.
    block: int = 1
    block_bytes: int = 0

    @property
    def blocked(self) -> bool:
        """Elements are stored in blocks (a ggml quant type, known or not)."""
        return self.block != 1 or self.block_bytes != 0

    @property
    def size_known(self) -> bool:
        return self.block != 0

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per element (4.5 for Q4_0: 18 bytes per 32 weights)."""
        return self.block_bytes * 8 / self.block if self.blocked and self.block else float(self.bits)

    @property
    def itemsize(self) -> int:
        """Bytes per element, rounded up for sub-byte types."""
        return (self.bits + 7) // 8

    def nbytes(self, numel: int) -> int:
        """Bytes used by ``numel`` packed elements (whole blocks for a block type; 0 if unknown)."""
        if self.blocked:
            return -(-numel // self.block) * self.block_bytes if self.block else 0
        return (numel * self.bits + 7) // 8

    def __hash__(self) -> int:
        # The name alone, consistent with equality (equal dtypes have equal names): the
        # generated hash of all nine fields cost ~0.4 us, and every tensor's identity
        # (deduplicated in limits, tied groups and totals) holds its dtype.
        return hash(self.name)

    def __str__(self) -> str:
        return self.name


_ALL = [
    DType("bool", 8, "BOOL", "BoolStorage", "bool"),
    DType("uint8", 8, "U8", "ByteStorage", "uint8"),
    DType("int8", 8, "I8", "CharStorage", "int8"),
    DType("int16", 16, "I16", "ShortStorage", "int16"),
    DType("uint16", 16, "U16", None, "uint16"),
    DType("float16", 16, "F16", "HalfStorage", "float16"),
    DType("bfloat16", 16, "BF16", "BFloat16Storage", "bfloat16"),
    DType("int32", 32, "I32", "IntStorage", "int32"),
    DType("uint32", 32, "U32", None, "uint32"),
    DType("float32", 32, "F32", "FloatStorage", "float32"),
    DType("float64", 64, "F64", "DoubleStorage", "float64"),
    DType("int64", 64, "I64", "LongStorage", "int64"),
    DType("uint64", 64, "U64", None, "uint64"),
    DType("complex32", 32, None, "ComplexHalfStorage", None),
    DType("complex64", 64, "C64", "ComplexFloatStorage", "complex64"),
    DType("complex128", 128, None, "ComplexDoubleStorage", "complex128"),
    DType("float8_e5m2", 8, "F8_E5M2", None, "float8_e5m2"),
    DType("float8_e4m3fn", 8, "F8_E4M3", None, "float8_e4m3fn"),
    DType("float8_e5m2fnuz", 8, "F8_E5M2FNUZ", None, "float8_e5m2fnuz"),
    DType("float8_e4m3fnuz", 8, "F8_E4M3FNUZ", None, "float8_e4m3fnuz"),
    DType("float8_e8m0fnu", 8, "F8_E8M0", None, "float8_e8m0fnu"),
    DType("float4_e2m1fn_x2", 8, None, None, None),
    DType("float4_e2m1fn", 4, "F4", None, None),
    DType("float6_e2m3fn", 6, "F6_E2M3", None, None),
    DType("float6_e3m2fn", 6, "F6_E3M2", None, None),
    DType("uint4", 4, None, None, None),  # ONNX UINT4/INT4/UINT2/INT2: listed, not decoded
    DType("int4", 4, None, None, None),
    DType("uint2", 2, None, None, None),
    DType("int2", 2, None, None, None),
    DType("quint8", 8, None, "QUInt8Storage", None),
    DType("qint8", 8, None, "QInt8Storage", None),
    DType("qint32", 32, None, "QInt32Storage", None),
    DType("quint4x2", 8, None, "QUInt4x2Storage", None),
    DType("quint2x4", 8, None, "QUInt2x4Storage", None),
    DType("bits8", 8, None, None, "uint8"),
    DType("bits16", 16, None, None, "uint16"),
]

# GGUF's block-quantized ggml types: (name, ggml type id, elements per block, bytes per block),
# from ggml's type traits. Their torch-like name is the GGUF spelling ("Q4_K"); ``bits`` is the
# bits per element rounded up (nothing divides by it: sizes come from the blocks). ``numpy``
# is what the values decode to (float32), for the types that decode.
GGML_BLOCKS = [
    ("Q4_0", 2, 32, 18),
    ("Q4_1", 3, 32, 20),
    ("Q5_0", 6, 32, 22),
    ("Q5_1", 7, 32, 24),
    ("Q8_0", 8, 32, 34),
    ("Q8_1", 9, 32, 40),
    ("Q2_K", 10, 256, 84),
    ("Q3_K", 11, 256, 110),
    ("Q4_K", 12, 256, 144),
    ("Q5_K", 13, 256, 176),
    ("Q6_K", 14, 256, 210),
    ("Q8_K", 15, 256, 292),
    ("IQ2_XXS", 16, 256, 66),
    ("IQ2_XS", 17, 256, 74),
    ("IQ3_XXS", 18, 256, 98),
    ("IQ1_S", 19, 256, 50),
    ("IQ4_NL", 20, 32, 18),
    ("IQ3_S", 21, 256, 110),
    ("IQ2_S", 22, 256, 82),
    ("IQ4_XS", 23, 256, 136),
    ("IQ1_M", 29, 256, 56),
    ("TQ1_0", 34, 256, 54),
    ("TQ2_0", 35, 256, 66),
    ("MXFP4", 39, 32, 17),
    ("NVFP4", 40, 64, 36),
    ("Q1_0", 41, 128, 18),
]
# The ones paraminspect.data.ggml dequantizes: their values decode to float32.
GGML_DECODED = frozenset({"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "MXFP4"})
GGML_QUANT: dict[int, DType] = {
    type_id: DType(
        name, -(-bytes_ * 8 // block), None, None, "float32" if name in GGML_DECODED else None, block, bytes_
    )
    for name, type_id, block, bytes_ in GGML_BLOCKS
}
GGML_BY_NAME: dict[str, DType] = {d.name: d for d in GGML_QUANT.values()}


def ggml_unknown(type_id: int) -> DType:
    """A ggml type id this table does not know: listed, its size unknown."""
    return DType(f"ggml_type_{type_id}", 8, None, None, None, 0, 0)


BY_NAME: dict[str, DType] = {d.name: d for d in _ALL}
BY_SAFETENSORS: dict[str, DType] = {d.safetensors: d for d in _ALL if d.safetensors}
BY_STORAGE: dict[str, DType] = {d.storage: d for d in _ALL if d.storage}

# Spellings people type on the command line, beyond the canonical names.
_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "bf16": "bfloat16",
    "fp16": "float16",
    "fp32": "float32",
    "fp64": "float64",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
}


def lookup(name: str) -> DType | None:
    """Find a dtype by torch name, alias or safetensors code (``F32``)."""
    key = name.removeprefix("torch.")
    found = BY_NAME.get(key) or BY_NAME.get(_ALIASES.get(key.lower(), "")) or BY_SAFETENSORS.get(key)
    return found
