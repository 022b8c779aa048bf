"""Where each format keeps its pickles: the bytes ``scan`` analyses, read without unpickling.

Adding a pickle-based format: write an extractor ``(path, limits) -> Iterable[PickleSource]``
that yields the raw pickle bytes the format holds (for a stream of several
back-to-back pickles, one source with ``pickles=N``), and add
``(format name, sniff, extractor)`` to :data:`SOURCES` in ``open_checkpoint``'s
order; ``sniff(path, head)`` gets the first ``SNIFF_BYTES``. A directory is
first resolved to the file it stands for, as ``open_checkpoint`` resolves it
(a DCP directory to its ``.metadata``). Extractors reuse the readers' helpers
for file layout and path safety. A format readable by ``open_checkpoint`` but
without a source is reported as an error, never as clean.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from paraminspect.errors import CheckpointError
from paraminspect.formats.magic import (
    GGUF_MAGIC,
    METADATA_NAME,
    NPY_MAGIC,
    SNIFF_BYTES,
    ZIP_MAGIC,
    fits_safetensors,
    looks_like_legacy,
    looks_like_safetensors,
)
from paraminspect.formats.opening import open_checkpoint, resolve_directory
from paraminspect.formats.pickle.scanner import Reference
from paraminspect.formats.safetensors import read_safetensors
from paraminspect.formats.torchzip import ZipRecords, is_torchscript, max_records, open_archive
from paraminspect.io.files import open_regular
from paraminspect.limits import Limits


@dataclass(frozen=True)
class PickleSource:
    """Pickle bytes inside a checkpoint, and the persistent-id kinds its format expects."""

    record: str  # where in the file: "archive/data.pkl"
    data: bytes
    persistent_kinds: frozenset[str] = frozenset()
    pickles: int = 1  # how many pickles follow each other from the start of ``data``
    code: tuple[str, ...] = ()  # code files the archive holds beside this pickle (TorchScript's code/)
    code_label: str = "TorchScript source (run by torch.jit.load's module)"
    # Findings that are no pickle's (a GGUF's chat template, trailing data), reported as they are.
    notes: tuple[Reference, ...] = ()
    # A torch zip's storage record sizes, by storage key (None: no such record), to hold each
    # storage's declared size to (scanfile.py). compare=False: a function, not identity.
    record_size: Callable[[str], int | None] | None = field(default=None, compare=False)


_STORAGE = frozenset({"storage"})
Extractor = Callable[[Path, Limits], Iterable[PickleSource]]
Sniffer = Callable[[Path, bytes], bool]
Source = tuple[str, Sniffer, Extractor]


def _zip_pickle(path: Path, fh: BinaryIO, size: int, limits: Limits, where: str = "") -> PickleSource:
    records = open_archive(path, fh, size, max_records(limits))
    data = records.read("data.pkl", limits.max_pickle_bytes)
    return PickleSource(f"{where}{records.top}/data.pkl", data, _STORAGE, record_size=_sizes(records))


def _sizes(records: ZipRecords) -> Callable[[str], int | None]:
    def size(key: str) -> int | None:
        try:
            return records.locate(f"data/{key}")[1]
        except CheckpointError:  # missing or compressed: the readers refuse it in their own words
            return None

    return size


def _torch_zip(path: Path, limits: Limits) -> list[PickleSource]:
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        records = ZipRecords(path, fh, size, max_records(limits))
        if is_torchscript(records):
            return _torchscript(records, limits)
        if "archive_format" in records:
            return _pt2(path, records, limits)
        return [_zip_pickle(path, fh, size, limits)]


def _pt2(path: Path, records: ZipRecords, limits: Limits) -> list[PickleSource]:
    """A torch.export archive: its pickles (example inputs, pickled payloads, custom objects)
    and any AOTInductor build (compiled code, listed as findings)."""
    from paraminspect.formats import export

    if export.model_names(records) or not export.code_files(records):  # else: only an AOTInductor build
        export.read_pt2(path, records, limits)  # the whole archive is valid before it is called clean
    found = [PickleSource(where, data, _STORAGE) for where, data in export.pickles(path, records, limits)]
    code = tuple(f"{records.top}/{n}" for n in export.code_files(records))
    label = "AOTInductor build (compiled code, loaded by torch._inductor.aoti_load_package)"
    return [*found, PickleSource("(none)", b"\x80\x02N.", code=code, code_label=label)] if code else found


def _torchscript(records: ZipRecords, limits: Limits) -> list[PickleSource]:
    """Its data.pkl and constants.pkl, and its code files (listed as findings, never run)."""
    from paraminspect.formats.torchscript import code_files

    found = []
    for name in ("data.pkl", "constants.pkl"):
        if name in records:
            found.append(PickleSource(f"{records.top}/{name}", records.read(name, limits.max_pickle_bytes), _STORAGE))
    code = tuple(f"{records.top}/{n}" for n in code_files(records))
    return [*found[:-1], replace(found[-1], code=code)] if found else [PickleSource("(none)", b"\x80\x02N.", code=code)]


# numpy object arrays (descr '|O') are pickles: every one is analysed; numeric arrays
# hold none, but their headers must at least be valid.


def _npy(path: Path, limits: Limits) -> list[PickleSource]:
    from paraminspect.formats import npy

    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size

        def read_at(offset: int, n: int) -> bytes:
            fh.seek(offset)
            return fh.read(n)

        header = npy.read_header(lambda n: read_at(0, n), size, limits)
        if header.descr != npy.OBJECT:
            npy.read_npy(path, fh, size, limits)
            return []
        return [PickleSource("(object array)", npy.object_pickle(read_at, header, size, limits))]


def _npz(path: Path, limits: Limits) -> list[PickleSource]:
    from paraminspect.formats import numpyzip

    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        numpyzip.read_npz(path, fh, size, limits)  # the whole archive is valid before any member is called clean
        return [PickleSource(member, data) for member, data in numpyzip.object_pickles(path, fh, size, limits)]


def _onnx(path: Path, limits: Limits) -> list[PickleSource]:
    # Protobuf, no pickle; external data files are only located. A file called clean must be valid.
    open_checkpoint(path, limits=limits)
    return []


def _is_onnx(_path: Path, head: bytes) -> bool:
    from paraminspect.formats import onnx

    return onnx.looks_like_onnx(head)


def _is_npz(path: Path, head: bytes) -> bool:
    from paraminspect.formats import numpyzip

    with open_regular(path) as fh:
        return head.startswith(ZIP_MAGIC) and numpyzip.looks_like_npz(fh)


# The legacy, sharded and DCP readers are imported when their format is met, as
# open_checkpoint does, so scanning a torch zip does not pay for them.


def _legacy(path: Path, limits: Limits) -> list[PickleSource]:
    from paraminspect.formats import legacy

    # Offsets in the joined pickles are file offsets; the storage bytes after them hold no pickle.
    with open_regular(path) as fh:
        return [PickleSource("(file)", legacy.raw_pickles(fh), frozenset({"storage"}), len(legacy.PICKLES))]


def _safetensors(path: Path, limits: Limits) -> list[PickleSource]:
    # No pickle at all, but a file we call clean must at least be a valid file.
    with open_regular(path) as fh:
        read_safetensors(path, fh, os.fstat(fh.fileno()).st_size, limits)
    return []


def _gguf(path: Path, limits: Limits) -> list[PickleSource]:
    # No pickle; the file must be valid, and its templates and tail are looked at.
    from paraminspect.inspect.ggufscan import gguf_findings

    return [PickleSource(record, b"", pickles=0, notes=(ref,)) for record, ref in gguf_findings(path, limits)]


def _sharded(path: Path, limits: Limits) -> Iterator[PickleSource]:
    """Each shard by its own format; records are prefixed with the shard's file name.
    Every shard is located (inside the directory, existing) before any is read."""
    from paraminspect.formats import sharded

    with open_regular(path) as fh:
        weight_map, _ = sharded.parse_index(sharded.read_index_bytes(fh, os.fstat(fh.fileno()).st_size, limits))
    shards = [
        (shard, sharded.locate_shard(path, shard, names))
        for shard, names in sharded.group_by_shard(weight_map, limits).items()
    ]
    for shard, file in shards:
        try:
            found = _extract_file(file, limits, SINGLE_FILE_SOURCES)
            if found is None:
                raise CheckpointError("not a readable torch.save or safetensors file")
            for source in found[1]:
                yield replace(source, record=f"{shard}:{source.record}")
        except CheckpointError as exc:
            raise _within(exc, f"shard {shard!r}", path) from None


def _dcp(path: Path, limits: Limits) -> Iterator[PickleSource]:
    """``.metadata`` first (so its globals are reported even if it is no usable DCP
    metadata), then the ``data.pkl`` of each item it locates in the .distcp files."""
    from paraminspect.formats import dcp

    raw = dcp.read_metadata_bytes(path.parent, limits)
    yield PickleSource(path.name, raw)
    items = dcp.Items(path.parent, limits)
    try:
        # As many items as the reader opens; .metadata's size limit bounds them.
        for location in dcp.item_locations(dcp.parse_metadata(raw)):
            relative, begin, length = location
            what = f"item at byte {begin} of {relative!r}"
            file, window = items.window(what, location)
            try:
                yield _zip_pickle(file, window, length, limits, f"{relative}@{begin}:")
            except CheckpointError as exc:
                raise _within(exc, what) from None
    finally:
        items.close()


def _within(exc: CheckpointError, where: str, source: Path | None = None) -> CheckpointError:
    """The same kind of error (an ambiguous archive stays one) with where it happened in front."""
    wrapped = copy.copy(exc)
    wrapped.message = f"{where}: {exc.message}"
    wrapped.args = (wrapped.message,)
    wrapped.source = None if source is None else str(source)
    return wrapped


def _is_legacy(_path: Path, head: bytes) -> bool:
    return looks_like_legacy(head)


def _is_index(path: Path, head: bytes) -> bool:
    # As open_checkpoint decides: JSON, unless it is also a safetensors header that fits the file.
    from paraminspect.formats import sharded

    return sharded.looks_like_index(head) and not fits_safetensors(head, path.stat().st_size)


_TORCH_ZIP: Source = ("torch-zip", lambda _path, head: head.startswith(ZIP_MAGIC), _torch_zip)
_LEGACY: Source = ("torch-legacy", _is_legacy, _legacy)
_SAFETENSORS: Source = ("safetensors", lambda _path, head: looks_like_safetensors(head), _safetensors)
_GGUF: Source = ("gguf", lambda _path, head: head.startswith(GGUF_MAGIC), _gguf)
# Tried in order, as open_checkpoint tries them (an index before safetensors: see _is_index).
SOURCES: list[Source] = [
    ("npz", _is_npz, _npz),
    _TORCH_ZIP,
    _GGUF,
    _LEGACY,
    ("sharded", _is_index, _sharded),
    _SAFETENSORS,
    ("dcp", lambda path, head: path.name == METADATA_NAME and head.startswith(b"\x80"), _dcp),
    ("npy", lambda _path, head: head.startswith(NPY_MAGIC), _npy),
    ("onnx", _is_onnx, _onnx),
]
SINGLE_FILE_SOURCES: list[Source] = [_TORCH_ZIP, _LEGACY, _SAFETENSORS]  # what a shard may be


def readable(sources: Iterable[PickleSource]) -> Iterator[PickleSource]:
    """Extractors may read lazily, so an OSError can come from any step of the iteration."""
    try:
        yield from sources
    except OSError as exc:
        raise CheckpointError(f"cannot read ({exc.strerror or exc})") from None


def extract(path: Path, limits: Limits) -> tuple[str, Iterable[PickleSource]]:
    if path.is_dir():
        try:
            resolve_directory(path)
        except CheckpointError:
            components = _pipeline(path, limits)
            if components is None:
                raise
            return "diffusers-pipeline", components
    target = resolve_directory(path) if path.is_dir() else path
    if target.name == METADATA_NAME and target.parent == path:  # a DCP directory, however .metadata starts
        return "dcp", _dcp(target, limits)
    found = _extract_file(target, limits, SOURCES)
    if found is not None:
        return found
    ckpt = open_checkpoint(path, limits=limits)  # raises the usual clear error for unreadable input
    raise CheckpointError(f"scan cannot analyse {ckpt.format} files yet")


def _pipeline(path: Path, limits: Limits) -> list[PickleSource] | None:
    """Each component's pickles (records prefixed ``unet/``), as open_checkpoint opens a
    pipeline; None when the folder is not a pipeline with weights."""
    from paraminspect.formats.pipeline import components

    found: list[PickleSource] = []
    parts = 0
    for name in components(path, limits):
        sub = path / name
        if sub.is_symlink() or not sub.is_dir():
            continue
        try:
            _, sources = extract(sub, limits)
            found.extend(replace(source, record=f"{name}/{source.record}") for source in sources)
        except CheckpointError as exc:
            if "no checkpoint in it" in exc.message:
                continue
            raise _within(exc, f"pipeline component {name!r}", path) from None
        parts += 1
    return found if parts else None


def _extract_file(path: Path, limits: Limits, sources: list[Source]) -> tuple[str, Iterable[PickleSource]] | None:
    """The first source whose sniffer accepts ``path`` (None if none does, or it cannot be read)."""
    try:
        with open_regular(path) as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    for name, sniff, extract in sources if head else []:
        if sniff(path, head):
            try:
                return name, extract(path, limits)
            except OSError as exc:
                raise CheckpointError(f"cannot read ({exc.strerror or exc})") from None
    return None
