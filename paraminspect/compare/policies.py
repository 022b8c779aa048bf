"""Value policies for ``check``: gates on what tensors hold, not only their structure.

``finite`` (no NaN or Inf), ``max_abs`` (no element with ``|x| > X``; NaN is
``finite``'s business), ``no_all_zero`` (a tensor that is zero everywhere: a layer
training never touched or a zeroed shard), ``no_constant`` (every element equal,
at least two elements) and dtype rules (``SELECTOR:DTYPE``: every tensor the
selector matches has that dtype; a rule matching nothing is an error, not a pass).

Values are read in bounded chunks (``iter_chunks``), only for the tensors a
value policy needs (an integer tensor is finite without reading it), two
tensors at a time, and a broadcast view over its stored elements only. Each
violation names the first offending C-order index (all-zero: none; constant: the
value). Tensors whose values cannot be decoded are listed as unchecked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paraminspect import dtypes
from paraminspect.data import broadcast
from paraminspect.data.arrays import DEFAULT_CHUNK_ELEMENTS, iter_chunks
from paraminspect.errors import CheckpointError, SelectionError, UsageError
from paraminspect.model import TensorRef
from paraminspect.naming.select import Selector
from paraminspect.parallel import ordered_map

if TYPE_CHECKING:
    import numpy as np

FINITE, MAX_ABS, ALL_ZERO, CONSTANT, DTYPE = "finite", "max_abs", "no_all_zero", "no_constant", "dtype"
LABELS = {
    FINITE: "not finite",
    MAX_ABS: "over max abs",
    ALL_ZERO: "all zero",
    CONSTANT: "constant",
    DTYPE: "dtype rule",
}


@dataclass(frozen=True)
class DtypeRule:
    pattern: str
    dtype: str  # canonical name

    @classmethod
    def parse(cls, text: str) -> DtypeRule:
        pattern, sep, name = text.rpartition(":")
        found = dtypes.lookup(name.strip()) if sep and pattern else None
        if found is None:
            raise UsageError(f"--dtype expects SELECTOR:DTYPE such as '*.weight:bfloat16', got {text!r}")
        return cls(pattern, found.name)

    def __str__(self) -> str:
        return f"{self.pattern}:{self.dtype}"


@dataclass(frozen=True)
class Policies:
    finite: bool = False
    max_abs: float | None = None
    no_all_zero: bool = False
    no_constant: bool = False
    dtype_rules: tuple[DtypeRule, ...] = ()

    def __bool__(self) -> bool:
        return self.reads_values or bool(self.dtype_rules)

    @property
    def reads_values(self) -> bool:
        return self.finite or self.max_abs is not None or self.no_all_zero or self.no_constant

    def merged(self, other: Policies) -> Policies:
        """These policies and ``other``'s (the spec file's and the command line's): the stricter wins."""
        bounds = [b for b in (self.max_abs, other.max_abs) if b is not None]
        return Policies(
            self.finite or other.finite,
            min(bounds) if bounds else None,
            self.no_all_zero or other.no_all_zero,
            self.no_constant or other.no_constant,
            (*self.dtype_rules, *(r for r in other.dtype_rules if r not in self.dtype_rules)),
        )

    def wanted(self, policy: str) -> str:
        """What ``policy`` asks, for a table's "expected" cell."""
        bound = f"|x| <= {self.max_abs:g}" if self.max_abs is not None else ""
        return {FINITE: "finite", MAX_ABS: bound, ALL_ZERO: "not all zero", CONSTANT: "not constant"}.get(policy, "")

    def to_json(self) -> dict[str, Any]:
        return {
            FINITE: self.finite,
            MAX_ABS: self.max_abs,
            ALL_ZERO: self.no_all_zero,
            CONSTANT: self.no_constant,
            DTYPE: [str(r) for r in self.dtype_rules],
        }


def from_spec(section: Any, path: Path) -> Policies:
    """The ``policies`` object of a spec file (keys as in :meth:`Policies.to_json`)."""
    if not isinstance(section, dict):
        raise CheckpointError("spec 'policies' must be an object", path)
    unknown = sorted(set(section) - {FINITE, MAX_ABS, ALL_ZERO, CONSTANT, DTYPE})
    if unknown:
        raise CheckpointError(f"spec 'policies' has an unknown key {unknown[0]!r}", path)
    for key in (FINITE, ALL_ZERO, CONSTANT):
        if type(section.get(key, False)) is not bool:
            raise CheckpointError(f"spec policy {key!r} must be true or false", path)
    bound = section.get(MAX_ABS)
    if bound is not None and (type(bound) not in (int, float) or not bound >= 0 or math.isinf(bound)):
        raise CheckpointError(f"spec policy {MAX_ABS!r} must be a non-negative number", path)
    rules = section.get(DTYPE, [])
    if not (isinstance(rules, list) and all(isinstance(r, str) for r in rules)):
        raise CheckpointError(f"spec policy {DTYPE!r} must be a list of 'SELECTOR:DTYPE' strings", path)
    try:
        parsed = tuple(DtypeRule.parse(r) for r in rules)
    except UsageError as exc:
        raise CheckpointError(f"spec policy {DTYPE!r}: {exc.message.removeprefix('--dtype ')}", path) from None
    return Policies(
        section.get(FINITE, False),
        None if bound is None else float(bound),
        section.get(ALL_ZERO, False),
        section.get(CONSTANT, False),
        parsed,
    )


@dataclass
class Violation:
    name: str
    policy: str
    detail: str
    index: list[int] | None = None
    expected: str | None = None  # a dtype rule's dtype

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "policy": self.policy, "index": self.index, "detail": self.detail}


@dataclass
class Outcome:
    violations: list[Violation] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # values could not be decoded


def _index(position: int, shape: tuple[int, ...]) -> list[int]:
    out = []
    for n in reversed(shape):
        position, i = divmod(position, n)
        out.append(i)
    return out[::-1]


def _needs_values(ref: TensorRef, policies: Policies) -> bool:
    if ref.numel == 0:
        return False
    floating = ref.dtype.name.startswith(("float", "bfloat", "complex"))
    return (
        (policies.finite and floating)
        or policies.max_abs is not None
        or policies.no_all_zero
        or (policies.no_constant and ref.numel > 1)
    )


def _as_numbers(chunk: np.ndarray) -> np.ndarray:
    """bool as 0/1 and the ml_dtypes floats as float32, so every ufunc below applies."""
    import numpy as np

    if chunk.dtype == np.bool_:
        return chunk.view(np.uint8)
    if chunk.dtype.kind == "V" or chunk.dtype.type.__module__.startswith("ml_dtypes"):
        return chunk.astype(np.float32)
    return chunk


def _scan(ref: TensorRef, policies: Policies, chunk_elements: int) -> list[tuple[str, str, list[int] | None]]:
    """(policy, detail, index) for each value policy ``ref`` breaks, from one pass over it."""
    import numpy as np

    distinct, _ = broadcast.distinct(ref)
    kept = broadcast.kept_dims(ref)
    broadcast.check_work(distinct)
    found: dict[str, tuple[str, list[int] | None]] = {}
    first: Any = None
    nonzero = varies = False
    offset = 0

    def where(position: int) -> list[int]:
        return broadcast.full_index(_index(position, distinct.shape), kept, len(ref.shape))

    for raw in iter_chunks(distinct, chunk_elements):
        chunk = _as_numbers(raw)
        if policies.finite and FINITE not in found and chunk.dtype.kind in "fc":
            bad = ~np.isfinite(chunk)
            if bad.any():
                at = int(np.argmax(bad))
                found[FINITE] = (f"{chunk[at]} at", where(offset + at))
        if policies.max_abs is not None and MAX_ABS not in found:
            over = np.abs(chunk) > policies.max_abs
            if over.any():
                at = int(np.argmax(over))
                found[MAX_ABS] = (f"|{chunk[at]}| > {policies.max_abs:g} at", where(offset + at))
        nonzero = nonzero or bool(np.any(chunk != 0))
        if first is None:
            first = chunk[0]
        if not varies:
            same = np.isnan(chunk) if chunk.dtype.kind in "fc" and np.isnan(first) else chunk == first
            varies = not bool(np.all(same))
        offset += chunk.size
    if policies.no_all_zero and not nonzero:
        found[ALL_ZERO] = (f"all {ref.numel:,} elements are 0", None)
    if policies.no_constant and ref.numel > 1 and not varies:
        found[CONSTANT] = (f"all {ref.numel:,} elements are {first}", None)
    return [(p, d, i) for p, (d, i) in found.items()]


def evaluate(
    tensors: dict[str, TensorRef], policies: Policies, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> Outcome:
    """Every violation of ``policies`` among ``tensors`` (by name, in order)."""
    outcome = Outcome()
    for rule in policies.dtype_rules:
        selector = Selector([rule.pattern])
        matched = [n for n in tensors if selector.matches(n)]
        if not matched:
            raise SelectionError(f"dtype rule {str(rule)!r} matches no tensor")
        for name in matched:
            if tensors[name].dtype.name != rule.dtype:
                detail = f"{tensors[name].dtype.name} (rule {rule})"
                outcome.violations.append(Violation(name, DTYPE, detail, expected=rule.dtype))
    if not policies.reads_values:
        return outcome
    wanted = {n: r for n, r in tensors.items() if _needs_values(r, policies)}
    outcome.unchecked = [n for n, r in wanted.items() if r.dtype.numpy is None]
    unique = {r.identity: r for r in wanted.values() if r.dtype.numpy is not None}
    results = ordered_map(lambda ref: _scan(ref, policies, chunk_elements), list(unique.values()))
    done = dict(zip(unique, results, strict=True))
    for name, ref in wanted.items():
        for policy, detail, index in done.get(ref.identity, []):
            text = f"{detail} {index}" if detail.endswith(" at") else detail
            outcome.violations.append(Violation(name, policy, text, index))
    order = {name: position for position, name in enumerate(tensors)}
    outcome.violations.sort(key=lambda v: order[v.name])  # stable: per tensor, dtype rules first
    return outcome
