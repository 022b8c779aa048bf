"""``check``: hold a checkpoint's structure to a saved contract (for CI).

The contract (SPEC) is the JSON ``paraminspect shapes --format json`` writes.
Only its ``tensors`` list is read, and of each item only ``name`` (required),
``dtype`` and ``shape`` (each optional: leave one out to leave it unchecked);
every other key (``file``, ``numel``, ``total`` ...) is ignored, so a spec can
also be written by hand. No tensor data is read, except for a lockfile
(``hash --format json``, recognised by its ``schema``): each item's ``sha256``
is then checked too, hashing the tensors whose dtype and shape match. A
``policies`` object (policies.py) adds value policies to the contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from paraminspect import dtypes
from paraminspect.compare import lockfile
from paraminspect.compare import policies as value_policies
from paraminspect.compare.diff import mapped_names
from paraminspect.compare.rows import Side
from paraminspect.data.hashing import hash_tensors
from paraminspect.errors import CheckpointError, SelectionError, UsageError
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.naming.prefixes import NameMap
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Finding, Kind, Table, Verdict
from paraminspect.quant.logical import Logical, Recognition

MAX_SPEC_BYTES = 256 << 20


class Drift(str, Enum):
    MISSING = "missing"
    UNEXPECTED = "unexpected"
    DTYPE = "dtype_changed"
    SHAPE = "shape_changed"
    CONTENT = "content_changed"  # a lockfile's hash differs


RULES = {Drift.MISSING: "PI101", Drift.UNEXPECTED: "PI102", Drift.DTYPE: "PI103", Drift.SHAPE: "PI104"}
RULES[Drift.CONTENT] = "PI105"
POLICY_RULES = {"finite": "PI111", "max_abs": "PI112", "no_all_zero": "PI113", "no_constant": "PI114", "dtype": "PI115"}

LABELS = {
    Drift.MISSING: "missing",
    Drift.UNEXPECTED: "unexpected",
    Drift.DTYPE: "dtype changed",
    Drift.SHAPE: "shape changed",
    Drift.CONTENT: "content changed",
}


@dataclass(frozen=True)
class Expected:
    """One tensor the spec asks for; None means "not checked"."""

    name: str
    dtype: str | None
    shape: tuple[int, ...] | None
    sha256: str | None = None  # from a lockfile


def _canonical_dtype(text: str) -> str:
    found = dtypes.lookup(text)
    return found.name if found else text


def load_spec(path: Path) -> tuple[dict[str, Expected] | None, value_policies.Policies]:
    """Read and validate a spec file (or lockfile): its tensors (None if it has only
    policies) and its policies; any problem is a one-line error about it."""
    document = lockfile.read_document(path, "spec")
    locked = lockfile.is_lock_document(document)
    if locked:
        lockfile.check_version(document, path)
    items = document.get("tensors") if isinstance(document, dict) else None
    rules = value_policies.Policies()
    if isinstance(document, dict) and "policies" in document:
        rules = value_policies.from_spec(document["policies"], path)
        if items is None:
            return None, rules
    if not isinstance(items, list):
        raise CheckpointError("spec has no 'tensors' list (write one with 'paraminspect shapes FILE -f json')", path)
    spec: dict[str, Expected] = {}
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise CheckpointError(f"spec tensors[{position}] has no string 'name'", path)
        name, dtype, shape = item["name"], item.get("dtype"), item.get("shape")
        if dtype is not None and not isinstance(dtype, str):
            raise CheckpointError(f"spec tensor {name!r}: 'dtype' must be a string", path)
        if shape is not None and not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise CheckpointError(f"spec tensor {name!r}: 'shape' must be a list of non-negative integers", path)
        if name in spec:
            raise CheckpointError(f"spec lists {name!r} twice", path)
        spec[name] = Expected(
            name,
            None if dtype is None else _canonical_dtype(dtype),
            None if shape is None else tuple(shape),
            lockfile.sha256_of(item, name, path) if locked else None,
        )
    return spec, rules


_COUNT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kKmMbBgGtT]?)\s*\Z")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_count(text: str) -> int:
    """A parameter count as people write it: ``1000000``, ``1_000_000``, ``110M``, ``7B``, ``1.5k``."""
    match = _COUNT.match(text.replace("_", "").replace(",", ""))
    if not match:
        raise UsageError(f"--max-params expects a count like 1000000, 110M or 7B, got {text!r}")
    from decimal import Decimal  # exact for "1.1B"; only --max-params needs it

    number, unit = match.groups()
    return int(Decimal(number) * _SCALE[unit.lower()])


COLUMNS = [
    Column("status", "status"),
    Column("name", "name", Kind.NAME),
    Column("expected", "expected"),
    Column("actual", "actual"),
]


def _expected_side(item: Expected) -> Side:
    return Side(item.dtype or "*", item.shape)


def _expected_json(item: Expected) -> dict[str, Any]:
    found = {"dtype": item.dtype, "shape": None if item.shape is None else list(item.shape)}
    return found | ({"sha256": item.sha256} if item.sha256 is not None else {})


def _dtype(ref: TensorRef | Logical) -> str:
    return ref.dtype if isinstance(ref, Logical) else ref.dtype.name


def _actual_json(ref: TensorRef | Logical) -> dict[str, Any]:
    return {"dtype": _dtype(ref), "shape": list(ref.shape)}


# What a reader found inconsistent in the file itself (Checkpoint.problems), as check reports it.
FILE_LABELS = {
    "missing_from_shard": "missing from shard",
    "not_in_index": "not in index",
    "total_size": "total_size differs",
    "total_parameters": "total_parameters differs",
}


def file_problems(ckpt: Checkpoint) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The file's own inconsistencies (a sharded index against its shards): JSON items and table rows."""
    items = [
        {"check": kind, "name": name, "expected": expected, "actual": actual}
        for kind, name, expected, actual in ckpt.problems
    ]
    rows = [
        {"status": FILE_LABELS.get(kind, kind), "name": name, "expected": expected, "actual": actual}
        for kind, name, expected, actual in ckpt.problems
    ]
    return items, rows


def _content_hashes(spec: dict[str, Expected], wanted: list[str], tensors: dict[str, TensorRef]) -> dict[str, str]:
    """The hashes of the tensors a lockfile fixes whose dtype and shape hold (the others are not read)."""
    names = [
        n
        for n in wanted
        if spec[n].sha256 is not None
        and n in tensors
        and spec[n].dtype in (None, tensors[n].dtype.name)
        and spec[n].shape in (None, tensors[n].shape)
    ]
    return dict(zip(names, hash_tensors([tensors[n] for n in names]), strict=True))


def check(
    ckpt: Checkpoint,
    spec: dict[str, Expected] | None,
    spec_path: Path | None,
    *,
    selector: Selector | None = None,
    name_map: NameMap | None = None,
    allow_extra: bool = False,
    max_params: int | None = None,
    found: Recognition | None = None,
    policies: value_policies.Policies | None = None,
) -> Verdict:
    """Compare the file's tensors (after mapping and selection) with the spec.

    Patterns select by mapped name or by the file's own name (then the spec's
    entry of the same mapped name comes along).
    Fails on missing names, dtype or shape drift, unexpected names (unless
    ``allow_extra``: then they are counted but not listed), and on a unique
    parameter count over ``max_params``. Non-tensor leaves are not part of it.
    Without a spec (None) the structure is not checked: only ``policies``,
    ``max_params`` and the file's own consistency (a sharded index against its
    shards, :func:`file_problems`), each failure a row of its own. A quantized
    weight (``found``) is checked as its logical dtype and shape (as ``shapes``
    lists it) and counts its logical parameters, once; value policies and
    lockfile hashes apply to stored tensors.
    """
    structural = spec is not None
    spec = spec or {}
    names = mapped_names(ckpt, name_map or NameMap(), found=found)
    file_tensors: dict[str, TensorRef | Logical] = {**ckpt.tensors, **(found.weights if found else {})}
    tensors = {new: file_tensors[old] for new, old in names.items() if old in file_tensors}
    wanted = list(spec)
    if selector:
        own = {n: f"{ckpt.selected}.{names[n]}" if ckpt.selected else names[n] for n in tensors}
        missing_patterns = selector.unmatched([*wanted, *tensors, *(names[n] for n in tensors), *own.values()])
        if missing_patterns:
            raise SelectionError(f"no tensor in the file or the spec matches {missing_patterns[0]!r}")
        tensors = {
            n: r
            for n, r in tensors.items()
            if selector.matches(n) or selector.matches(names[n]) or selector.matches(own[n])
        }
        wanted = [n for n in wanted if selector.matches(n) or n in tensors]
    locked = any(item.sha256 is not None for item in spec.values())  # a lockfile: content is checked
    counts = dict.fromkeys([d for d in Drift if locked or d is not Drift.CONTENT], 0)
    findings: list[Finding] = []
    file = str(ckpt.path)
    drift: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    def note(
        status: Drift,
        name: str,
        expected: Expected | None,
        actual: TensorRef | Logical | None,
        digest: str | None = None,
    ) -> None:
        counts[status] += 1
        if status is Drift.UNEXPECTED and allow_extra:
            return
        drift.append(
            {
                "name": name,
                "status": status.value,
                "expected": _expected_json(expected) if expected else None,
                "actual": (_actual_json(actual) | ({"sha256": digest} if digest else {})) if actual else None,
            }
        )
        row: dict[str, Any] = {
            "status": LABELS[status],
            "name": name,
            "expected": _expected_side(expected) if expected else None,
            "actual": Side.of(actual) if actual else None,
        }
        if digest is not None and expected is not None and expected.sha256 is not None:  # show what differs
            row |= {"expected": f"sha256 {expected.sha256[:16]}…", "actual": f"sha256 {digest[:16]}…"}
        rows.append(row)
        what = f"expected {row['expected']}" if expected else "not in the spec"
        findings.append(
            Finding(RULES[status], f"{name!r}: {LABELS[status]} ({what}, found {row['actual']})", file, name)
        )

    digests = _content_hashes(spec, wanted, {n: r for n, r in tensors.items() if isinstance(r, TensorRef)})
    matching = 0
    for name in wanted:
        item, ref = spec[name], tensors.get(name)
        if ref is None:
            note(Drift.MISSING, name, item, None)
        elif item.dtype is not None and item.dtype != _dtype(ref):
            note(Drift.DTYPE, name, item, ref)
        elif item.shape is not None and item.shape != ref.shape:
            note(Drift.SHAPE, name, item, ref)
        elif name in digests and digests[name] != item.sha256:
            note(Drift.CONTENT, name, item, ref, digests[name])
        else:
            matching += 1
    for name, ref in tensors.items():
        if structural and name not in spec:
            note(Drift.UNEXPECTED, name, None, ref)
    stored = {n: r for n, r in tensors.items() if isinstance(r, TensorRef)}  # values policies can read
    policies = policies or value_policies.Policies()
    outcome = value_policies.evaluate(stored, policies) if policies else value_policies.Outcome()
    for violation in outcome.violations:
        rows.append(
            {
                "status": value_policies.LABELS[violation.policy],
                "name": violation.name,
                "expected": violation.expected or policies.wanted(violation.policy),
                "actual": violation.detail,
            }
        )
        message = f"{violation.name!r}: {value_policies.LABELS[violation.policy]}: {violation.detail}"
        findings.append(Finding(POLICY_RULES[violation.policy], message, file, violation.name))
    problems, problem_rows = file_problems(ckpt)
    rows.extend(problem_rows)
    for row in problem_rows:
        detail = f"{row['status']}: expected {row['expected']}, found {row['actual']}"
        findings.append(Finding("PI107", f"{row['name']!r}: {detail}", file, row["name"]))

    seen: set[tuple[object, ...]] = set()
    params = 0
    for ref in tensors.values():
        if ref.identity not in seen:
            seen.add(ref.identity)
            params += ref.numel
    over_budget = max_params is not None and params > max_params
    failures = counts[Drift.MISSING] + counts[Drift.DTYPE] + counts[Drift.SHAPE] + counts.get(Drift.CONTENT, 0)
    if not allow_extra:
        failures += counts[Drift.UNEXPECTED]
    ok = failures == 0 and not over_budget and not outcome.violations and not problems
    if over_budget:
        findings.append(Finding("PI106", f"{params:,} unique parameters exceed --max-params {max_params:,}", file))
    document: dict[str, Any] = {
        "file": str(ckpt.path),
        "format": ckpt.format,
        "root": ckpt.selected,
        "spec": None if spec_path is None else str(spec_path),
        "lockfile": locked,
        "ok": ok,
        "allow_extra": allow_extra,
        "counts": {**{status.value: n for status, n in counts.items()}, "matching": matching},
        "params": params,
        "max_params": max_params,
        "over_budget": over_budget,
        "drift": drift,
        "file_problems": problems,
    }
    if policies:
        document |= {
            "policies": policies.to_json(),
            "violations": [v.to_json() for v in outcome.violations],
            "unchecked": outcome.unchecked,
        }
    summary = [*((LABELS[s], n) for s, n in counts.items()), ("matching", matching)] if structural else []
    if policies:
        summary += [("policy violations", len(outcome.violations)), ("tensors checked", len(stored))]
    summary.append(("params", params))
    if problems or not (structural or policies):
        summary.append(("file problems", len(problems)))
    if max_params is not None:
        summary.append(("params allowed" + (" (exceeded)" if over_budget else ""), max_params))
    return Verdict(Table(COLUMNS, rows, None, document), summary, ok, findings=findings)
