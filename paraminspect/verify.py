"""Re-open a freshly written checkpoint and check it against what the writer meant.

Names, dtypes and shapes must match exactly, and the CRC-32 of every stored
tensor's bytes (little-endian, C order) must equal the CRC computed from the
data the writer was given. This runs on the new file before it replaces
anything, so a failed check leaves the original in place.
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paraminspect.dtypes import DType
from paraminspect.errors import CheckpointError
from paraminspect.formats import open_checkpoint
from paraminspect.inttext import exact_repr
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.parallel import ordered_map


@dataclass(frozen=True)
class Expected:
    dtype: DType
    shape: tuple[int, ...]
    crc: int | None  # None: not checked here (an alias of a checked name)


def tensor_crc(ref: TensorRef) -> int:
    """CRC-32 of the tensor's elements as little-endian C-order bytes, read in bounded chunks."""
    from paraminspect.edit import Keep
    from paraminspect.formats.safetensors_write import source_bytes

    crc = 0
    for chunk in source_bytes(Keep(ref), ref.dtype):
        crc = zlib.crc32(chunk, crc)
    return crc


def verify_written(
    path: Path,
    expected: dict[str, Expected],
    *,
    aliases: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    label: Path | None = None,
) -> None:
    """Raise :class:`CheckpointError` unless the file at ``path`` holds exactly ``expected``."""
    where = label or path
    try:
        ckpt = open_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"written file failed verification: {exc.message}", where) from None
    # The official library's check runs alongside ours (it mostly waits on its own
    # parsing); its verdict is still reported first, as when it ran before ours.
    with ThreadPoolExecutor(max_workers=1) as side:
        official = side.submit(_official_check, path, ckpt, where) if ckpt.format == "safetensors" else None
        try:
            _check_tensors(ckpt, expected, where)
        except CheckpointError:
            if official is not None:
                official.result()
            raise
        if official is not None:
            official.result()
    if aliases is not None and ckpt.aliases != aliases:
        raise CheckpointError("written file failed verification: tied-name metadata differs", where)
    if values is not None:
        written = {name: entry.value for name, entry in ckpt.values.items()}
        # repr: NaN equals itself, 1 differs from True; containers compare element by element.
        same = [exact_repr(written[n]) == exact_repr(v) for n, v in values.items() if n in written]
        if written.keys() != values.keys() or not all(same):
            changed = sorted(
                n for n in written.keys() | values.keys() if exact_repr(written.get(n)) != exact_repr(values.get(n))
            )
            raise CheckpointError(f"written file failed verification: non-tensor entries differ: {changed[:3]}", where)


def _check_tensors(ckpt: Checkpoint, expected: dict[str, Expected], where: Path) -> None:
    """Names, dtypes and shapes as expected, and every checked tensor's bytes as read back have its CRC."""
    found = ckpt.tensors
    missing = [n for n in expected if n not in found]
    extra = [n for n in found if n not in expected]
    if missing or extra:
        raise CheckpointError(f"written file failed verification: missing {missing[:3]}, unexpected {extra[:3]}", where)
    to_check: dict[tuple[object, ...], TensorRef] = {}
    for name, want in expected.items():
        ref = found[name]
        if ref.dtype != want.dtype or ref.shape != want.shape:
            raise CheckpointError(
                f"written file failed verification: {name!r} is {ref.dtype.name} {list(ref.shape)}, "
                f"expected {want.dtype.name} {list(want.shape)}",
                where,
            )
        if want.crc is not None:
            to_check.setdefault(ref.identity, ref)
    # Reading and zlib.crc32 both release the GIL: two threads halve the wall time.
    crcs = dict(zip(to_check, ordered_map(tensor_crc, list(to_check.values())), strict=True))
    for name, want in expected.items():
        if want.crc is not None and crcs[found[name].identity] != want.crc:
            raise CheckpointError(f"written file failed verification: checksum of {name!r} differs", where)


def warm_official_check() -> threading.Thread:
    """Import the official library (and the numpy it loads) on a helper thread.

    Started while the kernel copies the data (the copying thread holds no GIL),
    so the ~0.1 s of imports is not paid later, during verification.
    """
    thread = threading.Thread(target=_import_official, name="warm-safetensors", daemon=True)
    thread.start()
    return thread


def _import_official() -> None:
    with contextlib.suppress(ImportError):
        import numpy  # noqa: F401  # safe_open(framework="numpy") imports it
        import safetensors  # noqa: F401


def _official_check(path: Path, ours: Checkpoint, where: Path) -> None:
    """A written safetensors file must also open with the official library (the
    reference every other tool uses), with the same names, dtypes and shapes."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            official = {n: (f.get_slice(n).get_dtype(), tuple(f.get_slice(n).get_shape())) for n in f.keys()}  # noqa: SIM118
    except SafetensorError as exc:
        raise CheckpointError(f"written file failed verification: safetensors refuses it ({exc})", where) from None
    stored = {n: (r.dtype.safetensors, r.shape) for n, r in ours.tensors.items() if n not in ours.aliases}
    if official != stored:
        raise CheckpointError("written file failed verification: safetensors reads it differently", where)
