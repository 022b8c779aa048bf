"""``scan``: what code would loading these files reach? Answered without loading them.

For each file, every pickle it holds is analysed statically
(:mod:`paraminspect.picklescan`); nothing is unpickled, imported or called.

Adding a pickle-based format: write an extractor ``(path, limits) -> list[PickleSource]``
that returns the raw pickle bytes the format holds (for a stream of several
back-to-back pickles, one source with ``pickles=N``), and append
``(format name, sniff, extractor)`` to :data:`SOURCES`; ``sniff(path, head)``
gets the first 16 bytes (``b""`` for a directory). A format readable by
``open_checkpoint`` but without a source is reported as an error, never as clean.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paraminspect import limits as _limits
from paraminspect.errors import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, CheckpointError
from paraminspect.formats import ZIP_MAGIC, looks_like_safetensors, open_checkpoint
from paraminspect.formats.safetensors import read_safetensors
from paraminspect.formats.torchzip import max_records, open_archive
from paraminspect.limits import Limits
from paraminspect.picklescan import UNSAFE, Reference, scan_pickle
from paraminspect.report import Column, Kind, Table


@dataclass(frozen=True)
class PickleSource:
    """Pickle bytes inside a checkpoint, and the persistent-id kinds its format expects."""

    record: str  # where in the file: "archive/data.pkl"
    data: bytes
    persistent_kinds: frozenset[str] = frozenset()
    pickles: int = 1  # how many pickles follow each other from the start of ``data``


Extractor = Callable[[Path, Limits], list[PickleSource]]
Sniffer = Callable[[Path, bytes], bool]


def _torch_zip(path: Path, limits: Limits) -> list[PickleSource]:
    with open(path, "rb") as fh:
        records = open_archive(path, fh, os.fstat(fh.fileno()).st_size, max_records(limits))
        data = records.read("data.pkl", limits.max_pickle_bytes)
    return [PickleSource(f"{records.top}/data.pkl", data, frozenset({"storage"}))]


def _safetensors(path: Path, limits: Limits) -> list[PickleSource]:
    # No pickle at all, but a file we call clean must at least be a valid file.
    with open(path, "rb") as fh:
        read_safetensors(path, fh, os.fstat(fh.fileno()).st_size, limits)
    return []


SOURCES: list[tuple[str, Sniffer, Extractor]] = [
    ("torch-zip", lambda _path, head: head.startswith(ZIP_MAGIC), _torch_zip),
    ("safetensors", lambda _path, head: looks_like_safetensors(head), _safetensors),
]


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
        if self.error is not None:
            return "error"
        return "unsafe" if any(f.ref.status == UNSAFE for f in self.findings) else "clean"


def scan_file(path: Path, limits: Limits | None = None) -> FileScan:
    """Find every global and persistent id in ``path``'s pickles; errors are kept, not raised."""
    limits = limits or _limits.current()
    result = FileScan(path)
    try:
        result.format, sources = _extract(path, limits)
        grouped: dict[tuple[str, str, str, str], Finding] = {}
        for source in sources:
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
        result.findings = list(grouped.values())
    except CheckpointError as exc:
        exc.source = exc.source or str(path)
        result.error = exc
    return result


def _extract(path: Path, limits: Limits) -> tuple[str, list[PickleSource]]:
    head: bytes | None = b""
    if not path.is_dir():
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError:
            head = None  # open_checkpoint below words the error as every command does
    for name, sniff, extract in SOURCES if head is not None else []:
        if sniff(path, head or b""):
            try:
                return name, extract(path, limits)
            except OSError as exc:
                raise CheckpointError(f"cannot read ({exc.strerror or exc})") from None
    ckpt = open_checkpoint(path, limits=limits)  # raises the usual clear error for unreadable input
    raise CheckpointError(f"scan cannot analyse {ckpt.format} files yet")


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
        return EXIT_DIFFERENT if "unsafe" in statuses else EXIT_OK

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
            rows.append({**base, "kind": "error", "name": error, "status": "error"})
        elif not shown:
            none = "(no unsafe references)" if refs else "(no pickle data)" if scan.pickles == 0 else "(no references)"
            rows.append({**base, "record": "", "kind": "", "name": none, "status": scan.status})
    summary = {
        "files": len(scans),
        "clean": sum(s.status == "clean" for s in scans),
        "unsafe": sum(s.status == "unsafe" for s in scans),
        "errors": sum(s.status == "error" for s in scans),
    }
    table = Table(COLUMNS, rows, document={"files": files, "summary": summary})
    return ScanReport(table, scans)
