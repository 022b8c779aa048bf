"""Content hashes of tensors, the same whatever file, layout or piece set holds them.

A tensor's hash is the SHA-256 of its *canonical bytes*: its elements in C
(row-major) order, each in little-endian byte order, packed with no padding;
bfloat16 and the float8 types as their raw little-endian bits, bool as one byte
per element. That is ``t.contiguous().numpy().astype(dtype.newbyteorder('<')).tobytes()``
in torch terms, so a tensor hashes the same in a ``.pt``, a ``.safetensors``,
as a strided view, in a shard or as DCP pieces. The dtype and shape are not
part of the tensor hash (a float32 and an int32 tensor of equal bits hash
alike); they are part of the state-dict hash (:func:`state_dict_sha256`).

A contiguous little-endian tensor is hashed straight from the bytes read
(no decoding), so hashing runs at disk speed; tensors are hashed two at a time
(parallel.py). Undecodable dtypes (quantized, sub-byte) are hashed from their
stored bytes when those are already canonical (contiguous, one-byte or
little-endian), and refused otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from paraminspect import interrupts
from paraminspect.data import broadcast
from paraminspect.data.arrays import DEFAULT_CHUNK_ELEMENTS, iter_chunks, iter_raw_chunks, numpy_dtype
from paraminspect.errors import CheckpointError
from paraminspect.model import TensorRef
from paraminspect.parallel import ordered_map

# Bytes read (and hashed) at a time for a contiguous tensor.
RAW_CHUNK_BYTES = 8 << 20

ALGORITHM = "sha256"
# The lockfile ``hash --format json`` writes (inspect/hashing.py) and check/diff read (compare/lockfile.py).
LOCK_SCHEMA = "paraminspect-lockfile"
LOCK_VERSION = 1


def _raw_is_canonical(ref: TensorRef) -> bool:
    """The stored bytes are the canonical bytes: one run in C order, little-endian."""
    return ref.is_contiguous and (ref.storage.byteorder == "little" or ref.dtype.itemsize == 1)


def tensor_sha256(ref: TensorRef, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> str:
    """The hex SHA-256 of ``ref``'s canonical bytes (module docstring)."""
    digest = hashlib.sha256()
    if _raw_is_canonical(ref):
        buffer = bytearray(RAW_CHUNK_BYTES)
        for raw in iter_raw_chunks(ref, buffer):
            interrupts.check()
            digest.update(raw)
        return digest.hexdigest()
    if ref.dtype.numpy is None:
        raise CheckpointError(
            f"cannot hash a {'big-endian ' if ref.is_contiguous else 'strided or pieced '}"
            f"{ref.dtype.name} tensor (its values cannot be decoded)",
            ref.storage.path,
        )
    import numpy as np

    broadcast.check_work(ref)  # every element is hashed: a huge broadcast view is refused, not walked
    little = numpy_dtype(ref).newbyteorder("<")
    for chunk in iter_chunks(ref, chunk_elements):  # native-endian, C order
        digest.update(np.ascontiguousarray(chunk.astype(little, copy=False)).view(np.uint8).data)
    return digest.hexdigest()


def hash_tensors(refs: Sequence[TensorRef]) -> list[str]:
    """Each tensor's hash, in order; a tied tensor (same identity) is read once."""
    unique = {ref.identity: ref for ref in refs}
    done = dict(zip(unique, ordered_map(tensor_sha256, list(unique.values())), strict=True))
    return [done[ref.identity] for ref in refs]


def state_dict_sha256(records: Sequence[tuple[str, str, Sequence[int], str]]) -> str:
    """One hash for a whole state dict, from its ``(name, dtype, shape, tensor hash)`` records.

    Defined as the SHA-256 of the ASCII bytes of the compact JSON array of
    ``[name, dtype, shape, sha256]`` items sorted by name::

        json.dumps(sorted([name, dtype, list(shape), digest] ...), separators=(",", ":"), ensure_ascii=True)

    so renaming, re-typing or reshaping a tensor changes it, and anyone can
    recompute it from a lockfile with ten lines of Python.
    """
    items = sorted([name, dtype, list(shape), digest] for name, dtype, shape, digest in records)
    text = json.dumps(items, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
