"""``diff``: put every name of two checkpoints in exactly one class.

Classes, checked in this order: only in A, only in B, dtype changed (for a
non-tensor leaf: its type, or tensor vs value), shape changed, values changed,
equal. A name only in one file that is tied there to a name both hold (one save
stores ``lm_head.weight`` tied to the embedding, the other leaves it out) says
so, and with ``ties_equal`` is a tied alias, not a difference. Values are
compared when the shapes agree and the dtypes agree or are both numeric (a
dtype-changed pair then stays "dtype changed" but shows how far its values
moved), streamed chunk by chunk (see :mod:`paraminspect.compare.elementwise`);
``structure=True`` reads no tensor data.
Names are mapped (prefix rules) and selected before they are paired up. With
``quantized`` (``--dequantize``), a quantized weight is one name of its logical
shape, compared by its dequantized values (:mod:`paraminspect.compare.quantdiff`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from paraminspect.compare import heatmap as grid
from paraminspect.compare import rollup
from paraminspect.compare.elementwise import compare_pairs
from paraminspect.compare.metrics import METRICS, measures, moved_key
from paraminspect.compare.rows import LABELS, RULES, Row, Side, Status, classify
from paraminspect.compare.tolerance import Tolerance
from paraminspect.errors import SelectionError
from paraminspect.model import Checkpoint, Entry, TensorRef
from paraminspect.naming.order import ordered_names
from paraminspect.naming.prefixes import NameMap
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Finding, Kind, Table, Verdict
from paraminspect.quant.logical import Logical, Recognition


def mapped_names(
    ckpt: Checkpoint, name_map: NameMap, *, sort: bool = False, found: Recognition | None = None
) -> dict[str, str]:
    """``{mapped name: name in the file}`` in display order (a quantized weight by its
    logical name when ``found`` is given)."""
    names = ordered_names(ckpt, sort=sort)
    return name_map.apply(found.display_names(names) if found else names, str(ckpt.path))


def _entry(ckpt: Checkpoint, found: Recognition | None, name: str) -> Entry | Logical:
    weight = found.weights.get(name) if found else None
    return weight if weight is not None else ckpt.entries[name]


def compare(
    a: Checkpoint,
    b: Checkpoint,
    *,
    tolerance: Tolerance | None = None,
    selector: Selector | None = None,
    map_a: NameMap | None = None,
    map_b: NameMap | None = None,
    structure: bool = False,
    sort: bool = False,
    cast_values: bool = True,
    ties_equal: bool = False,
    quantized: tuple[Recognition | None, Recognition | None] = (None, None),
    metrics: bool = False,
    norms: bool = False,
) -> list[Row]:
    """Pair the (mapped, selected) names of A and B and classify every one.

    Patterns select by mapped name or by either file's original name.
    ``cast_values=False`` skips the values of dtype-changed pairs: their status
    does not depend on them, so a caller that shows no statistics (``--quiet``)
    need not read them. A name only in one file but tied there to a name both
    hold gets ``tied_to``; ``ties_equal`` counts such a row as no difference
    (status ``tied_alias``): the data is the tied name's, compared on its own row.
    Order: A's names in A's order, then names only in B in B's order. A tied
    tensor pair compared once is not read again for its other names.
    ``metrics``/``norms``: carry the change measures' sums (see :class:`Comparer`).
    """
    tolerance = tolerance or Tolerance()
    found_a, found_b = quantized
    names_a = mapped_names(a, map_a or NameMap(), sort=sort, found=found_a)
    names_b = mapped_names(b, map_b or NameMap(), sort=sort, found=found_b)
    # Each file's own full name (with the --root prefix a subtree was cut from).
    full_a = {n: _in_file(a, old) for n, old in names_a.items()}
    full_b = {n: _in_file(b, old) for n, old in names_b.items()}
    order = [*names_a, *(n for n in names_b if n not in names_a)]
    if selector:
        # A pattern may name the mapped name or either file's own name for it.
        own = [*names_a.values(), *names_b.values(), *full_a.values(), *full_b.values()]
        missing = selector.unmatched([*names_a, *names_b, *own])
        if missing:
            raise SelectionError(f"no name in either file matches {missing[0]!r}")
        order = [
            n
            for n in order
            if selector.matches(n) or any(selector.matches(o) for o in _own_names(n, names_a, names_b, full_a, full_b))
        ]
    pairs: dict[tuple[tuple[object, ...], tuple[object, ...]], tuple[TensorRef, TensorRef]] = {}
    waiting: list[tuple[Row, tuple[tuple[object, ...], tuple[object, ...]]]] = []
    rows: list[Row] = []
    tie_groups: dict[int, tuple[dict[str, list[str]], dict[str, str]]] = {}
    logical: list[tuple[Row, TensorRef | Logical, TensorRef | Logical]] = []
    for name in order:
        ea = _entry(a, found_a, names_a[name]) if name in names_a else None
        eb = _entry(b, found_b, names_b[name]) if name in names_b else None
        a_name, b_name = full_a.get(name), full_b.get(name)
        side_a, side_b = (Side.of(ea) if ea is not None else None), (Side.of(eb) if eb is not None else None)
        if ea is None or eb is None:
            status = Status.ONLY_B if ea is None else Status.ONLY_A
            side = 0 if eb is None else 1
            in_side = (names_a, names_b)[side]
            if side not in tie_groups:  # only files with one-sided names pay for this
                tie_groups[side] = (_tie_groups((a, b)[side]), {old: new for new, old in in_side.items()})
            tied_to = _tied_in_both((a, b)[side], *tie_groups[side], in_side[name], names_a, names_b)
            if tied_to is not None and ties_equal:
                status = Status.TIED
            rows.append(Row(name, status, a_name, b_name, side_a, side_b, tied_to=tied_to))
            continue
        if isinstance(ea, Logical) or isinstance(eb, Logical):
            assert side_a is not None and side_b is not None
            comparable_pair = isinstance(ea, TensorRef | Logical) and isinstance(eb, TensorRef | Logical)
            status = Status.SHAPE if comparable_pair and side_a.shape != side_b.shape else Status.EQUAL
            status = status if comparable_pair else Status.DTYPE
            rows.append(Row(name, status, a_name, b_name, side_a, side_b))
            if status is Status.EQUAL and not structure:
                logical.append((rows[-1], ea, eb))  # type: ignore[arg-type]
            continue
        assert not isinstance(ea, Logical) and not isinstance(eb, Logical)
        status, read_values = classify(ea, eb, tolerance, structure, cast_values)
        rows.append(Row(name, status, a_name, b_name, side_a, side_b))
        if read_values:
            assert isinstance(ea, TensorRef) and isinstance(eb, TensorRef)
            key = (ea.identity, eb.identity)  # a tied pair is read once
            pairs.setdefault(key, (ea, eb))
            waiting.append((rows[-1], key))
    compared = compare_pairs(list(pairs.values()), tolerance, metrics=metrics, norms=norms)
    found = dict(zip(pairs, compared, strict=True))
    for row, key in waiting:
        row.stats = found[key]
        if row.status is Status.EQUAL and row.stats.differing != 0:  # a dtype change stays one
            row.status = Status.VALUES
    if logical:
        _compare_logical(logical, a, b, tolerance, metrics=metrics or norms)
    return rows


def _compare_logical(
    pairs: list[tuple[Row, TensorRef | Logical, TensorRef | Logical]],
    a: Checkpoint,
    b: Checkpoint,
    tolerance: Tolerance,
    *,
    metrics: bool = False,
) -> None:
    """Values of the pairs with a quantized side; one that cannot be decoded fails with why."""
    from paraminspect.compare import quantdiff
    from paraminspect.errors import CheckpointError

    for row, ea, eb in pairs:
        for item, ckpt in ((ea, a), (eb, b)):
            reason = quantdiff.undecodable(item, ckpt.entries)
            if reason is not None:
                raise CheckpointError(f"{row.name}: cannot dequantize: {reason}", ckpt.path)
        row.stats = quantdiff.compare_logical(ea, a.entries, eb, b.entries, tolerance, metrics=metrics)
        if row.stats.differing != 0:
            row.status = Status.VALUES


def _tied_in_both(
    ckpt: Checkpoint,
    tied: dict[str, list[str]],
    mapped: dict[str, str],
    name: str,
    names_a: dict[str, str],
    names_b: dict[str, str],
) -> str | None:
    """The mapped name of what tensor ``name`` (a name in ``ckpt``) is tied to that
    both files hold, with the same dtype and shape; None if there is none.
    ``tied``: each name's tie partners; ``mapped``: file name -> mapped name."""
    entry = ckpt.entries[name]
    if not isinstance(entry, TensorRef) or name not in tied:
        return None
    for other in tied.get(name, ()):
        new = mapped.get(other)
        partner = ckpt.entries.get(other)
        if (
            new is not None
            and new in names_a
            and new in names_b
            and isinstance(partner, TensorRef)
            and (partner.dtype, partner.shape) == (entry.dtype, entry.shape)
        ):
            return new
    return None


def _tie_groups(ckpt: Checkpoint) -> dict[str, list[str]]:
    """Each tied name's partners, owner first."""
    members: dict[str, list[str]] = {}
    for alias, owner in ckpt.tied_groups().items():
        members.setdefault(owner, [owner]).append(alias)
    return {n: [m for m in group if m != n] for group in members.values() for n in group}


def _in_file(ckpt: Checkpoint, name: str) -> str:
    return f"{ckpt.selected}.{name}" if ckpt.selected else name


def _own_names(name: str, *maps: dict[str, str]) -> list[str]:
    return [m[name] for m in maps if name in m]


COLUMNS = [
    Column("status", "status"),
    Column("name", "name", Kind.NAME),
    Column("a", "A"),
    Column("b", "B"),
    Column("differing", "differing", Kind.COUNT),
    Column("max_abs_diff", "max abs diff", Kind.NUMBER),
    Column("max_rel_diff", "max rel diff", Kind.NUMBER),
    Column("index", "at", Kind.SHAPE),
    Column("tied_to", "tied to", Kind.NAME, optional=True),
]

# With --metrics, before "tied to"; the JSON keys are the names in metrics.METRICS.
METRIC_COLUMNS = [
    Column("rel_l2", "rel L2", Kind.NUMBER),
    Column("cosine", "cosine", Kind.NUMBER),
    Column("nmse", "NMSE", Kind.NUMBER),
    Column("rel_mean_abs", "rel mean abs", Kind.NUMBER),
    Column("frac_differing", "frac differing", Kind.NUMBER),
]


GROUP_COLUMNS = [
    Column("prefix", "prefix", Kind.NAME),
    Column("tensors", "tensors", Kind.COUNT),
    Column("not_compared", "not compared", Kind.COUNT),
    Column("elements", "elements", Kind.COUNT),
    Column("differing", "differing", Kind.COUNT),
    *METRIC_COLUMNS,
]


def row_measures(row: Row) -> dict[str, float | None]:
    """The change measures of a row whose values were compared with metrics, else all None."""
    if row.stats is None or row.stats.sums is None:
        return dict.fromkeys(METRICS)
    return dict(measures(row.stats.sums))


def sort_moved(rows: list[Row], metric: str) -> list[Row]:
    """Most moved first by ``metric`` (cosine: lowest first), NaN first, rows without it last."""
    return sorted(rows, key=lambda row: moved_key(metric, row_measures(row)[metric]))


def _row_json(row: Row) -> dict[str, Any]:
    stats = row.stats
    return {
        "name": row.name,
        "status": row.status.value,
        "a_name": row.a_name,
        "b_name": row.b_name,
        "a": row.a.to_json() if row.a else None,
        "b": row.b.to_json() if row.b else None,
        "differing": stats.differing if stats else None,
        "max_abs_diff": stats.max_abs if stats else None,
        "max_rel_diff": stats.max_rel if stats else None,
        "index": stats.index if stats else None,
        "a_value": stats.a_value if stats else None,
        "b_value": stats.b_value if stats else None,
        "tied_to": row.tied_to,
        **row_measures(row),
    }


def _label(row: Row) -> str:
    """The table's status: an only-in row tied to a name in both says so."""
    if row.tied_to is not None and row.status in (Status.ONLY_A, Status.ONLY_B):
        return f"tied in {'A' if row.status is Status.ONLY_A else 'B'}"
    return LABELS[row.status]


class Described(Protocol):
    """What the report says about a side: a checkpoint, or a lockfile (lockfile.py)."""

    @property
    def path(self) -> Path: ...
    @property
    def format(self) -> str: ...
    @property
    def selected(self) -> str: ...


def report(
    a: Described,
    b: Described,
    rows: list[Row],
    *,
    tolerance: Tolerance,
    structure: bool = False,
    show_all: bool = False,
    metrics: bool = False,
    sort_by: str | None = None,
    by_prefix: int | None = None,
    heatmap: bool = False,
) -> Verdict:
    """The verdict: every row in JSON, the differing rows (or all) in tables.

    ``metrics``: the table gets the change measures' columns (JSON always has
    their keys); ``sort_by``: a measure, most moved first; ``by_prefix``: the
    table lists the measures per subtree of that depth (JSON: ``by_prefix``);
    ``heatmap``: the relative L2 change per layer and module kind
    (``Verdict.picture``; JSON: ``heatmap``).
    """
    if sort_by is not None:
        rows = sort_moved(rows, sort_by)
    counts = dict.fromkeys(Status, 0)
    for row in rows:
        counts[row.status] += 1
    entries = [_row_json(row) for row in rows]
    listed = [
        {**entry, "status": _label(row), "a": row.a, "b": row.b}
        for row, entry in zip(rows, entries, strict=True)
        if show_all or row.status is not Status.EQUAL
    ]
    document = {
        "a": {"file": str(a.path), "format": a.format, "root": a.selected},
        "b": {"file": str(b.path), "format": b.format, "root": b.selected},
        "structure_only": structure,
        "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol, "equal_nan": tolerance.equal_nan},
        "same": counts[Status.EQUAL] + counts[Status.TIED] == len(rows),
        "counts": {status.value: n for status, n in counts.items()},
        "entries": entries,
    }
    columns = [*COLUMNS[:-1], *METRIC_COLUMNS, COLUMNS[-1]] if metrics else COLUMNS
    table = Table(columns, listed, None, document)
    if by_prefix is not None:
        groups = rollup.by_prefix(((row.name, row.stats) for row in rows), by_prefix)
        if sort_by is not None:
            groups = rollup.sort_groups(groups, sort_by)
        listed_groups = [g.to_json() for g in groups]
        document["by_prefix"] = {"depth": by_prefix, "groups": listed_groups}
        table = Table(GROUP_COLUMNS, listed_groups, None, document)
    picture = None
    if heatmap:
        picture = grid.heatmap((row.name, row.stats) for row in rows)
        document["heatmap"] = grid.to_json(picture)
    shown = [(LABELS[s], n) for s, n in counts.items() if s is not Status.TIED or n]
    findings = [_finding(row, a, b) for row in rows if row.status in RULES]
    return Verdict(table, shown, ok=bool(document["same"]), picture=picture, findings=findings)


def _finding(row: Row, a: Described, b: Described) -> Finding:
    """A differing name as a finding on B (on A for a name only A holds)."""
    text = f"{row.name!r}: {_label(row)}"
    if row.a is not None and row.b is not None:
        text += f" (A: {row.a}, B: {row.b})"
    if row.stats is not None and row.stats.differing:
        text += f"; {row.stats.differing:,} elements differ, max abs diff {row.stats.max_abs:g} at {row.stats.index}"
    if row.tied_to is not None:
        text += f"; tied to {row.tied_to!r}"
    side = a if row.status is Status.ONLY_A else b
    return Finding(RULES[row.status], text, str(side.path), row.a_name if side is a else row.b_name)
