"""Dotted names rebuilt into a hierarchy, with per-subtree totals and tied aliases.

A quantized weight (:mod:`paraminspect.quant`) is one leaf of its logical dtype
and shape in place of its storage tensors, which are folded into it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from paraminspect.inspect.meta import metadata_document
from paraminspect.model import Checkpoint, Entry, Opaque, TensorRef, Value
from paraminspect.naming.order import ordered_names
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Kind, Table, TreeLine, TreeReport
from paraminspect.quant.logical import Logical, Recognition


@dataclass
class Node:
    name: str
    path: str
    entry: Entry | Logical | None = None
    children: dict[str, Node] = field(default_factory=dict)
    identities: set[tuple[object, ...]] = field(default_factory=set)
    params: int = 0
    nbytes: int = 0
    tensors: int = 0


def build(ckpt: Checkpoint, names: list[str], found: Recognition | None = None) -> Node:
    """Insert ``names`` (already ordered) into a tree and total each subtree.

    Totals count each distinct tensor once per subtree, so a tied weight shows
    up under both names but is not counted twice where both sit.
    """
    root = Node("", "")
    for name in names:
        node = root
        parts = name.split(".")
        for depth, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                child = Node(part, ".".join(parts[: depth + 1]))
                node.children[part] = child
            node = child
        weight = found.weights.get(name) if found else None
        node.entry = weight if weight is not None else ckpt.entries[name]
    _total(root)
    return root


def _total(root: Node) -> None:
    # Post-order without recursion: hostile files may nest deeply.
    order: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children.values())
    for node in reversed(order):
        if isinstance(node.entry, TensorRef):
            node.identities.add(node.entry.identity)
            node.params, node.nbytes, node.tensors = node.entry.numel, node.entry.nbytes, 1
        elif isinstance(node.entry, Logical):
            node.identities.add(node.entry.identity)
            node.params, node.nbytes, node.tensors = node.entry.numel, node.entry.storage_bytes, 1
        for child in node.children.values():
            fresh = child.identities - node.identities
            if len(fresh) == len(child.identities):
                node.params += child.params
                node.nbytes += child.nbytes
            else:  # a tie reaches across children: count only what is new here
                refs = _tensor_refs(child)
                for ref in refs:
                    if ref.identity in fresh:
                        fresh.discard(ref.identity)
                        node.params += ref.numel
                        node.nbytes += ref.storage_bytes if isinstance(ref, Logical) else ref.nbytes
            node.identities |= child.identities
            node.tensors += child.tensors


def _tensor_refs(node: Node) -> Iterator[TensorRef | Logical]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current.entry, TensorRef | Logical):
            yield current.entry
        stack.extend(current.children.values())


def _storage(found: Recognition, name: str) -> tuple[str, ...]:
    weight = found.weights.get(name)
    return weight.storage if weight is not None else ()


def node_info(node: Node, tied: dict[str, str]) -> dict[str, Any]:
    """The JSON facts of one node (without its children)."""
    entry = node.entry
    info: dict[str, Any] = {"name": node.name, "path": node.path}
    if isinstance(entry, TensorRef):
        info.update(
            kind="tensor",
            dtype=entry.dtype.name,
            shape=list(entry.shape),
            numel=entry.numel,
            bytes=entry.nbytes,
            tied_to=tied.get(node.path),
        )
        return info
    if isinstance(entry, Logical):
        info.update(
            kind="tensor",
            dtype=entry.dtype,
            shape=list(entry.shape),
            numel=entry.numel,
            bytes=entry.storage_bytes,
            tied_to=None,
            **entry.facts(),
        )
        return info
    if isinstance(entry, Value) and isinstance(entry.value, Opaque):
        info.update(kind="object", type=entry.value.qualname)
    elif isinstance(entry, Value):
        info.update(kind="value", type=entry.type_name, value=entry.value)
    else:
        info["kind"] = "group"
    if node.children:
        info.update(tensors=node.tensors, params=node.params, bytes=node.nbytes)
    return info


def report(
    ckpt: Checkpoint,
    *,
    selector: Selector | None = None,
    depth: int | None = None,
    sort: bool = False,
    found: Recognition | None = None,
) -> TreeReport:
    """Everything ``tree`` shows, for every output format."""
    names = ordered_names(ckpt, sort=sort)
    if found:
        names = found.display_names(names)
        if selector:
            names = [n for n in names if selector.matches(n) or any(map(selector.matches, _storage(found, n)))]
    elif selector:
        names = selector.filter(names)
    tied = ckpt.tied_groups()
    root = build(ckpt, names, found)
    title = {
        "file": str(ckpt.path),
        "format": ckpt.format,
        "tensors": root.tensors,
        "params": root.params,
        "bytes": root.nbytes,
    }
    lines: list[TreeLine] = []
    rows: list[dict[str, Any]] = []
    # One walk, in display order, makes each node's facts once: its line and its row show
    # them, and the JSON tree is the same dicts with their children's added.
    tree = node_info(root, tied)
    stack: list[tuple[Node, dict[str, Any], int, tuple[bool, ...]]] = [(root, tree, 0, ())]
    while stack:
        node, doc, level, flags = stack.pop()
        folded = depth is not None and level >= depth and bool(node.children)
        if folded:
            doc["folded"] = True
        if level:
            lines.append(TreeLine(doc, flags))
            rows.append({**doc, "depth": level})
        if folded or not node.children:
            continue
        kids = [(child, node_info(child, tied)) for child in node.children.values()]
        doc["children"] = [info for _, info in kids]
        last = len(kids) - 1
        for i in range(last, -1, -1):
            child, info = kids[i]
            stack.append((child, info, level + 1, (*flags, i == last)))

    document = {**title, "tree": tree, "metadata": metadata_document(ckpt)}
    columns = [
        Column("path", "path", Kind.NAME),
        Column("kind", "kind"),
        Column("dtype", "dtype"),
        Column("shape", "shape", Kind.SHAPE),
        Column("params", "params", Kind.COUNT),
        Column("bytes", "bytes", Kind.BYTES),
        Column("tied_to", "tied to", Kind.NAME, optional=True),
    ]
    for row in rows:
        if row["kind"] == "tensor":
            row["params"] = row["numel"]
    table = Table(columns, rows, document=document)
    return TreeReport(title, lines, table)
