"""How a decoded object graph (dicts, lists, tuples, placeholders, tensors) becomes
dotted names, in order, bounded in cost before it is walked.

A pickled ``nn.Module`` is named as its state dict (:mod:`paraminspect.model.nnmodule`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from paraminspect.inttext import safe_str
from paraminspect.model.entries import Entry, Opaque, TensorRef, Value, opaque_class
from paraminspect.model.nnmodule import is_module_state, module_children

MAX_DEPTH = 1000
MAX_ENTRIES = 1_000_000


def flatten(obj: Any, *, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES) -> Iterator[tuple[str, Entry]]:
    """Walk a decoded object graph and yield (dotted name, entry) leaves in order.

    Mapping keys are joined with ``.``; list items by position. A container
    reached twice (shared, not cyclic) is listed under both names, as torch
    would load it; cycles end in a ``<cycle>`` placeholder. Before walking,
    :func:`measure` sizes the graph without expanding it, so depth and a
    shared-reference "DAG bomb" (2^64 names from a few hundred bytes) fail at
    once with a clear error instead of after minutes and gigabytes. Paths that
    join to one name keep distinct names (:func:`distinct_names`).
    """
    measure(obj, max_depth=max_depth, max_entries=max_entries)
    leaves = [(name, entry) for _, name, entry in _walk(obj, track=False)]
    return zip(distinct_names(name for name, _ in leaves), (entry for _, entry in leaves), strict=True)


GraphPath = tuple[Any, ...]  # () for the root, else (parent's path, position among its children)


def leaf_names(obj: Any) -> dict[GraphPath, str]:
    """Each leaf's path in the graph -> the name :func:`flatten` gives it. A writer
    rebuilding the graph finds every leaf's name by where it is, so two leaves whose
    keys join to one dotted name keep their own names and are never swapped."""
    leaves = list(_walk(obj, track=True))
    paths = [path for path, _, _ in leaves if path is not None]
    return dict(zip(paths, distinct_names(name for _, name, _ in leaves), strict=True))


COLLISION_MARK = "~"


def distinct_names(names: Iterable[str]) -> list[str]:
    """The names with every repeat respelled so each is distinct and addressable.

    Different paths can join to one dotted name (``{"x": {"y": a}, "x.y": b}``,
    keys ``1`` and ``"1"``). The first in file order keeps the name; each later
    one becomes ``name~1``, ``name~2``, ... skipping spellings the file already
    uses, so a name that occurs once is never changed (docs/formats.md).
    """
    given = list(names)
    taken = set(given)
    if len(taken) == len(given):
        return given
    seen: set[str] = set()
    counters: dict[str, int] = {}
    result: list[str] = []
    for name in given:
        spelled = name
        if name in seen:
            n = counters.get(name, 0)
            while spelled in taken:
                n += 1
                spelled = f"{name}{COLLISION_MARK}{n}"
            counters[name] = n
            taken.add(spelled)
        seen.add(spelled)
        result.append(spelled)
    return result


def _walk(obj: Any, *, track: bool) -> Iterator[tuple[GraphPath | None, str, Entry]]:
    active: set[int] = set()  # containers on the current path, to spot cycles
    stack: list[tuple[GraphPath | None, str, Any] | int] = [(() if track else None, "", obj)]
    while stack:
        top = stack.pop()
        if isinstance(top, int):
            active.discard(top)
            continue
        path, name, item = top
        children = children_of(item)
        # A pickled nn.Module is named like its state dict: its tensors, no entry of its own.
        module = isinstance(item, Opaque) and is_module_state(getattr(item, "state", None))
        if (isinstance(item, Opaque) and not module) or not children:
            if not module:
                yield path, name, item if isinstance(item, TensorRef) else Value(_leaf_value(item))
            if not children:
                continue
        if id(item) in active:
            yield path, name, Value(opaque_class("<cycle>")())
            continue
        active.add(id(item))
        stack.append(id(item))
        for index in range(len(children) - 1, -1, -1):
            key, child = children[index]
            stack.append(((path, index) if track else None, f"{name}.{key}" if name else key, child))


def measure(obj: Any, *, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES) -> tuple[int, int]:
    """(entries, depth) :func:`flatten` would produce, in time linear in distinct objects.

    Each container is sized once and its size reused wherever it is shared.
    Raises :class:`~paraminspect.errors.LimitExceeded` past either limit.
    """
    from paraminspect.errors import LimitExceeded

    sizes: dict[int, tuple[int, int]] = {}  # id -> (entries, height)
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(obj, False)]
    while stack:
        item, done = stack.pop()
        key = id(item)
        children = children_of(item)
        if not children:
            check_value(item)
            continue
        if done:
            on_path.discard(key)
            entries = 1 if isinstance(item, Opaque) else 0
            height = 0
            for _, child in children:
                # Leaves, cycles back to an ancestor, and childless containers count one.
                child_entries, child_height = sizes.get(id(child), (1, 0))
                entries += child_entries
                height = max(height, child_height)
            if entries > max_entries:
                raise LimitExceeded(
                    f"the saved object expands to more than {max_entries:,} entries"
                    " (use --max-entries to raise the limit)"
                )
            sizes[key] = (entries, height + 1)
            continue
        if key in sizes or key in on_path:
            continue  # shared: sized already; or a cycle: one placeholder entry
        if len(on_path) >= max_depth:
            raise LimitExceeded(f"object nesting deeper than {max_depth} levels (use --max-depth to raise the limit)")
        on_path.add(key)
        stack.append((item, True))
        stack.extend((child, False) for _, child in children)
    return sizes.get(id(obj), (1, 0))


# A sequence is expanded into numbered children only when it holds one of these;
# a plain tuple of numbers (``betas: (0.9, 0.999)``, a shape) stays one value.
_BRANCHES = (Mapping, list, tuple, TensorRef, Opaque)


MAX_VALUE_NESTING = 100


def check_value(value: Any) -> None:
    """Refuse a leaf value (or mapping key) nested past :data:`MAX_VALUE_NESTING`.

    Containers holding tensors are walked iteratively, but a leaf is printed
    with ``str()``, which recurses in C: a 100,000-deep frozenset, tuple key or
    ``slice(slice(...))`` would end in RecursionError. Real leaves (betas,
    shapes, a loss history) nest one or two levels.
    """
    from paraminspect.errors import LimitExceeded

    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str | bytes | int | float | bool) or item is None:
            continue
        if depth >= MAX_VALUE_NESTING:
            raise LimitExceeded(f"a value nests deeper than {MAX_VALUE_NESTING} levels")
        if isinstance(item, list | tuple | set | frozenset):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, Mapping):
            stack.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif isinstance(item, slice):
            stack.extend((child, depth + 1) for child in (item.start, item.stop, item.step))


def _key(key: Any) -> str:
    if not isinstance(key, str):
        check_value(key)
    return safe_str(key)  # an int key of 5,000 digits cannot be str()-ed


def children_of(item: Any) -> list[tuple[str, Any]] | None:
    """(name component, child) of a container as :func:`flatten` walks it; None for a leaf."""
    if isinstance(item, Mapping):
        return [(_key(k), v) for k, v in item.items()]
    if isinstance(item, list | tuple) and any(isinstance(v, _BRANCHES) for v in item):
        return [(str(i), v) for i, v in enumerate(item)]
    if isinstance(item, Opaque) and isinstance(item.state, Mapping) and item.state:
        module = module_children(item.state, _key)  # torch.save(model): state-dict names
        return module if module is not None else [(_key(k), v) for k, v in item.state.items()]
    return None


def _leaf_value(item: Any) -> Any:
    # Only an empty mapping reaches here as a container; show it as {} not as a class.
    if isinstance(item, Mapping) and not isinstance(item, dict):
        return dict(item)
    return item


def descend(obj: Any, prefix: str) -> Any:
    """The object under a dotted prefix, matching keys that may themselves hold dots;
    None when the graph is absent or the prefix cannot be followed unambiguously."""
    rest = prefix
    while rest and obj is not None:
        children = children_of(obj) or []
        matches = [(k, v) for k, v in children if rest == k or rest.startswith(k + ".")]
        if len(matches) != 1:
            return None
        key, obj = matches[0]
        rest = rest[len(key) + 1 :]
    return obj


def module_paths(root: Any) -> list[tuple[str, str]]:
    """(dotted path, class name) of each outermost pickled module in an object graph
    ("" for the file itself): a ``.pt`` writer can hold only their state dicts.

    Walked as :func:`flatten` walks (the same names); the graph
    was sized by ``measure`` when it was read, so the walk is bounded.
    """
    found: list[tuple[str, str]] = []
    on_path: set[int] = set()
    stack: list[tuple[str, Any, bool]] = [("", root, False)]
    while stack:
        path, item, done = stack.pop()
        if done:
            on_path.discard(id(item))
            continue
        if isinstance(item, Opaque) and is_module_state(getattr(item, "state", None)):
            found.append((path, item.qualname))
            continue
        children = children_of(item)
        if not children or id(item) in on_path:
            continue
        on_path.add(id(item))
        stack.append((path, item, True))
        stack.extend((f"{path}.{key}" if path else key, child, False) for key, child in reversed(children))
    return found
