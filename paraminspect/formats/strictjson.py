"""JSON read as strictly as the formats demand: Python's json quietly keeps the
last of two equal keys, which lets one file mean different things to
different readers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paraminspect.errors import CheckpointError

ObjectHook = Callable[[list[tuple[str, Any]]], dict[str, Any]]


def unique_keys(what: str) -> ObjectHook:
    """An ``object_pairs_hook`` refusing duplicate keys with ``<what> has the key 'k' twice``."""

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)  # at C speed; only when a key repeated, look for the first one twice
        if len(result) == len(pairs):
            return result
        result = {}
        for key, value in pairs:
            if key in result:
                raise CheckpointError(f"{what} has the key {key!r} twice")
            result[key] = value
        return result

    return build
