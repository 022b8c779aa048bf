"""``lora ADAPTER``: what a LoRA adapter does to each module, without forming BA.

A LoRA module adds ΔW = s·B·A to a weight, with A [r, in] and B [out, r]. Forming
B·A costs outxin memory and outxinxr time; everything asked here follows from
rxr matrices instead:

- ‖BA‖_F² = trace((BᵀB)(AAᵀ)), two rxr Gram matrices;
- the singular values of BA: with B = Q_B R_B and Aᵀ = Q_A R_A (thin QR), BA =
  Q_B (R_B R_Aᵀ) Q_Aᵀ, so they are those of the rxr matrix R_B R_Aᵀ;
- the effective rank exp(H(p)), p = s/Σs (Roy and Vetterli, 2007): r for equal
  singular values, 1 for a single direction.

Layouts: peft (``<module>.lora_A.weight``/``lora_B.weight``, ``r``/``lora_alpha``/
``use_rslora``/``rank_pattern``/``alpha_pattern`` in the ``adapter_config.json``
beside the file) and kohya (``<module>.lora_down.weight``/``lora_up.weight`` and
an ``<module>.alpha`` scalar). The scale is alpha/r, or alpha/√r with rslora;
the rank is the stored one (A's rows). It lives in ``inspect/``: it reads one
file, like ``stats``, and compares nothing.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paraminspect.data.arrays import read_array
from paraminspect.errors import CheckpointError
from paraminspect.formats.strictjson import unique_keys
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.output.report import Column, Kind, Table

CONFIG = "adapter_config.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")  # in a peft directory, in this order
MAX_CONFIG_BYTES = 1 << 20
# The r x r matrices cost r^2 floats: a "rank" past this is no low-rank adapter.
MAX_RANK = 8192
_PEFT = re.compile(r"^(?P<module>.+)\.lora_(?P<side>[AB])(?:\.[^.]+)?\.weight$")
_KOHYA = re.compile(r"^(?P<module>.+)\.lora_(?P<side>down|up)\.weight$")


@dataclass
class Module:
    name: str
    rank: int
    alpha: float | None
    scale: float | None
    norm_ba: float
    effective_rank: float
    singular_values: list[float]


def read_config(adapter: Path) -> dict[str, Any] | None:
    """The peft ``adapter_config.json`` beside ``adapter`` (or in it, a directory), if any."""
    path = (adapter if adapter.is_dir() else adapter.parent) / CONFIG
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        raw = fh.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(raw, object_pairs_hook=unique_keys(CONFIG))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return config


def _pattern_value(patterns: Any, module: str, default: Any) -> Any:
    """peft's rank_pattern/alpha_pattern: the value of the first key ``module`` ends with."""
    if isinstance(patterns, dict):
        for key, value in patterns.items():
            if re.search(rf"(^|\.){re.escape(str(key))}$", module):
                return value
    return default


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CheckpointError(f"{CONFIG}: {what} is not a finite number: {value!r}")
    return float(value)


def pairs(ckpt: Checkpoint) -> dict[str, dict[str, TensorRef]]:
    """``{module: {"A": down, "B": up, "alpha": ...}}`` for every LoRA module found."""
    found: dict[str, dict[str, TensorRef]] = {}
    for name, ref in ckpt.tensors.items():
        match = _PEFT.match(name) or _KOHYA.match(name)
        if match:
            side = {"down": "A", "up": "B"}.get(match["side"], match["side"])
            found.setdefault(match["module"], {})[side] = ref
    for module, parts in found.items():
        alpha = ckpt.tensors.get(f"{module}.alpha")
        if alpha is not None:
            parts["alpha"] = alpha
    return found


def measure(a: Any, b: Any) -> tuple[float, list[float]]:
    """(‖BA‖_F, singular values of BA) from A [r, in] and B [out, r], in float64."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    gram = np.trace((b.T @ b) @ (a @ a.T))
    _, r_b = np.linalg.qr(b)
    _, r_a = np.linalg.qr(a.T)
    sigma = np.linalg.svd(r_b @ r_a.T, compute_uv=False)
    return math.sqrt(max(float(gram), 0.0)), [float(s) for s in sigma]


def effective_rank(sigma: list[float]) -> float:
    total = sum(sigma)
    if total <= 0:
        return 0.0
    return math.exp(-sum(s / total * math.log(s / total) for s in sigma if s > 0))


def modules(ckpt: Checkpoint, config: dict[str, Any] | None) -> list[Module]:
    out = []
    for name, parts in pairs(ckpt).items():
        if "A" not in parts or "B" not in parts:
            raise CheckpointError(f"{ckpt.path}: LoRA module {name!r} lacks its {'B' if 'A' in parts else 'A'} matrix")
        a, b = parts["A"], parts["B"]
        if len(a.shape) < 2 or len(b.shape) < 2 or b.shape[1] != a.shape[0]:
            raise CheckpointError(f"{ckpt.path}: LoRA module {name!r}: shapes {list(a.shape)} and {list(b.shape)}")
        rank = a.shape[0]
        if rank > MAX_RANK:
            raise CheckpointError(f"{ckpt.path}: LoRA module {name!r}: rank {rank} is past {MAX_RANK}")
        a_values = read_array(a).reshape(rank, -1)  # a conv's [r, in, kh, kw] as [r, in*kh*kw]
        b_values = read_array(b).reshape(b.shape[0], rank)
        alpha: float | None = None
        scale: float | None = None
        if "alpha" in parts:
            alpha = float(read_array(parts["alpha"]).reshape(-1)[0])
            scale = alpha / rank
        elif config is not None and "lora_alpha" in config:
            alpha = _number(_pattern_value(config.get("alpha_pattern"), name, config["lora_alpha"]), "lora_alpha")
            scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        norm, sigma = measure(a_values, b_values)
        out.append(Module(name, rank, alpha, scale, norm, effective_rank(sigma), sigma))
    return out


COLUMNS = [
    Column("module", "module", Kind.NAME),
    Column("rank", "rank", Kind.COUNT),
    Column("alpha", "alpha", Kind.NUMBER),
    Column("scale", "scale", Kind.NUMBER),
    Column("norm_ba", "||BA||", Kind.NUMBER),
    Column("delta_norm", "||scale*BA||", Kind.NUMBER),
    Column("effective_rank", "effective rank", Kind.NUMBER),
]


def report(ckpt: Checkpoint, adapter: Path) -> Table:
    """One row per LoRA module; JSON adds the singular values of BA."""
    config = read_config(adapter)
    found = modules(ckpt, config)
    if not found:
        raise CheckpointError(f"{ckpt.path}: no LoRA module (lora_A/lora_B or lora_down/lora_up tensors)")
    rows = [
        {
            "module": m.name,
            "rank": m.rank,
            "alpha": m.alpha,
            "scale": m.scale,
            "norm_ba": m.norm_ba,
            "delta_norm": None if m.scale is None else abs(m.scale) * m.norm_ba,
            "effective_rank": m.effective_rank,
            "singular_values": m.singular_values,
        }
        for m in found
    ]
    document = {
        "file": str(ckpt.path),
        "format": ckpt.format,
        "config": None if config is None else {k: config.get(k) for k in ("r", "lora_alpha", "use_rslora")},
        "modules": rows,
    }
    return Table(COLUMNS, rows, None, document)
