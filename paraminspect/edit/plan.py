"""The edit plan shared by set/init/rename/drop/extract/cast/convert.

A plan says, for every name the output will hold (in output order), where its
content comes from: an input tensor copied unchanged (:class:`Keep`), new
values (:class:`NewData`), an input tensor converted to another dtype
(:class:`Cast`), or a non-tensor leaf (:class:`~paraminspect.model.Value`).
Names that share one source object share one tensor in the output: that is
how ties survive an edit. Writers consume plans; nothing here touches disk.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paraminspect.dtypes import DType
from paraminspect.errors import SelectionError, UsageError
from paraminspect.model import Checkpoint, TensorRef, Value
from paraminspect.naming.prefixes import NameMap
from paraminspect.naming.select import Selector
from paraminspect.quant.logical import Recognition

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Keep:
    """An input tensor written as it is."""

    ref: TensorRef

    @property
    def dtype(self) -> DType:
        return self.ref.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ref.shape


@dataclass(eq=False)
class NewData:
    """New values; ``array`` already has the output dtype (ml_dtypes for bfloat16/float8)."""

    array: np.ndarray
    dtype: DType

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


@dataclass(eq=False)
class Cast:
    """An input tensor converted to ``dtype`` chunk by chunk while writing."""

    ref: TensorRef
    dtype: DType

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ref.shape


Source = Keep | NewData | Cast
Item = Source | Value


def identity(source: Source) -> object:
    """Sources with equal identity are one tensor in the output (a tie)."""
    return source.ref.identity if isinstance(source, Keep) else id(source)


@dataclass
class Plan:
    """What an edit will write, and the changes to report."""

    ckpt: Checkpoint
    command: str
    items: dict[str, Item]  # output name -> content, in output order
    origin: dict[str, str]  # output name -> the input name it came from
    changes: list[dict[str, Any]] = field(default_factory=list)
    # The name mapping of a rename, so writers can rename other name-keyed data
    # (a state dict's per-module ``_metadata``) consistently.
    rename: Callable[[str], str] | None = None
    # The file metadata the output gets, as Checkpoint.file_metadata (key -> (type, value));
    # None keeps the input's. Set by set-meta/rm-meta (edit/metadata.py).
    file_metadata: dict[str, tuple[str, Any]] | None = None

    @classmethod
    def unchanged(cls, ckpt: Checkpoint, command: str) -> Plan:
        from paraminspect.naming.order import ordered_names

        # Files whose order means nothing (safetensors sorts by dtype) come out in natural order.
        items: dict[str, Item] = {}
        for name in ordered_names(ckpt):
            entry = ckpt.entries[name]
            items[name] = Keep(entry) if isinstance(entry, TensorRef) else entry
        return cls(ckpt, command, items, {name: name for name in items})

    @property
    def tensors(self) -> dict[str, Source]:
        return {name: item for name, item in self.items.items() if not isinstance(item, Value)}

    def unknown(self, unwritable: Callable[[Any], str | None]) -> dict[str, str]:
        """Output names of values a writer cannot write back (``unwritable`` says what
        each is, None when it can) -> that description."""
        found = {n: unwritable(i.value) for n, i in self.items.items() if isinstance(i, Value)}
        return {n: what for n, what in found.items() if what is not None}

    def drop_unknown(self, unknown: dict[str, str]) -> None:
        """Leave out the ``unknown`` values (output name -> what it is) and everything
        stored under them; one inside a list or tuple becomes None instead, so the
        items after it keep their positions and their names (see unknown.py)."""
        from collections.abc import Mapping

        if isinstance(self.ckpt.root, Mapping | list | tuple):
            self._prune({self.origin[n]: what for n, what in unknown.items()})
            return
        for name, what in unknown.items():  # written as a flat state dict: no positions to keep
            for other in [n for n in self.items if n == name or n.startswith(name + ".")]:
                self.items.pop(other, None)
                self.origin.pop(other, None)
                detail = f"{what} (--drop-unknown)" if other == name else f"stored inside {name}"
                self.change("dropped", other, detail)

    def _prune(self, unknown: dict[str, str]) -> None:
        """Prune the object graph, then make the plan name what the pruned graph holds."""
        from dataclasses import replace

        from paraminspect.edit.unknown import prune
        from paraminspect.model import flatten

        try:
            pruned = prune(self.ckpt.root, unknown.__contains__)
        except RecursionError:
            raise UsageError("object nesting too deep to rebuild", self.ckpt.path) from None
        entries = dict(flatten(pruned.root, max_depth=1 << 30, max_entries=1 << 62))
        left_out = pruned.replaced.keys() | pruned.dropped.keys()
        new_names = entries.keys() - self.ckpt.entries.keys()
        items: dict[str, Item] = {}
        origin: dict[str, str] = {}
        regrouped: list[str] = []
        for out, item in self.items.items():
            src = self.origin[out]
            if src not in entries and (group := _longest_prefix(src, new_names)) is not None:
                # What holds it has no tensor or object left: the reader lists it as one value
                # now (a tuple of plain values, an emptied mapping), in its first item's place.
                name = out[: len(out) - len(src) + len(group)] if out.endswith(src[len(group) :]) else group
                if name not in items:
                    entry = entries[group]
                    items[name], origin[name] = Keep(entry) if isinstance(entry, TensorRef) else entry, group
                    regrouped.append(name)
            what = unknown.get(src, "cycle")
            if src in pruned.dropped:
                self.change("dropped", out, f"{what} (--drop-unknown)")
            elif src in pruned.replaced:
                self.change("replaced", out, f"{what} -> None, so the items after it keep their place")
                if src in entries:
                    items[out], origin[out] = Value(None), src
            elif src not in entries:
                outer = _longest_prefix(src, left_out)
                if outer is not None:
                    self.change("dropped", out, f"stored inside {outer}")
            else:
                items[out], origin[out] = item, src
        for name in regrouped:
            self.change("regrouped", name, "holds no tensor or object any more: now one value")
        self.items, self.origin = items, origin
        self.ckpt = replace(self.ckpt, root=pruned.root, entries=entries)

    def change(self, action: str, name: str, detail: str = "", **extra: Any) -> None:
        self.changes.append({"action": action, "name": name, "detail": detail, **extra})


def _longest_prefix(name: str, candidates: Collection[str]) -> str | None:
    """The longest of ``candidates`` that ``name`` lies under (``a.b.c`` under ``a.b``)."""
    cut = name.rfind(".")
    while cut > 0:
        if name[:cut] in candidates:
            return name[:cut]
        cut = name.rfind(".", 0, cut)
    return None


def _require_matches(ckpt: Checkpoint, selector: Selector, names: Iterable[str]) -> None:
    missing = selector.unmatched(names)
    if missing:
        raise SelectionError(f"no name matches {missing[0]!r}", ckpt.path)


# ---- structural edits: rename, drop, extract --------------------------------------


def _quantized(ckpt: Checkpoint) -> Recognition | None:
    from paraminspect.quant.companions import recognition

    return recognition(ckpt)


def plan_rename(ckpt: Checkpoint, mapping: NameMap) -> Plan:
    """Rename by whole-component prefix rules (the same ``NameMap`` diff and check use);
    a quantized weight's storage tensors follow its logical name (quant/companions.py)."""
    found = _quantized(ckpt)
    names = [*ckpt.entries, *(found.weights if found else ())]
    for rule in mapping.rules:
        if rule.old and not any(rule.apply(n) != n for n in names):
            raise SelectionError(f"no name starts with {rule.old!r}", ckpt.path)
    moved: dict[str, str] = {}
    if found:
        from paraminspect.quant.companions import renamed

        moved = renamed(found, mapping, ckpt.path)
    base = Plan.unchanged(ckpt, "rename")
    plan = Plan(ckpt, "rename", {}, {}, rename=mapping)
    for name, item in base.items.items():
        new = moved.get(name) or mapping(name)
        if not new:
            raise UsageError(f"renaming {name!r} leaves an empty name", ckpt.path)
        if new in plan.items:
            raise UsageError(f"{plan.origin[new]!r} and {name!r} would both be named {new!r}", ckpt.path)
        plan.items[new] = item
        plan.origin[new] = name
        if new != name:
            plan.change("renamed", name, new_name=new)
    return plan


def _chosen(ckpt: Checkpoint, selector: Selector, verb: str) -> Collection[str]:
    """The entry names a drop or extract takes: a quantized weight whole or not at all."""
    found = _quantized(ckpt)
    _require_matches(ckpt, selector, [*ckpt.entries, *(found.weights if found else ())])
    chosen = selector.filter(ckpt.entries)
    if not found:
        return set(chosen)
    from paraminspect.quant.companions import whole

    return whole(found, selector, chosen, ckpt.path, verb)


def plan_drop(ckpt: Checkpoint, selector: Selector) -> Plan:
    chosen = _chosen(ckpt, selector, "drop")
    plan = Plan.unchanged(ckpt, "drop")
    for name in [n for n in plan.items if n in chosen]:
        del plan.items[name], plan.origin[name]
        plan.change("dropped", name)
    if not plan.tensors:
        raise UsageError("dropping these leaves no tensors to write", ckpt.path)
    return plan


def plan_extract(ckpt: Checkpoint, selector: Selector, *, reroot: bool) -> Plan:
    """Keep only the selected names; with ``reroot`` strip the one subtree prefix selected."""
    chosen = _chosen(ckpt, selector, "extract")
    prefix = ""
    if reroot:
        if len(selector.patterns) != 1 or selector.regex or any(c in selector.patterns[0] for c in "*?["):
            raise UsageError("--reroot needs exactly one subtree name (no glob or regex)")
        prefix = selector.patterns[0] + "."
    plan = Plan(ckpt, "extract", {}, {})
    for name, entry in ckpt.entries.items():
        if name not in chosen:
            continue
        new = name[len(prefix) :] if prefix and name.startswith(prefix) else name
        if not new or (new == selector.patterns[0] and prefix):
            raise UsageError(f"--reroot would leave {name!r} with an empty name", ckpt.path)
        plan.items[new] = Keep(entry) if isinstance(entry, TensorRef) else entry
        plan.origin[new] = name
        plan.change("extracted", name, new_name=new if new != name else None)
    if not plan.tensors:
        raise UsageError("the selection holds no tensors to write", ckpt.path)
    return plan


# ---- value edits: cast, set, init -------------------------------------------------


def tie_groups(ckpt: Checkpoint) -> dict[str, list[str]]:
    """Each tensor name -> every name sharing its tensor (itself included), in file order."""
    by_identity: dict[tuple[object, ...], list[str]] = {}
    for name, ref in ckpt.tensors.items():
        by_identity.setdefault(ref.identity, []).append(name)
    return {name: group for group in by_identity.values() for name in group}


def grouped_selection(ckpt: Checkpoint, names: list[str], *, untie: bool) -> list[list[str]]:
    """Selected tensor names grouped by shared tensor; a partly selected tie needs ``untie``."""
    groups = tie_groups(ckpt)
    selected = set(names)
    result: list[list[str]] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        group = groups.get(name, [name])
        others = [n for n in group if n not in selected]
        if others and not untie:
            raise UsageError(
                f"{name!r} is tied to {', '.join(repr(o) for o in others)} (one shared tensor); "
                "select every tied name to edit the shared tensor, or pass --untie to edit only the ones selected",
                ckpt.path,
            )
        chosen = [n for n in group if n in selected]
        seen.update(chosen)
        result.append(chosen)
    return result


def _selected_tensors(ckpt: Checkpoint, selector: Selector) -> list[str]:
    _require_matches(ckpt, selector, ckpt.entries)
    names = [n for n in selector.filter(ckpt.entries) if isinstance(ckpt.entries[n], TensorRef)]
    if not names:
        raise SelectionError("the selection holds no tensors", ckpt.path)
    return names


def _assign(plan: Plan, group: list[str], source: Source, action: str, detail: str, ties: dict[str, list[str]]) -> None:
    for name in group:
        plan.items[name] = source
        extra = {"dtype": source.dtype.name, "shape": list(source.shape)}
        note = detail
        tied = [n for n in ties.get(name, []) if n not in group]
        if tied:
            note = f"{detail}; untied from {', '.join(tied)}".lstrip("; ")
        plan.change(action, name, note, **extra)


def is_floating(dtype: DType) -> bool:
    return dtype.name.startswith(("float", "bfloat", "complex"))


def plan_cast(ckpt: Checkpoint, selector: Selector, dtype: DType, *, untie: bool) -> Plan:
    """Convert selected floating-point tensors; integer, bool (and, to a real type, complex) keep theirs."""
    if dtype.numpy is None:
        raise UsageError(f"casting to {dtype.name} is not supported")
    plan = Plan.unchanged(ckpt, "cast")
    names = _selected_tensors(ckpt, selector)
    tensors = ckpt.tensors
    real_target = not dtype.name.startswith("complex")
    floating: list[str] = []
    for name in names:
        source = tensors[name].dtype
        if not is_floating(source):
            plan.change("skipped", name, f"{source.name} is not floating point")
        elif real_target and source.name.startswith("complex"):
            plan.change("skipped", name, f"{source.name} to {dtype.name} would drop the imaginary part")
        else:
            floating.append(name)
    ties = tie_groups(ckpt)
    for group in grouped_selection(ckpt, floating, untie=untie):
        ref = tensors[group[0]]
        if ref.dtype == dtype:
            continue
        if ref.dtype.numpy is None:
            raise UsageError(f"tensor {group[0]!r}: cannot convert values of type {ref.dtype.name}", ckpt.path)
        _assign(plan, group, Cast(ref, dtype), "cast", f"{ref.dtype.name} -> {dtype.name}", ties)
    return plan


def plan_new_values(
    ckpt: Checkpoint,
    command: str,
    names: list[str],
    make: Callable[[str, TensorRef], np.ndarray],
    detail: str,
    *,
    untie: bool,
) -> Plan:
    """Give each selected tensor (one per tie group) the array ``make`` returns, in its own dtype."""
    from paraminspect.edit.fill import to_dtype

    plan = Plan.unchanged(ckpt, command)
    ties = tie_groups(ckpt)
    tensors = ckpt.tensors
    for group in grouped_selection(ckpt, names, untie=untie):
        ref = tensors[group[0]]
        array = to_dtype(make(group[0], ref), ref, ckpt.path, group[0])
        _assign(plan, group, NewData(array, ref.dtype), command, detail, ties)
    return plan
