"""A quantized weight's storage tensors move together in structural edits.

``rename``, ``drop`` and ``extract`` of a logical weight's name (``q_proj.weight``)
carry its companions (``qweight``, ``qzeros``, ``scales``, ``g_idx``; ``weight_scale``;
``SCB``; ``absmax``, ``quant_map``, ``quant_state.*``...). A selection or rename that
would take some of them and leave the others is refused: the half left behind
could no longer be decoded, and nothing would say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from paraminspect.errors import UsageError
from paraminspect.model import Checkpoint
from paraminspect.naming.select import Selector
from paraminspect.quant.logical import Logical, Recognition, looks_quantized


def recognition(ckpt: Checkpoint) -> Recognition | None:
    """The quantized weights of ``ckpt`` (None when there are none); the recognisers
    are imported only when the names look quantized."""
    if not looks_quantized(ckpt):
        return None
    from paraminspect.quant.recognise import recognise

    return recognise(ckpt) or None


_GERUND = {"drop": "dropping", "extract": "extracting"}


def _describe(weight: Logical) -> str:
    return f"quantized weight {weight.name!r} ({weight.label}; stored as {', '.join(weight.storage)})"


def whole(found: Recognition, selector: Selector, chosen: Iterable[str], path: Path, verb: str) -> set[str]:
    """``chosen`` with every companion of each logical weight the selector names added;
    refused when it names only part of a weight's storage (``verb``: drop, extract)."""
    out = set(chosen)
    for weight in found.weights.values():
        picked = [s for s in weight.storage if s in out]
        if selector.matches(weight.name) or len(picked) == len(weight.storage):
            out.update(weight.storage)
        elif picked:
            raise UsageError(
                f"{_GERUND.get(verb, verb + 'ing')} {', '.join(repr(p) for p in picked)} would split the "
                f"{_describe(weight)}; select {weight.name!r} (or its module) to {verb} all of it",
                path,
            )
    return out


def _moved(weight: Logical, new_name: str, storage: str) -> str | None:
    """Where ``storage`` goes when the logical weight is renamed to ``new_name``: under it
    when it lies under the weight (bitsandbytes' ``weight.absmax``), else beside it,
    which needs the weight's last name part kept (None when it changes)."""
    old = weight.name
    if storage == old or storage.startswith(old + "."):
        return new_name + storage[len(old) :]
    parent, _, leaf = old.rpartition(".")
    new_parent, _, new_leaf = new_name.rpartition(".")
    if leaf != new_leaf or not storage.startswith(parent + "." if parent else ""):
        return None
    rest = storage[len(parent) + 1 :] if parent else storage
    return f"{new_parent}.{rest}" if new_parent else rest


def renamed(found: Recognition, mapping: Callable[[str], str], path: Path) -> dict[str, str]:
    """Storage name -> its new name, each weight's companions following its logical name;
    refused when the rules would send its storage tensors to different modules."""
    out: dict[str, str] = {}
    for weight in found.weights.values():
        new_name = mapping(weight.name)
        for storage in weight.storage:
            target = _moved(weight, new_name, storage)
            if target is None:
                raise UsageError(
                    f"renaming {weight.name!r} to {new_name!r} changes its last part, which its companions "
                    f"beside it are named after: the {_describe(weight)} keeps it",
                    path,
                )
            direct = mapping(storage)
            if direct not in (storage, target):
                raise UsageError(
                    f"renaming {storage!r} to {direct!r} would split the {_describe(weight)}; "
                    f"rename {weight.name!r} (or its module) to move all of it",
                    path,
                )
            out[storage] = target
    return out
