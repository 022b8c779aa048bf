"""Which storage tensors of a checkpoint make up which logical weights."""

from __future__ import annotations

from paraminspect.model import Checkpoint
from paraminspect.quant import fp4, others, packed
from paraminspect.quant.config import QuantConfig, find
from paraminspect.quant.logical import Recognition

# What each config method means in tensor families, to tell a user when none was found.
_FAMILIES = {
    "gptq": {"gptq", "awq"},
    "awq": {"gptq", "awq"},
    "compressed-tensors": {"compressed-tensors", "fp8", "fp4"},
    "fp8": {"fp8"},
    "bitsandbytes": {"bnb-int8", "bnb-4bit"},
    "mlx": {"mlx"},
}


def recognise(ckpt: Checkpoint, cfg: QuantConfig | None = None, *, use_config: bool = True) -> Recognition:
    """Every recognised logical weight of ``ckpt`` (header-only), with notes for a user:
    a config that disagrees with the tensors, settings that were assumed."""
    if cfg is None and use_config:
        cfg = find(ckpt)
    tensors = ckpt.tensors
    found = Recognition()
    packed.gptq_awq(tensors, ckpt.entries, cfg, found)
    packed.compressed_tensors(tensors, ckpt.entries, cfg, found)
    fp4.compressed_fp4(tensors, ckpt.entries, cfg, found)
    packed.mlx(tensors, cfg, found)
    others.bnb_4bit(tensors, found)
    others.bnb_int8(tensors, found)
    others.fp8(tensors, cfg, found)
    others.torch_qtensors(ckpt.entries, found)
    if cfg is not None and tensors:
        families = {w.family for w in found.weights.values()}
        expected = _FAMILIES.get(cfg.method)
        if expected is not None and not families & expected:
            found.notes.append(f"{cfg.source} says {cfg.method}, but no tensor is laid out that way")
        elif expected is not None and families - expected:
            other = ", ".join(sorted(families - expected))
            found.notes.append(f"{cfg.source} says {cfg.method}, but tensors are laid out as {other}; read as {other}")
    return found
