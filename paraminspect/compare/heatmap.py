"""``diff --heatmap``: the relative L2 change per (layer, module kind), from names.

A name is placed in a layer when a component is an integer right after a block
container (``layers``, ``layer``, ``h``, ``blk``, ``blocks``, ``block``):
``model.layers.12.self_attn.q_proj.weight`` is layer 12 of stack
``model.layers``, kind ``self_attn.q_proj``; ``blk.12.attn_q.weight`` layer 12,
kind ``attn_q``; ``transformer.h.3.mlp.c_fc.weight`` layer 3, kind ``mlp.c_fc``.
The parameter leaf (``weight``, ``bias``) is dropped, so a module's tensors share
a cell, and further integers (MoE experts) become ``*``. A cell adds up the sums
of its tensors (see :mod:`paraminspect.compare.rollup`). Every other name goes
to an extra row per module prefix (``model.embed_tokens``, ``lm_head``).

Columns come in a transformer's reading order when their names say what they
are (q, k, v, fused qkv, output, gate, up, down, norms), then the rest in file order;
each is labelled by its last component when that is unique (``q_proj``), else in full
(GPT-2's ``attn.c_proj`` and ``mlp.c_proj``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from paraminspect.compare.accumulate import ValueStats
from paraminspect.compare.rollup import group
from paraminspect.output.report import Heatmap

CONTAINERS = frozenset({"layers", "layer", "h", "blk", "blocks", "block"})

# (pattern on the kind, rank): the first match places a column; unmatched kinds rank 7.
_ROLES = [
    (r"(^|[._])(q|q_proj|query|attn_q|wq)$", 0),
    (r"(^|[._])(k|k_proj|key|attn_k|wk)$", 1),
    (r"(^|[._])(v|v_proj|value|attn_v|wv)$", 2),
    (r"(c_attn|qkv|query_key_value|Wqkv|in_proj)", 3),
    (r"(o_proj|attn_output|out_proj|attn\.c_proj|attention\.dense|wo)$", 4),
    (r"(gate|w1)", 5),
    (r"(up_proj|ffn_up|c_fc|fc1|w3|intermediate)", 6),
    (r"(down|ffn_down|mlp\.c_proj|fc2|w2|output\.dense)", 7),
    (r"(norm|ln)", 9),
]


def locate(name: str) -> tuple[str, int, str] | None:
    """(stack, layer index, module kind) of a name inside a block stack, else None."""
    parts = name.split(".")
    for i in range(1, len(parts) - 1):
        if parts[i].isdigit() and parts[i - 1] in CONTAINERS:
            module = parts[i + 1 : -1] or parts[-1:]
            return ".".join(parts[:i]), int(parts[i]), ".".join("*" if c.isdigit() else c for c in module)
    return None


def _rank(kind: str) -> int:
    for pattern, rank in _ROLES:
        if re.search(pattern, kind):
            return rank
    return 8


def _labels(kinds: list[str]) -> list[str]:
    last = [k.rsplit(".", 1)[-1] for k in kinds]
    return [short if last.count(short) == 1 else kind for kind, short in zip(kinds, last, strict=True)]


def heatmap(items: Iterable[tuple[str, ValueStats | None]], measure: str = "rel_l2") -> Heatmap:
    """The grid of ``measure`` per (layer, kind) cell, rows in stack then layer order."""
    placed: list[tuple[tuple[str, int], str, str, ValueStats | None]] = []
    others: list[tuple[str, ValueStats | None]] = []
    for name, stats in items:
        where = locate(name)
        if where is None:
            others.append((name, stats))
        else:
            placed.append(((where[0], where[1]), where[2], name, stats))
    stacks = list(dict.fromkeys(row[0] for row, *_ in placed))
    rows = sorted(dict.fromkeys(row for row, *_ in placed), key=lambda r: (stacks.index(r[0]), r[1]))
    seen = list(dict.fromkeys(kind for _, kind, *_ in placed))
    kinds = sorted(seen, key=lambda k: (_rank(k), seen.index(k)))
    cells = {
        g.prefix: g.measures()[measure]
        for g in group(((f"{r[0]}\0{r[1]}\0{k}", s) for r, k, _, s in placed), lambda key: key)
    }
    present = {f"{r[0]}\0{r[1]}\0{k}" for r, k, *_ in placed}
    grid = []
    absent = []
    for stack, layer in rows:
        keys = [f"{stack}\0{layer}\0{k}" for k in kinds]
        label = str(layer) if len(stacks) == 1 else f"{stack}.{layer}"
        grid.append((label, [cells.get(key) for key in keys]))
        absent.append([key not in present for key in keys])
    extra = group(others, lambda name: name.rsplit(".", 1)[0])
    return Heatmap(measure, _labels(kinds), grid, absent, [(g.prefix, g.measures()[measure]) for g in extra])


def to_json(picture: Heatmap) -> dict[str, object]:
    """The grid for ``--format json``: cells row by row, null where there is no value."""
    return {
        "measure": picture.measure,
        "columns": picture.columns,
        "rows": [{"layer": label, "cells": cells} for label, cells in picture.rows],
        "other": [{"prefix": prefix, picture.measure: value} for prefix, value in picture.other],
    }
