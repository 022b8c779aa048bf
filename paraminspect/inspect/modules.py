"""``tree --modules``: the model as ``print(model)`` shows it, inferred from parameters.

A group whose children are all tensors is one module; its kind is read off
the names and shapes of its parameters: Linear, Conv1d/2d/3d (kernel size from
the weight), BatchNorm (running statistics), LayerNorm, RMSNorm, Embedding.
Where shapes alone cannot tell kinds apart (a lone 2-D ``weight`` is a Linear
without bias or an Embedding; a lone 1-D ``weight`` a LayerNorm or an RMSNorm)
the module's name must say which (``embed_tokens``, ``q_proj``, ``ln_f``);
otherwise the group is shown by its parameters, ``{weight: [64, 16]}``, never
guessed. Containers are shown as ``Module(`` (a state dict does not record
whether one was a Sequential, a ModuleList or a custom class); runs of
identical numbered blocks fold into ``(0-125): 126 x Module(`` as ModuleList
prints them. Modules without parameters (ReLU, Dropout) leave no trace in a
state dict and so do not appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from paraminspect.errors import LimitExceeded
from paraminspect.inspect.tree import Node, build
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.naming.order import tensor_names
from paraminspect.output.report import Column, Kind, ModuleLine, ModuleReport, Table
from paraminspect.quant.logical import Logical, Recognition, display_names

Param = TensorRef | Logical  # a quantized weight is one parameter of its logical shape

_EMBEDDING = {"wte", "wpe", "embedding", "embeddings"}
_LINEAR = {"proj", "linear", "fc", "head", "dense", "query", "key", "value", "gate", "up", "down", "out"}
_LINEAR |= {"classifier", "q", "k", "v", "o", "wq", "wk", "wv", "wo", "w"}


COLUMNS = [
    Column("path", "path", Kind.NAME),
    Column("type", "type"),
    Column("module", "module", Kind.NAME),
    Column("params", "params", Kind.COUNT),
]


@dataclass
class Module:
    """One inferred module: its kind (or None), its text, and its sub-modules."""

    name: str
    path: str
    kind: str | None  # "Linear", ..., "Module" for a container, None if unknown
    text: str
    params: int
    children: list[Module] = field(default_factory=list)
    repeat: int = 1  # > 1: this entry stands for a run of identical numbered blocks
    last_name: str = ""
    quantized: list[Logical] = field(default_factory=list)  # its quantized weights (JSON ``quantized``)


def _tokens(path: str) -> list[str]:
    """Words of a module path, lower case, digits dropped: ``layers.0.self_attn.q_proj``."""
    return re.findall(r"[a-z]+", path.lower())


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


@dataclass(frozen=True)
class Evidence:
    """Model-wide facts that make some shapes ambiguous.

    A square ``[8, 8]`` weight with an ``[8]`` bias is a Linear, unless the model
    also holds layers stored the other way round (transformers' GPT-2 ``Conv1D``
    keeps ``[in, out]``): then square ones could be either, and are not guessed.
    Likewise, in a model with transposed convolutions, a square or bias-less
    convolution could be either kind.
    """

    swapped_linear: bool = False
    transposed_conv: bool = False


def gather_evidence(groups: list[dict[str, Param]]) -> Evidence:
    swapped = transposed = False
    for params in groups:
        weight, bias = params.get("weight"), params.get("bias")
        if weight is None or bias is None or len(weight.shape) < 2:
            continue
        if bias.shape == (weight.shape[1],) and weight.shape[0] != weight.shape[1]:
            swapped |= len(weight.shape) == 2
            transposed |= len(weight.shape) > 2
    return Evidence(swapped, transposed)


def classify(name: str, params: dict[str, Param], evidence: Evidence = Evidence()) -> tuple[str, str] | None:
    """(kind, text) for a group of parameters, or None when it cannot be told for sure."""
    words = _tokens(name.rpartition(".")[2])  # the module's own name: q_proj, ln_f, embed_tokens
    last = words[-1] if words else ""
    shapes = {k: v.shape for k, v in params.items()}
    weight, bias = shapes.get("weight"), shapes.get("bias")
    keys = set(shapes)
    if {"running_mean", "running_var"} <= keys:
        if len(shapes["running_mean"]) != 1:
            return None
        channels = shapes["running_mean"][0]
        affine = keys >= {"weight", "bias"}
        allowed = {"running_mean", "running_var", "num_batches_tracked", "weight", "bias"}
        same = all(s == (channels,) for k, s in shapes.items() if k != "num_batches_tracked")
        if keys <= allowed and same and (affine or not keys & {"weight", "bias"}):
            return "BatchNorm", f"BatchNorm({channels}, affine={affine}, track_running_stats=True)"
        return None
    if weight is None or not keys <= {"weight", "bias"}:
        return None
    if bias is not None and bias == weight and len(weight) > 1:
        # A bias shaped like a multi-dimensional weight: only LayerNorm((4, 16)) has that.
        return "LayerNorm", f"LayerNorm({_shape(weight)}, elementwise_affine=True, bias=True)"
    if len(weight) in (3, 4, 5):
        # Conv weights are [out, in/groups, *kernel] with bias [out]; transposed ones
        # [in, out/groups, *kernel] with bias [out]. Without a bias that tells, the
        # module's name must ("deconv", "conv_transpose").
        named_transposed = any(w in ("deconv", "transpose", "transposed", "convtranspose") for w in words)
        square = weight[0] == weight[1]
        if bias is None:
            transposed = named_transposed
            if evidence.transposed_conv and not named_transposed:
                return None
        elif bias == (weight[0],) and not square:
            transposed = False
        elif bias == (weight[0],) and square:
            if evidence.transposed_conv and not named_transposed:
                return None
            transposed = named_transposed
        elif bias == (weight[1],):
            transposed = True
        else:
            return None
        kernel = _shape(weight[2:])
        kind = f"{'ConvTranspose' if transposed else 'Conv'}{len(weight) - 2}d"
        in_ch, out_ch = (weight[0], weight[1]) if transposed else (weight[1], weight[0])
        extra = "" if bias is not None else ", bias=False"
        return kind, f"{kind}({in_ch}, {out_ch}, kernel_size={kernel}{extra})"
    if len(weight) == 2 and bias is not None:
        if bias != (weight[0],) or (weight[0] == weight[1] and evidence.swapped_linear):
            return None
        return "Linear", f"Linear(in_features={weight[1]}, out_features={weight[0]}, bias=True)"
    if len(weight) == 2:
        if any(w.startswith("emb") or w in _EMBEDDING for w in words):
            return "Embedding", f"Embedding({weight[0]}, {weight[1]})"
        if (last in _LINEAR or last.endswith("proj")) and not (weight[0] == weight[1] and evidence.swapped_linear):
            return "Linear", f"Linear(in_features={weight[1]}, out_features={weight[0]}, bias=False)"
        return None
    joined = "".join(words)
    layer_norm = "ln" in words or "layernorm" in joined
    if bias is not None and bias == weight and layer_norm:
        return "LayerNorm", f"LayerNorm({_shape(weight)}, elementwise_affine=True, bias=True)"
    if bias is None and "rms" in joined:
        return "RMSNorm", f"RMSNorm({_shape(weight)})"
    return None


def _unknown(params: dict[str, Param]) -> str:
    inner = ", ".join(f"{k}: [{', '.join(map(str, v.shape))}]" for k, v in params.items())
    return "{" + inner + "}"


def infer(node: Node, evidence: Evidence = Evidence()) -> Module:
    """The module tree under ``node`` (iterative over containers would not help much:
    module nesting is shallow, and :func:`tree.build` already bounds it)."""
    params = {k: c.entry for k, c in node.children.items() if isinstance(c.entry, Param) and not c.children}
    groups = [c for c in node.children.values() if c.children]
    if params and not groups:
        found = classify(node.path, params, evidence)
        text = found[1] if found else _unknown(params)
        quantized = [p for p in params.values() if isinstance(p, Logical)]
        text += "".join(f" [{p.dtype} {p.caption}]" for p in quantized)  # the weight as meant, how stored
        return Module(node.name, node.path, found[0] if found else None, text, node.params, quantized=quantized)
    module = Module(node.name, node.path, "Module", "Module", node.params)
    for child in node.children.values():
        if child.children:
            module.children.append(infer(child, evidence))
        elif isinstance(child.entry, Param):
            entry = child.entry
            shape = ", ".join(map(str, entry.shape))
            dtype = entry.dtype if isinstance(entry, Logical) else entry.dtype.name
            caption = f", {entry.caption}" if isinstance(entry, Logical) else ""
            quantized = [entry] if isinstance(entry, Logical) else []
            text = f"Parameter([{shape}], {dtype}{caption})"
            module.children.append(Module(child.name, child.path, "Parameter", text, child.params, quantized=quantized))
    module.children = _fold(module.children)
    return module


def _leaf_groups(root: Node) -> Iterator[dict[str, Param]]:
    stack = [root]
    while stack:
        node = stack.pop()
        params = {k: c.entry for k, c in node.children.items() if isinstance(c.entry, Param) and not c.children}
        if params:
            yield params
        stack.extend(c for c in node.children.values() if c.children)


def _signature(module: Module) -> tuple[Any, ...]:
    """What a block looks like, apart from its own name and repeat count."""
    return (module.text, tuple((c.name, c.repeat, _signature(c)) for c in module.children))


def _fold(children: list[Module]) -> list[Module]:
    """Runs of identical containers named 0, 1, 2, ... become one entry, as in ModuleList."""
    folded: list[Module] = []
    for child in children:
        prev = folded[-1] if folded else None
        if (
            prev is not None
            and prev.kind == "Module"
            and child.kind == "Module"
            and prev.last_name.isdigit()
            and child.name.isdigit()
            and int(child.name) == int(prev.last_name) + 1
            and _signature(child) == _signature(prev)
        ):
            prev.repeat += 1
            prev.last_name = child.name
            prev.params += child.params
            continue
        child.last_name = child.name
        folded.append(child)
    return folded


def report(ckpt: Checkpoint, *, sort: bool = False, found: Recognition | None = None) -> ModuleReport:
    """Everything ``tree --modules`` shows, for every output format; with ``found``, a
    quantized weight is one parameter of its logical dtype and shape, its storage folded in."""
    names = display_names(ckpt, found, sort=sort) if found else tensor_names(ckpt, sort=sort)
    root = build(ckpt, names, found)
    try:
        top = infer(root, gather_evidence(list(_leaf_groups(root))))
        modules_doc = _to_json(top)
    except RecursionError:  # module nesting mirrors name nesting, which a file controls
        raise LimitExceeded("names nest too deeply to draw as modules (use tree without --modules)") from None
    lines: list[ModuleLine] = []
    rows: list[dict[str, Any]] = []
    stack: list[tuple[Module, int] | int] = [(top, 0)]
    while stack:
        item = stack.pop()
        if isinstance(item, int):
            lines.append(ModuleLine(item, None, ")"))
            continue
        module, depth = item
        label = module.name if module.repeat == 1 else f"{module.name}-{module.last_name}"
        text = module.text if module.repeat == 1 else f"{module.repeat} x {module.text}"
        opens = "(" if module.kind == "Module" else ""
        lines.append(ModuleLine(depth, label if depth else None, text + opens))
        rows.append({"path": module.path, "type": module.kind or "unknown", "module": text, "params": module.params})
        if module.kind == "Module":
            stack.append(depth)
            stack.extend((c, depth + 1) for c in reversed(module.children))
    document = {"file": str(ckpt.path), "format": ckpt.format, "root": ckpt.selected, "modules": modules_doc}
    return ModuleReport(lines, Table(COLUMNS, rows, document=document))


def _to_json(module: Module) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": module.name,
        "path": module.path,
        "type": module.kind or "unknown",
        "repr": module.text,
        "params": module.params,
    }
    if module.quantized:
        doc["quantized"] = {w.name.rpartition(".")[2]: w.facts() for w in module.quantized}
    if module.repeat > 1:
        doc.update(repeat=module.repeat, last=module.last_name)
    if module.kind == "Module":
        doc["children"] = [_to_json(c) for c in module.children]
    return doc
