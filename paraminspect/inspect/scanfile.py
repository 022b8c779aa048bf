"""One file's scan: every pickle its format holds, analysed statically, findings grouped by name.

Errors are kept, never raised, and so are the references found before one: a
scan that stops is *inconclusive*, never clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from paraminspect import limits as _limits
from paraminspect.dtypes import BY_STORAGE
from paraminspect.errors import AmbiguousArchive, CheckpointError
from paraminspect.formats.pickle.scanner import RULE_STORAGE_SIZE, UNSAFE, Reference, StorageClaim, scan_pickle
from paraminspect.inspect.scansources import extract, readable
from paraminspect.limits import Limits


@dataclass
class Finding:
    """All references to one name from one record: how often and at which byte offsets."""

    record: str
    ref: Reference
    positions: list[int] = field(default_factory=list)
    opcodes: list[str] = field(default_factory=list)


# A scan that could not finish (unreadable file, corrupt record, a limit hit): exit 2.
INCONCLUSIVE = "inconclusive"


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
            return INCONCLUSIVE  # never "clean": what the rest of the file holds is unknown
        return "unsafe" if any(f.ref.status == UNSAFE for f in self.findings) else "clean"


def scan_file(path: Path, limits: Limits | None = None) -> FileScan:
    """Find every global and persistent id in ``path``'s pickles; errors are kept, not
    raised, and so are the references found before the error."""
    limits = limits or _limits.current()
    result = FileScan(path)
    grouped: dict[tuple[str, str, str, str], Finding] = {}
    try:
        with _limits.using(limits):  # pickle.guard.read_one checks the same limits
            result.format, sources = extract(path, limits)
            for source in readable(sources):
                for ref in source.notes:
                    key = (source.record, ref.kind, ref.name, ref.status)
                    grouped.setdefault(key, Finding(source.record, ref)).positions.append(ref.position)
                start = 0
                for _ in range(source.pickles):
                    result.pickles += 1
                    claims: list[StorageClaim] = []
                    refs, start = scan_pickle(
                        source.data, start=start, persistent_kinds=source.persistent_kinds, storages=claims
                    )
                    if source.record_size is not None:
                        refs.extend(storage_size_findings(claims, source.record_size))
                    for ref in refs:
                        key = (source.record, ref.kind, ref.name, ref.status)
                        finding = grouped.setdefault(key, Finding(source.record, ref))
                        finding.positions.append(ref.position)
                        if ref.opcode not in finding.opcodes:
                            finding.opcodes.append(ref.opcode)
                for file in source.code:
                    code = Reference("code", source.code_label, "-", 0, UNSAFE)
                    grouped.setdefault((file, "code", file, UNSAFE), Finding(file, code, [0], ["-"]))
    except CheckpointError as exc:
        exc.source = exc.source or str(path)
        result.error = exc
    result.findings = list(grouped.values())
    return result


def storage_size_findings(claims: list[StorageClaim], record_size: Callable[[str], int | None]) -> Iterator[Reference]:
    """A storage whose declared size (numel x element size) is not its record's size.

    torch.save never writes one. torch 2.10 and later refuse it ("record size ... does not
    match expected size"); before, the weights_only loader did not check (CVE-2026-24747).
    """
    for claim in claims:
        module, _, name = claim.storage_class.rpartition(".")
        dtype = BY_STORAGE.get(name) if module == "torch" else None
        if claim.storage_class == "torch.storage.UntypedStorage":
            declared = claim.numel  # bytes
        elif dtype is not None:
            declared = dtype.nbytes(claim.numel)
        else:
            continue  # a storage class torch does not load anyway
        actual = record_size(claim.key)
        if actual is not None and actual != declared:
            what = f"storage {claim.key!r} declares {declared:,} bytes; its record data/{claim.key} holds {actual:,}"
            yield Reference("pattern", what, "BINPERSID", claim.position, UNSAFE, RULE_STORAGE_SIZE)
