"""Re-open a freshly written checkpoint and check it against what the writer meant.

Names, dtypes and shapes must match exactly, and every stored tensor's bytes
(little-endian, C order) must be the ones the writer was given: a tensor copied
unchanged byte for byte from an input is compared with that input's bytes, read
again through the handle the edit read (the caller then checks that the input
did not change, so the copy is of the file that was opened); any other tensor's
CRC-32 must equal the CRC computed from the data the writer produced. This runs
on the new file before it replaces anything, so a failed check leaves the
original in place.
"""

from __future__ import annotations

import contextlib
import math
import threading
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paraminspect import interrupts
from paraminspect.dtypes import DType
from paraminspect.errors import CheckpointError
from paraminspect.formats.opening import open_checkpoint
from paraminspect.inttext import exact_repr
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.parallel import ordered_map

if TYPE_CHECKING:
    from paraminspect.edit.plan import Plan


@dataclass(frozen=True)
class Expected:
    dtype: DType
    shape: tuple[int, ...]
    crc: int | None  # None: not checked by CRC (an alias of a checked name, or a copy)
    copy_of: TensorRef | None = None  # the written bytes must equal this input range's


def tensor_crc(ref: TensorRef) -> int:
    """CRC-32 of the tensor's elements as little-endian C-order bytes, read in bounded chunks."""
    from paraminspect.edit.plan import Keep
    from paraminspect.edit.writers.copying import source_bytes

    crc = 0
    for chunk in source_bytes(Keep(ref), ref.dtype):
        crc = zlib.crc32(chunk, crc)
    return crc


def same_bytes(pair: tuple[TensorRef, TensorRef]) -> bool:
    """Whether two raw (contiguous, little-endian) tensors hold the same bytes, read in bounded chunks.

    Every chunk is a whole buffer, compared as one ``memcmp``: a range that does not end on a
    chunk boundary ends with the chunk that ends with it (overlapping the one before), so the
    thread's two buffers are reused for every tensor instead of paged in afresh for each.
    """
    from paraminspect.edit.writers.copying import CHUNK_BYTES
    from paraminspect.io import source as input_files

    written, original = pair
    (begin, end), (at, until) = written.byte_range(), original.byte_range()
    total = end - begin
    if total != until - at:
        return False
    ours, theirs = input_files.get(written.storage.path), input_files.get(original.storage.path)
    a, b = _buffers(min(CHUNK_BYTES, max(total, 1)))
    size = len(a)
    done = 0
    while done < total:
        interrupts.check()
        offset = min(done, total - size)  # the last chunk ends at the range's end
        ours.readinto(memoryview(a), begin + offset)
        theirs.readinto(memoryview(b), at + offset)
        if a != b:  # bytearray comparison is a memcmp
            return False
        done = offset + size
    return True


_local = threading.local()


def _buffers(size: int) -> tuple[bytearray, bytearray]:
    """Two buffers of ``size`` bytes: this thread's chunk-sized pair, or a new pair for a short range."""
    from paraminspect.edit.writers.copying import CHUNK_BYTES

    if size < CHUNK_BYTES:
        return bytearray(size), bytearray(size)
    pair: tuple[bytearray, bytearray] | None = getattr(_local, "buffers", None)
    if pair is None or len(pair[0]) != size:
        pair = _local.buffers = (bytearray(size), bytearray(size))
    return pair


def expected_tensors(plan: Plan, crcs: dict[str, int], label: Path) -> dict[str, Expected]:
    """What every written name must hold, each from that name's own source.

    ``crcs`` are the writer's checksums: of a name's own byte range when it was
    stored alone, of the values it produced for new or cast data. A group with
    none was copied byte for byte from its (unchanged) source range, and the
    written bytes must equal that range's. Names the
    writer stores as one tensor are only as right as the grouping that joined
    them, so each is read again through its own source byte range: they must all
    hold the same bytes, and each unchanged one is expected to read back as its
    own source, not as its group's.
    """
    from paraminspect.edit.plan import Keep, NewData, identity

    groups: dict[object, list[str]] = {}
    tensors = plan.tensors
    for name, source in tensors.items():
        groups.setdefault(identity(source), []).append(name)
    # New values have no source to read; every other shared source is read once per name.
    shared = [names for names in groups.values() if len(names) > 1 and not isinstance(tensors[names[0]], NewData)]
    own_refs = {name: _own_ref(plan, name) for names in shared for name in names}
    own = dict(zip(own_refs, ordered_map(tensor_crc, list(own_refs.values())), strict=True))
    for names in shared:
        differing = [n for n in names if own[n] != own[names[0]]]
        if differing:
            raise CheckpointError(
                f"written file failed verification: {names[0]!r} and {differing[0]!r} were stored as one "
                "tensor but their source bytes differ",
                label,
            )
    expected: dict[str, Expected] = {}
    for names in groups.values():
        written = next((crcs[n] for n in names if crcs.get(n) is not None), None)
        for name in names:
            source = tensors[name]
            crc = own[name] if isinstance(source, Keep) and name in own else written
            copy_of = source.ref if crc is None and isinstance(source, Keep) and _raw(source.ref) else None
            expected[name] = Expected(source.dtype, source.shape, crc, copy_of)
    return expected


def _raw(ref: TensorRef) -> bool:
    from paraminspect.edit.writers.copying import raw_copy_possible

    return raw_copy_possible(ref)


def _own_ref(plan: Plan, name: str) -> TensorRef:
    """The input tensor an output name was made from (its own, not its tie group's)."""
    from paraminspect.edit.plan import NewData

    entry = plan.ckpt.entries.get(plan.origin.get(name, ""))
    if isinstance(entry, TensorRef):
        return entry
    source = plan.tensors[name]
    assert not isinstance(source, NewData)
    return source.ref


def share_groups(keys: Mapping[str, object]) -> set[frozenset[str]]:
    """The names that share a key, as sets (names alone in theirs are left out)."""
    groups: dict[object, set[str]] = {}
    for name, key in keys.items():
        groups.setdefault(key, set()).add(name)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def verify_written(
    path: Path,
    expected: dict[str, Expected],
    *,
    aliases: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    label: Path | None = None,
    ties: dict[str, object] | None = None,
    storages: dict[str, object] | None = None,
    metadata: dict[str, str] | None = None,
    file_metadata: dict[str, tuple[str, Any]] | None = None,
) -> None:
    """Raise :class:`CheckpointError` unless the file at ``path`` holds exactly ``expected``
    (and, when given, exactly ``metadata`` as its safetensors ``__metadata__``, exactly
    ``file_metadata`` as its typed key/values: a GGUF edit's).

    ``ties`` and ``storages`` give each name a key; names with equal keys, and only
    those, must be one tensor (``ties``) or share one storage (``storages``) in the
    written file, so bytes are shared only where the sources shared them.
    """
    where = label or path
    try:
        ckpt = open_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"written file failed verification: {exc.message}", where) from None
    try:
        _check_sharing(ckpt, ties, storages, where)
        _verify(ckpt, path, where, expected, aliases, values)
        if metadata is not None and ckpt.metadata != metadata:
            changed = sorted(
                k for k in ckpt.metadata.keys() | metadata.keys() if ckpt.metadata.get(k) != metadata.get(k)
            )
            raise CheckpointError(f"written file failed verification: metadata differs ({changed[:3]})", where)
        if file_metadata is not None:
            _check_file_metadata(ckpt.file_metadata, file_metadata, where)
    finally:
        for opened in ckpt.sources:  # the new file's handle ends with its check
            opened.close()


def _check_file_metadata(found: dict[str, tuple[str, Any]], meant: dict[str, tuple[str, Any]], where: Path) -> None:
    """Keys in order, each with its type and value (a NaN equal to itself)."""
    same = list(found) == list(meant) and all(_same_typed(found[k], meant[k]) for k in meant)
    if not same:
        changed = [k for k in {**found, **meant} if not _same_typed(found.get(k), meant.get(k))]
        raise CheckpointError(f"written file failed verification: metadata differs ({changed[:3]})", where)


def _same_typed(a: tuple[str, Any] | None, b: tuple[str, Any] | None) -> bool:
    return a is not None and b is not None and a[0] == b[0] and _same_value(a[1], b[1])


def _same_value(a: Any, b: Any) -> bool:
    """``==``, except that a NaN equals a NaN, also inside arrays.

    Not by ``repr``: a GGUF string array (formats/ggufstrings.GGUFStrings) shows only
    its length there, so two vocabularies of one size would pass for equal; ``==``
    compares their bytes.
    """
    if a == b:
        return True
    if isinstance(a, float) and isinstance(b, float):
        return math.isnan(a) and math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_value, a, b))
    return False


def _verify(
    ckpt: Checkpoint,
    path: Path,
    where: Path,
    expected: dict[str, Expected],
    aliases: dict[str, str] | None,
    values: dict[str, Any] | None,
) -> None:
    # The official library's check runs alongside ours (it mostly waits on its own
    # parsing); its verdict is still reported first, as when it ran before ours.
    with ThreadPoolExecutor(max_workers=1) as side:
        official = (
            interrupts.calm(side.submit, _official_check, path, ckpt, where) if ckpt.format == "safetensors" else None
        )
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


def _check_sharing(
    ckpt: Checkpoint, ties: dict[str, object] | None, storages: dict[str, object] | None, where: Path
) -> None:
    found = ckpt.tensors
    sharing: tuple[tuple[str, Mapping[str, object] | None, Mapping[str, object]], ...] = (
        ("tied names", ties, {n: r.identity for n, r in found.items()}),
        ("names sharing storage", storages, {n: r.storage.identity for n, r in found.items() if not r.chunks}),
    )
    for what, keys, written in sharing:
        if keys is not None and share_groups(written) != share_groups(keys):
            extra = sorted(share_groups(written) - share_groups(keys), key=sorted)
            missing = sorted(share_groups(keys) - share_groups(written), key=sorted)
            detail = f"{sorted(extra[0])} share bytes" if extra else f"{sorted(missing[0])} no longer share bytes"
            raise CheckpointError(f"written file failed verification: {what} differ ({detail})", where)


def _check_tensors(ckpt: Checkpoint, expected: dict[str, Expected], where: Path) -> None:
    """Names, dtypes and shapes as expected, and every checked tensor's bytes as read back have its CRC."""
    found = ckpt.tensors
    missing = [n for n in expected if n not in found]
    extra = [n for n in found if n not in expected]
    if missing or extra:
        raise CheckpointError(f"written file failed verification: missing {missing[:3]}, unexpected {extra[:3]}", where)
    to_check: dict[tuple[object, ...], TensorRef] = {}
    to_compare: dict[tuple[object, ...], tuple[TensorRef, TensorRef]] = {}
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
        elif want.copy_of is not None:
            to_compare.setdefault(ref.identity, (ref, want.copy_of))
    # Reading, zlib.crc32 and comparing bytes all release the GIL: two threads halve the wall time.
    crcs = dict(zip(to_check, ordered_map(tensor_crc, list(to_check.values())), strict=True))
    for name, want in expected.items():
        if want.crc is not None and crcs[found[name].identity] != want.crc:
            raise CheckpointError(f"written file failed verification: checksum of {name!r} differs", where)
    same = dict(zip(to_compare, ordered_map(same_bytes, list(to_compare.values())), strict=True))
    for name, want in expected.items():
        if want.crc is None and want.copy_of is not None and not same[found[name].identity]:
            # The message of a CRC mismatch, word for word: what the user learns is the same.
            raise CheckpointError(f"written file failed verification: checksum of {name!r} differs", where)


def warm_official_check() -> threading.Thread:
    """Import the official library (and the numpy it loads) on a helper thread.

    Started while the kernel copies the data (the copying thread holds no GIL),
    so the ~0.1 s of imports is not paid later, during verification. Not a
    daemon: an interrupted write exits while the import may still run, and an
    interpreter finalising under a daemon thread inside an extension module's
    import crashes now and then (SIGSEGV at exit); a plain thread is joined
    before finalisation (the console script leaves with ``os._exit``).
    """
    thread = threading.Thread(target=_import_official, name="warm-safetensors")
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
