"""Objects an edit cannot write back: what they are, and leaving them out.

A quantized or sparse tensor, a numpy array, an ``argparse.Namespace`` reach
paraminspect as inert placeholders (:class:`~paraminspect.model.Opaque`). An
edit refuses to write them as if understood; ``--drop-unknown`` leaves them
out. Leaving one out must not move anything else: an item dropped from a list
or tuple becomes ``None`` in its place, so the items after it keep their
positions, and with them their names (``_packed_params.1`` stays the bias of a
quantized Linear after its weight ``_packed_params.0`` is dropped).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from paraminspect.model import Opaque, StorageRef, TensorRef
from paraminspect.model.graph import children_of

# The placeholders torch's own tensor rebuilds leave, and the kind of tensor each holds.
TENSOR_REBUILDS = {
    "torch._utils._rebuild_qtensor": "quantized tensor",
    "torch._utils._rebuild_sparse_tensor": "sparse tensor",
    "torch._utils._rebuild_sparse_csr_tensor": "sparse CSR tensor",
    "torch._utils._rebuild_nested_tensor": "nested tensor",
    "torch._utils._rebuild_meta_tensor_no_storage": "meta tensor",
    "torch._utils._rebuild_wrapper_subclass": "tensor subclass",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "device tensor",
    "torch._utils._rebuild_device_tensor_from_numpy": "device tensor",
    "torch._utils._rebuild_tensor": "tensor (legacy rebuild)",
    "torch._tensor._rebuild_from_type_v2": "tensor subclass",
}
_MAX_WALK = 10_000  # items looked at when searching an object's arguments for tensor data


def held_tensor(value: Any) -> str | None:
    """The kind of tensor an unknown object is or carries in its arguments
    (``quantized qint8 tensor [4, 4]``), None when it holds no tensor data.

    Tensors in an object's state mapping are listed (and stored) as names of
    their own; those in its constructor arguments exist only inside the placeholder.
    """
    if not isinstance(value, Opaque):
        return None
    kind = TENSOR_REBUILDS.get(value.qualname)
    if kind is None:
        return f"object {value.qualname} holding tensor data" if _holds_data(_unlisted(value)) else None
    args: tuple[Any, ...] = getattr(value, "args", ())
    if kind == "quantized tensor" and len(args) > 2 and isinstance(args[0], StorageRef):
        return f"quantized {args[0].dtype.name} tensor {_shape(args[2])}"
    if kind == "sparse tensor" and len(args) > 1 and isinstance(args[1], tuple):
        # (indices, values, size, ...) for COO; (row or column indices..., values, size) for CSR & co.
        size = next((d for d in args[1] if isinstance(d, tuple) and all(type(i) is int for i in d)), None)
        return f"sparse tensor ({args[0]}) {_shape(size)}"
    return kind


def describe(value: Any) -> str:
    """A short name for an unknown object in messages."""
    kind = held_tensor(value)
    qualname = getattr(value, "qualname", type(value).__name__)
    return f"{kind} <{qualname}>" if kind else f"<{qualname}>"


def _shape(size: Any) -> str:
    return str(list(size)) if isinstance(size, tuple | list) else "(shape unknown)"


def _holds_data(args: Any) -> bool:
    stack, seen = [args], 0
    while stack and seen < _MAX_WALK:
        item = stack.pop()
        seen += 1
        if isinstance(item, StorageRef | TensorRef):
            return True
        if isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, Opaque):
            stack.extend(_unlisted(item))
    return False


def _unlisted(value: Opaque) -> list[Any]:
    """What a placeholder holds that is not listed under its name: its constructor
    arguments, and its state unless that is a mapping (whose items are listed)."""
    state = getattr(value, "state", None)
    kwargs = getattr(value, "kwargs", {})
    held = [*getattr(value, "args", ()), *(kwargs.values() if isinstance(kwargs, dict) else ())]
    return held if isinstance(state, Mapping) else [*held, state]


@dataclass
class Pruned:
    """The object graph with the chosen leaves left out, and what happened to each."""

    root: Any
    replaced: dict[str, Any] = field(default_factory=dict)  # name -> the leaf that became None
    dropped: dict[str, Any] = field(default_factory=dict)  # name -> the leaf removed with its key


class _Cycle:
    """A container met again on its own path (flatten names it ``<cycle>``)."""


def prune(root: Any, leave_out: Callable[[str], bool]) -> Pruned:
    """A copy of ``root`` without the leaves whose dotted names ``leave_out`` picks.

    Names are spelled as :func:`~paraminspect.model.flatten` spells them. A
    mapping loses the key; a list or tuple keeps a ``None`` in the item's
    place. Placeholders are leaves here (what their state lists goes with
    them); cycles are always left out. Containers are copied, leaves (tensors
    included) are the same objects.
    """
    result = Pruned(root)
    active: set[int] = set()

    def walk(node: Any, name: str) -> Any:
        children = children_of(node)
        if isinstance(node, Opaque) or not children:
            return node
        if id(node) in active:
            return _Cycle()
        active.add(id(node))
        kept: list[tuple[Any, Any]] = []
        keys = list(node.keys()) if isinstance(node, Mapping) else list(range(len(node)))
        for key, (label, child) in zip(keys, children, strict=True):
            path = f"{name}.{label}" if name else label
            value = walk(child, path)
            if isinstance(value, _Cycle) or leave_out(path):
                is_sequence = not isinstance(node, Mapping)
                (result.replaced if is_sequence else result.dropped)[path] = child
                if not is_sequence:
                    continue
                value = None
            kept.append((key, value))
        active.discard(id(node))
        if isinstance(node, Mapping):
            out: Any = (collections.OrderedDict if isinstance(node, collections.OrderedDict) else dict)(kept)
            if hasattr(node, "_metadata") and hasattr(out, "__dict__"):
                out._metadata = node._metadata  # a state dict's per-module versions
            return out
        values = [v for _, v in kept]
        return tuple(values) if isinstance(node, tuple) else values

    if leave_out(""):
        result.root, result.dropped[""] = {}, root
        return result
    result.root = walk(root, "")
    return result
