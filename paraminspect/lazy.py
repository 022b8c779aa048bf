"""Module attributes imported on first use (PEP 562), to keep start-up short.

The package's face (``paraminspect``) and the renderer (``output.render``) name
more than any one command needs; each lists where its names live, and this
builds the module ``__getattr__`` that imports a name's home the first time the
name is asked for, then keeps it in the module so the hook is not asked again.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing would cost start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def attributes(namespace: dict[str, Any], homes: dict[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for the module whose globals are ``namespace``: ``homes`` maps
    each lazy name to the absolute name of the module that defines it."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return __getattr__
