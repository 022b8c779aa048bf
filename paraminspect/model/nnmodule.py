"""A whole pickled ``torch.nn.Module`` (``torch.save(model)``) named as its state dict.

The reader never imports torch: a module arrives as an inert placeholder whose
state is the module's ``__dict__``, where tensors sit at
``_modules.features._modules.0._parameters.weight``. Users know them by the
names ``model.state_dict()`` gives (``features.0.weight``); this maps one to
the other, so every command shows those names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

_PARTS = ("_parameters", "_buffers", "_modules")


def is_module_state(state: Any) -> bool:
    """True when ``state`` (a placeholder's pickled ``__dict__``) is an ``nn.Module``'s."""
    return isinstance(state, Mapping) and all(isinstance(state.get(k), Mapping) for k in _PARTS)


def module_children(state: Mapping[Any, Any], key: Callable[[Any], str]) -> list[tuple[str, Any]] | None:
    """A module's ``__dict__`` as ``Module.state_dict()`` lists it: its own parameters,
    its persistent buffers (``_non_persistent_buffers_set`` left out), then its
    submodules, in that order, skipping None entries as torch does; None when
    ``state`` is not a module's. ``key`` turns a dict key into a name component.

    The module's other attributes (``training``, hooks, plain Python attributes,
    tensors assigned without ``register_buffer``) are not in a state dict and are
    not listed, nor is the module itself (:func:`paraminspect.model.flatten` gives
    it no entry): such a file lines up name for name with its state dict in
    ``diff``. ``scan`` still lists every class the pickle names.
    """
    if not is_module_state(state):
        return None
    parameters, buffers, modules = (state[k] for k in _PARTS)
    skip = state.get("_non_persistent_buffers_set")
    transient = {k for k in skip if isinstance(k, str)} if isinstance(skip, set | frozenset | list | tuple) else set()
    return [
        *((key(k), v) for k, v in parameters.items() if v is not None),
        *((key(k), v) for k, v in buffers.items() if v is not None and k not in transient),
        *((key(k), v) for k, v in modules.items() if v is not None),
    ]
