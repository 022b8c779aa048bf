"""``scan``: what code would loading these files reach? Answered without loading them.

For each file, every pickle it holds is analysed statically
(:mod:`paraminspect.formats.pickle.scanner`); nothing is unpickled, imported or called.

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
from typing import Any, BinaryIO

from paraminspect import limits as _limits
from paraminspect.errors import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, AmbiguousArchive, CheckpointError
from paraminspect.formats.magic import (
    GGUF_MAGIC,
    METADATA_NAME,
    SNIFF_BYTES,
    ZIP_MAGIC,
    fits_safetensors,
    looks_like_safetensors,
)
from paraminspect.formats.opening import open_checkpoint, refuse_numpy_zip, resolve_directory
from paraminspect.formats.pickle.scanner import UNSAFE, Reference, scan_pickle
from paraminspect.formats.safetensors import read_safetensors
from paraminspect.formats.torchzip import max_records, open_archive
from paraminspect.io.files import open_regular
from paraminspect.limits import Limits
from paraminspect.output.report import Column, Kind, Table


@dataclass(frozen=True)
class PickleSource:
    """Pickle bytes inside a checkpoint, and the persistent-id kinds its format expects."""

    record: str  # where in the file: "archive/data.pkl"
    data: bytes
    persistent_kinds: frozenset[str] = frozenset()
    pickles: int = 1  # how many pickles follow each other from the start of ``data``
    # Findings that are no pickle's (a GGUF's chat template, trailing data), reported as they are.
    notes: tuple[Reference, ...] = ()


Extractor = Callable[[Path, Limits], Iterable[PickleSource]]
Sniffer = Callable[[Path, bytes], bool]
Source = tuple[str, Sniffer, Extractor]


def _zip_pickle(path: Path, fh: BinaryIO, size: int, limits: Limits, where: str = "") -> PickleSource:
    records = open_archive(path, fh, size, max_records(limits))
    data = records.read("data.pkl", limits.max_pickle_bytes)
    return PickleSource(f"{where}{records.top}/data.pkl", data, frozenset({"storage"}))


def _torch_zip(path: Path, limits: Limits) -> list[PickleSource]:
    with open_regular(path) as fh:
        try:
            return [_zip_pickle(path, fh, os.fstat(fh.fileno()).st_size, limits)]
        except CheckpointError:
            refuse_numpy_zip(fh, path)  # an .npz: say so, not what is wrong with it as a torch zip
            raise


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
    from paraminspect.formats import legacy

    return legacy.looks_like_legacy(head)


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
    _TORCH_ZIP,
    _GGUF,
    _LEGACY,
    ("sharded", _is_index, _sharded),
    _SAFETENSORS,
    ("dcp", lambda path, head: path.name == METADATA_NAME and head.startswith(b"\x80"), _dcp),
]
SINGLE_FILE_SOURCES: list[Source] = [_TORCH_ZIP, _LEGACY, _SAFETENSORS]  # what a shard may be


@dataclass
class Finding:
    """All references to one name from one record: how often and at which byte offsets."""

    record: str
    ref: Reference
    positions: list[int] = field(default_factory=list)
    opcodes: list[str] = field(default_factory=list)


@dataclass
class FileScan:
    path: Path
    format: str | None = None
    findings: list[Finding] = field(default_factory=list)
    error: CheckpointError | None = None
    pickles: int = 0  # how many pickles were analysed

    @property
    def status(self) -> str:
        if isinstance(self.error, AmbiguousArchive):
            return "ambiguous"  # a finding, not a failure: torch may load something we did not see
        if self.error is not None:
            return "error"
        return "unsafe" if any(f.ref.status == UNSAFE for f in self.findings) else "clean"


def scan_file(path: Path, limits: Limits | None = None) -> FileScan:
    """Find every global and persistent id in ``path``'s pickles; errors are kept, not
    raised, and so are the references found before the error."""
    limits = limits or _limits.current()
    result = FileScan(path)
    grouped: dict[tuple[str, str, str, str], Finding] = {}
    try:
        with _limits.using(limits):  # pickle.guard.read_one checks the same limits
            result.format, sources = _extract(path, limits)
            for source in _readable(sources):
                for ref in source.notes:
                    key = (source.record, ref.kind, ref.name, ref.status)
                    grouped.setdefault(key, Finding(source.record, ref)).positions.append(ref.position)
                start = 0
                for _ in range(source.pickles):
                    result.pickles += 1
                    refs, start = scan_pickle(source.data, start=start, persistent_kinds=source.persistent_kinds)
                    for ref in refs:
                        key = (source.record, ref.kind, ref.name, ref.status)
                        finding = grouped.setdefault(key, Finding(source.record, ref))
                        finding.positions.append(ref.position)
                        if ref.opcode not in finding.opcodes:
                            finding.opcodes.append(ref.opcode)
    except CheckpointError as exc:
        exc.source = exc.source or str(path)
        result.error = exc
    result.findings = list(grouped.values())
    return result


def _readable(sources: Iterable[PickleSource]) -> Iterator[PickleSource]:
    """Extractors may read lazily, so an OSError can come from any step of the iteration."""
    try:
        yield from sources
    except OSError as exc:
        raise CheckpointError(f"cannot read ({exc.strerror or exc})") from None


def _extract(path: Path, limits: Limits) -> tuple[str, Iterable[PickleSource]]:
    target = resolve_directory(path) if path.is_dir() else path
    if target.name == METADATA_NAME and target.parent == path:  # a DCP directory, however .metadata starts
        return "dcp", _dcp(target, limits)
    found = _extract_file(target, limits, SOURCES)
    if found is not None:
        return found
    ckpt = open_checkpoint(path, limits=limits)  # raises the usual clear error for unreadable input
    raise CheckpointError(f"scan cannot analyse {ckpt.format} files yet")


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


COLUMNS = [
    Column("file", "file", Kind.NAME),
    Column("record", "record", Kind.NAME),
    Column("kind", "kind"),
    Column("name", "name", Kind.NAME),
    Column("status", "status"),
    Column("count", "count", Kind.COUNT),
    Column("opcode", "opcode"),
    Column("position", "at byte", Kind.NUMBER),
]


@dataclass
class ScanReport:
    table: Table
    scans: list[FileScan]

    @property
    def exit_code(self) -> int:
        statuses = {s.status for s in self.scans}
        if "error" in statuses:
            return EXIT_ERROR
        return EXIT_DIFFERENT if statuses & {"unsafe", "ambiguous"} else EXIT_OK

    @property
    def unsafe_files(self) -> int:
        return sum(s.status == "unsafe" for s in self.scans)


def report(paths: list[Path], *, unsafe_only: bool = False, limits: Limits | None = None) -> ScanReport:
    """Scan every file; rows per referenced name (or one row for a file with none)."""
    scans = [scan_file(p, limits) for p in paths]
    rows: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    for scan in scans:
        refs: list[dict[str, Any]] = [
            {
                "record": f.record,
                "kind": f.ref.kind,
                "name": f.ref.name,
                "status": f.ref.status,
                "count": len(f.positions),
                "opcodes": f.opcodes,
                "positions": f.positions,
            }
            for f in scan.findings
        ]
        error = None if scan.error is None else scan.error.message
        shown = [r for r in refs if r["status"] == UNSAFE] if unsafe_only else refs
        files.append(
            {"file": str(scan.path), "format": scan.format, "status": scan.status, "error": error, "references": shown}
        )
        base = {"file": str(scan.path)}
        for ref in shown:
            rows.append({**base, **ref, "opcode": ",".join(ref["opcodes"]), "position": ref["positions"][0]})
        if scan.error is not None:
            rows.append({**base, "kind": "error", "name": error, "status": scan.status})
        elif not shown:
            none = "(no unsafe references)" if refs else "(no pickle data)" if scan.pickles == 0 else "(no references)"
            rows.append({**base, "record": "", "kind": "", "name": none, "status": scan.status})
    summary = {
        "files": len(scans),
        "clean": sum(s.status == "clean" for s in scans),
        "unsafe": sum(s.status == "unsafe" for s in scans),
        "ambiguous": sum(s.status == "ambiguous" for s in scans),
        "errors": sum(s.status == "error" for s in scans),
    }
    table = Table(COLUMNS, rows, document={"files": files, "summary": summary})
    return ScanReport(table, scans)
