"""Which part of a checkpoint is "the model": ``--root KEY`` and the automatic choice.

Trainer checkpoints hold more than a state dict: a Lightning ``.ckpt`` has
``state_dict`` beside ``optimizer_states`` and ``hyper_parameters``; hand-rolled
ones look like ``{"model": ..., "optimizer": ..., "epoch": 3}``. Commands that
compare or summarise parameters want just the state dict. A subtree counts as a
state dict when every leaf under it is a tensor (or a module's ``_extra_state``);
optimizer state (a ``state`` beside ``param_groups``) does not count. The choice
is made only when exactly one such subtree exists: two (``model`` and ``ema``)
are reported, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from paraminspect.model import Checkpoint, TensorRef

MAX_AUTO_DEPTH = 3  # a state dict deeper than this is not "obvious"
# Keys trainers use for the model's state dict; used only when no group is all
# tensors (a module's ``_extra_state`` or a stray number breaks "pure").
KNOWN_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")
# ``Module.state_dict()`` stores what ``get_extra_state()`` returns (any object) under
# ``<module>._extra_state``: a state dict may hold these beside its tensors.
EXTRA_STATE = "_extra_state"
# Formats that are flat archives of named arrays (np.savez keys, ONNX initializers): a
# dotted name there is not a trainer's nesting, so no part of one is "the model".
FLAT_FORMATS = frozenset({"npy", "npz", "onnx"})


@dataclass
class _Prefix:
    tensors: int = 0
    others: int = 0
    children: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class RootChoice:
    """The result of :func:`choose`: the key picked ("" = whole file) and what was found."""

    key: str
    candidates: tuple[str, ...]

    @property
    def ambiguous(self) -> bool:
        return not self.key and len(self.candidates) > 1


def state_dict_candidates(ckpt: Checkpoint) -> list[str]:
    """The top-most groups whose leaves are all tensors, in file order; [] if the
    whole checkpoint already is a state dict."""
    if _all_tensors(ckpt):
        return []
    stats: dict[str, _Prefix] = {"": _Prefix()}
    for name, entry in ckpt.entries.items():
        parts = name.split(".")
        if EXTRA_STATE in parts:
            continue  # a module's get_extra_state(): part of a state dict, neither tensor nor stray
        is_tensor = isinstance(entry, TensorRef)
        for depth in range(min(len(parts), MAX_AUTO_DEPTH + 1)):
            prefix = ".".join(parts[:depth])
            info = stats.get(prefix)
            if info is None:
                info = stats[prefix] = _Prefix()
            if is_tensor:
                info.tensors += 1
            else:
                info.others += 1
            info.children.add(parts[depth])

    def pure(prefix: str) -> bool:
        info = stats[prefix]
        return info.tensors > 0 and info.others == 0

    if pure(""):
        return []
    found = _pure_groups(stats, pure)
    if not found:
        top = stats[""].children
        found = [k for k in KNOWN_KEYS if k in top and k in stats and stats[k].tensors > stats[k].others]
    return found


def _all_tensors(ckpt: Checkpoint) -> bool:
    """The common case, seen without counting every prefix: when every entry is a tensor,
    no group holds anything else, so either the whole file is pure or (every name under
    ``_extra_state``) nothing was counted at all: no candidate either way."""
    return all(isinstance(e, TensorRef) for e in ckpt.entries.values())


def _pure_groups(stats: dict[str, _Prefix], pure: Callable[[str], bool]) -> list[str]:
    found: list[str] = []
    for prefix, info in stats.items():
        if not prefix or not pure(prefix) or not info.children:
            continue
        parent = prefix.rpartition(".")[0] if "." in prefix else ""
        if parent and pure(parent):
            continue  # not top-most
        if "param_groups" in stats[parent].children:
            continue  # optimizer state: {"state": {0: {...}}, "param_groups": [...]}
        if any(prefix.startswith(f + ".") for f in found):
            continue
        found.append(prefix)
    return found


def choose(ckpt: Checkpoint) -> RootChoice:
    """Pick the one obvious state dict, if there is exactly one."""
    if ckpt.format in FLAT_FORMATS:
        return RootChoice("", ())
    candidates = tuple(state_dict_candidates(ckpt))
    return RootChoice(candidates[0] if len(candidates) == 1 else "", candidates)


def select(ckpt: Checkpoint, root: str | None, *, auto: bool = True) -> tuple[Checkpoint, str | None]:
    """Apply ``--root``: an explicit key ("" = whole file), else the automatic choice.

    Returns the (sub)checkpoint and a note for stderr saying what was chosen, or
    None when there is nothing to say.
    """
    if root is not None:
        return ckpt.subtree(root), None
    if not auto:
        return ckpt, None
    choice = choose(ckpt)
    if choice.key:
        note = f"using the state dict under {choice.key!r} (--root KEY picks another part, --root '' the whole file)"
        return ckpt.subtree(choice.key), note
    if choice.ambiguous:
        listed = ", ".join(repr(c) for c in choice.candidates[:5])
        return ckpt, f"several parts hold only tensors ({listed}); using the whole file, pick one with --root KEY"
    return ckpt, None
