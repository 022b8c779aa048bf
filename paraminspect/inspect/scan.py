"""``scan``: what code would loading these files reach? Answered without loading them.

For each file, every pickle it holds is analysed statically
(:mod:`paraminspect.formats.pickle.scanner`); nothing is unpickled, imported or called.
Where a format keeps its pickles is :mod:`~paraminspect.inspect.scansources` (how to
add a format is described there), one file's scan :mod:`~paraminspect.inspect.scanfile`;
this module turns the scans into the report (table, JSON, ``--explain``, SARIF).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paraminspect.errors import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK
from paraminspect.formats.pickle.scanner import NUMPY_DATA, UNSAFE
from paraminspect.inspect.explain import explain_reference, explain_unfinished
from paraminspect.inspect.scanfile import INCONCLUSIVE, FileScan, scan_file
from paraminspect.limits import Limits
from paraminspect.output.report import Column, Kind, Table
from paraminspect.output.report import Finding as CodeFinding

__all__ = ["COLUMNS", "INCONCLUSIVE", "FileScan", "ScanReport", "report", "scan_file"]


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


_EXPLAINED = (UNSAFE, NUMPY_DATA)  # statuses --explain has a line for

# What the one-line summary calls each kind of unsafe finding, in the order it names them.
_FLAGGED = {
    "global": "globals outside the allow-list",
    "persistent-id": "globals outside the allow-list",
    "pattern": "patterns aimed at torch's weights_only loader",
    "code": "code",
    "chat-template": "chat templates with injection patterns",
    "trailing-data": "trailing data",
    "appended-zip": "an appended zip archive",
}


@dataclass
class ScanReport:
    table: Table
    scans: list[FileScan]

    @property
    def exit_code(self) -> int:
        statuses = {s.status for s in self.scans}
        if INCONCLUSIVE in statuses:
            return EXIT_ERROR
        return EXIT_DIFFERENT if statuses & {"unsafe", "ambiguous"} else EXIT_OK

    def explanations(self) -> list[str]:
        """``scan --explain``: one line per unsafe or numpy-data reference and per unfinished scan."""
        lines = []
        for scan in self.scans:
            for f in scan.findings:
                if f.ref.status in _EXPLAINED:
                    load, instead = explain_reference(f.ref.kind, f.ref.name, f.ref.status, f.ref.rule)
                    lines.append(f"{scan.path}: {f.ref.name}: {load}. Instead: {instead}.")
            if scan.status == INCONCLUSIVE and scan.error is not None:
                load, instead = explain_unfinished(scan.error.message)
                lines.append(f"{scan.path}: inconclusive: {load}. Instead: {instead}.")
        return lines

    @property
    def unsafe_files(self) -> int:
        return sum(s.status == "unsafe" for s in self.scans)

    def summary(self) -> str | None:
        """The stderr line of a scan with findings, naming what was found (None: nothing unsafe)."""
        if not self.unsafe_files:
            return None
        count = f"{self.unsafe_files} of {len(self.scans)} file(s)"
        kinds = {f.ref.kind for s in self.scans for f in s.findings if f.ref.status == UNSAFE}
        ordered = [k for k in _FLAGGED if k in kinds] + sorted(kinds - _FLAGGED.keys())
        found = list(dict.fromkeys(_FLAGGED.get(kind, kind) for kind in ordered))
        if found == [_FLAGGED["global"]]:
            return f"{count} reference globals outside the allow-list"
        return f"{count} hold {', '.join(found)}"

    @property
    def findings(self) -> list[CodeFinding]:
        """Each unsafe reference, ambiguous archive and unfinished scan, for ``--format sarif``."""
        found: list[CodeFinding] = []
        for scan in self.scans:
            file = str(scan.path)
            for f in scan.findings:
                if f.ref.status == UNSAFE:
                    where = f"{f.record} at byte {f.positions[0]}" + (
                        f" (and {len(f.positions) - 1} more)" if len(f.positions) > 1 else ""
                    )
                    load, instead = explain_reference(f.ref.kind, f.ref.name, f.ref.status, f.ref.rule)
                    if f.ref.kind == "pattern" and f.ref.rule is not None:
                        text = f"{f.ref.name} ({where}): {load}; instead, {instead}"
                        found.append(CodeFinding(f.ref.rule, text, file, f.record))
                        continue
                    text = (
                        f"{f.ref.kind} {f.ref.name!r} is outside the allow-list ({where}): {load}; instead, {instead}"
                    )
                    found.append(CodeFinding("PI001", text, file, f.record))
            if scan.status == "ambiguous" and scan.error is not None:
                found.append(CodeFinding("PI002", scan.error.message, file))
            elif scan.error is not None:
                load, instead = explain_unfinished(scan.error.message)
                found.append(CodeFinding("PI003", f"inconclusive: {load}; {instead}", file))
        return found


def report(
    paths: list[Path], *, unsafe_only: bool = False, limits: Limits | None = None, explained: bool = False
) -> ScanReport:
    """Scan every file; rows per referenced name (or one row for a file with none).
    ``explained``: each unsafe reference in JSON gets ``explanation`` (explain.py)."""
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
                **({"rule": f.ref.rule} if f.ref.rule is not None else {}),
            }
            for f in scan.findings
        ]
        error = None if scan.error is None else scan.error.message
        shown = [r for r in refs if r["status"] == UNSAFE] if unsafe_only else refs
        entry: dict[str, Any] = {
            "file": str(scan.path),
            "format": scan.format,
            "status": scan.status,
            "error": error,
            "references": shown,
        }
        if explained:
            for ref in shown:
                if ref["status"] in _EXPLAINED:
                    why = explain_reference(ref["kind"], ref["name"], ref["status"], ref.get("rule"))
                    ref["explanation"] = dict(zip(("load", "instead"), why, strict=True))
            if scan.status == INCONCLUSIVE and error is not None:
                entry["explanation"] = dict(zip(("load", "instead"), explain_unfinished(error), strict=True))
        files.append(entry)
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
        "inconclusive": sum(s.status == INCONCLUSIVE for s in scans),
    }
    table = Table(COLUMNS, rows, document={"files": files, "summary": summary})
    return ScanReport(table, scans)
