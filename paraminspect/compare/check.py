"""``check``: hold a checkpoint's structure to a saved contract (for CI).

The contract (SPEC) is the JSON ``paraminspect shapes --format json`` writes.
Only its ``tensors`` list is read, and of each item only ``name`` (required),
``dtype`` and ``shape`` (each optional: leave one out to leave it unchecked);
every other key (``file``, ``numel``, ``total`` ...) is ignored, so a spec can
also be written by hand. No tensor data is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from paraminspect import dtypes
from paraminspect.compare.diff import Side, mapped_names
from paraminspect.errors import CheckpointError, SelectionError, UsageError, reading
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.naming.prefixes import NameMap
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Kind, Table, Verdict
from paraminspect.quant.logical import Logical, Recognition

MAX_SPEC_BYTES = 256 << 20


class Drift(str, Enum):
    MISSING = "missing"
    UNEXPECTED = "unexpected"
    DTYPE = "dtype_changed"
    SHAPE = "shape_changed"


LABELS = {
    Drift.MISSING: "missing",
    Drift.UNEXPECTED: "unexpected",
    Drift.DTYPE: "dtype changed",
    Drift.SHAPE: "shape changed",
}


@dataclass(frozen=True)
class Expected:
    """One tensor the spec asks for; None means "not checked"."""

    name: str
    dtype: str | None
    shape: tuple[int, ...] | None


def _canonical_dtype(text: str) -> str:
    found = dtypes.lookup(text)
    return found.name if found else text


def load_spec(path: Path) -> dict[str, Expected]:
    """Read and validate a spec file; any problem is a one-line error about the spec."""
    with reading(path, "spec file"), open(path, "rb") as fh:
        raw = fh.read(MAX_SPEC_BYTES + 1)
    if len(raw) > MAX_SPEC_BYTES:
        raise CheckpointError(f"spec is larger than {MAX_SPEC_BYTES >> 20} MiB", path)
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"spec is not valid JSON ({exc})", path) from None
    except RecursionError:
        raise CheckpointError("spec JSON is nested too deeply", path) from None
    items = document.get("tensors") if isinstance(document, dict) else None
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
            name, None if dtype is None else _canonical_dtype(dtype), None if shape is None else tuple(shape)
        )
    return spec


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
    return {"dtype": item.dtype, "shape": None if item.shape is None else list(item.shape)}


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
) -> Verdict:
    """Compare the file's tensors (after mapping and selection) with the spec.

    Patterns select by mapped name or by the file's own name (then the spec's
    entry of the same mapped name comes along).
    Fails on missing names, dtype or shape drift, unexpected names (unless
    ``allow_extra``: then they are counted but not listed), and on a unique
    parameter count over ``max_params``. Non-tensor leaves are not part of it.
    Without a spec (None) only the file's own consistency is checked: a sharded
    index against its shards (:func:`file_problems`), which fails too. A
    quantized weight (``found``) is checked as its logical dtype and shape (as
    ``shapes`` lists it) and counts its logical parameters, once.
    """
    checked_spec = spec is not None
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
    counts = dict.fromkeys(Drift, 0)
    drift: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    def note(status: Drift, name: str, expected: Expected | None, actual: TensorRef | Logical | None) -> None:
        counts[status] += 1
        if status is Drift.UNEXPECTED and allow_extra:
            return
        drift.append(
            {
                "name": name,
                "status": status.value,
                "expected": _expected_json(expected) if expected else None,
                "actual": _actual_json(actual) if actual else None,
            }
        )
        rows.append(
            {
                "status": LABELS[status],
                "name": name,
                "expected": _expected_side(expected) if expected else None,
                "actual": Side.of(actual) if actual else None,
            }
        )

    matching = 0
    for name in wanted:
        item, ref = spec[name], tensors.get(name)
        if ref is None:
            note(Drift.MISSING, name, item, None)
        elif item.dtype is not None and item.dtype != _dtype(ref):
            note(Drift.DTYPE, name, item, ref)
        elif item.shape is not None and item.shape != ref.shape:
            note(Drift.SHAPE, name, item, ref)
        else:
            matching += 1
    for name, ref in tensors.items():
        if checked_spec and name not in spec:
            note(Drift.UNEXPECTED, name, None, ref)
    problems, problem_rows = file_problems(ckpt)
    rows.extend(problem_rows)

    seen: set[tuple[object, ...]] = set()
    params = 0
    for ref in tensors.values():
        if ref.identity not in seen:
            seen.add(ref.identity)
            params += ref.numel
    over_budget = max_params is not None and params > max_params
    failures = counts[Drift.MISSING] + counts[Drift.DTYPE] + counts[Drift.SHAPE]
    if not allow_extra:
        failures += counts[Drift.UNEXPECTED]
    ok = failures == 0 and not over_budget and not problems
    document = {
        "file": str(ckpt.path),
        "format": ckpt.format,
        "root": ckpt.selected,
        "spec": None if spec_path is None else str(spec_path),
        "ok": ok,
        "allow_extra": allow_extra,
        "counts": {**{status.value: n for status, n in counts.items()}, "matching": matching},
        "params": params,
        "max_params": max_params,
        "over_budget": over_budget,
        "drift": drift,
        "file_problems": problems,
    }
    summary = [(LABELS[s], n) for s, n in counts.items()] if checked_spec else []
    summary += [("matching", matching)] if checked_spec else []
    summary += [("params", params)]
    if problems or not checked_spec:
        summary.append(("file problems", len(problems)))
    if max_params is not None:
        summary.append(("params allowed" + (" (exceeded)" if over_budget else ""), max_params))
    return Verdict(Table(COLUMNS, rows, None, document), summary, ok)
