"""``diff``'s comparison of the files' own metadata (``Checkpoint.file_metadata``: GGUF
key/values, safetensors ``__metadata__``, index ``metadata``...), one piece of code
for every format, since every reader fills the same typed mapping.

Keys are only in A, only in B, of another type, of another value, or equal.
Metadata is compared when both sides are checkpoints of one format (a .pt's
``hyper_parameters`` and a safetensors ``__metadata__`` are not the same kind of
thing); tied-name records safetensors keeps in its metadata are left to the tie
comparison. Like h5diff, which compares attributes with the data, a metadata
difference is a difference (exit 1) unless ``--no-metadata`` asks for tensors only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from paraminspect.inttext import exact_repr
from paraminspect.model import Checkpoint
from paraminspect.output.render import meta_text
from paraminspect.output.report import MetaValue, Verdict

STATUSES = ("only_in_a", "only_in_b", "type_changed", "value_changed", "equal")
LABELS = {
    "only_in_a": "metadata only in A",
    "only_in_b": "metadata only in B",
    "type_changed": "metadata type changed",
    "value_changed": "metadata changed",
}


def _plain(ckpt: Checkpoint) -> dict[str, tuple[str, Any]]:
    return {k: v for k, v in ckpt.file_metadata.items() if k not in ckpt.aliases}


def _equal(a: Any, b: Any) -> bool:
    if a == b:
        return True
    # NaN equals itself (alone or in a list); a lazily read array compared above, by its bytes
    return type(a) in (float, list, tuple) and type(b) is type(a) and exact_repr(a) == exact_repr(b)


def compare(a: Checkpoint, b: Checkpoint) -> list[dict[str, Any]]:
    """One entry per key of either side (A's order, then B's new keys): key, status, a, b
    (each ``{"type", "value"}`` or None)."""
    left, right = _plain(a), _plain(b)
    entries = []
    for key in [*left, *(k for k in right if k not in left)]:
        ta, tb = left.get(key), right.get(key)
        if tb is None:
            status = "only_in_a"
        elif ta is None:
            status = "only_in_b"
        elif ta[0] != tb[0]:
            status = "type_changed"
        else:
            status = "equal" if _equal(ta[1], tb[1]) else "value_changed"
        entries.append({"key": key, "status": status, "a": _side(ta), "b": _side(tb)})
    return entries


def _side(typed: tuple[str, Any] | None) -> dict[str, Any] | None:
    return None if typed is None else {"type": typed[0], "value": typed[1]}


def _cell(side: dict[str, Any] | None) -> str | None:
    if side is None:
        return None
    return f"{side['type']} {meta_text(MetaValue(side['type'], side['value']), short=True)}"


def with_metadata(verdict: Verdict, a: object, b: object, *, enabled: bool = True, show_all: bool = False) -> Verdict:
    """``verdict`` with the metadata comparison: JSON ``metadata``, table rows for differing
    keys (all with ``show_all``), a summary count, and ``ok``/``same`` false on a difference."""
    document = verdict.table.document
    reason = None
    if not enabled:
        reason = "--no-metadata"
    elif not (isinstance(a, Checkpoint) and isinstance(b, Checkpoint)):
        reason = "a lockfile has no metadata"
    elif a.format != b.format:
        reason = f"the formats differ ({a.format}, {b.format})"
    if reason is not None:
        document["metadata"] = {"compared": False, "reason": reason, "same": None, "counts": None, "entries": []}
        return verdict
    assert isinstance(a, Checkpoint) and isinstance(b, Checkpoint)
    entries = compare(a, b)
    counts = {status: sum(e["status"] == status for e in entries) for status in STATUSES}
    differing = len(entries) - counts["equal"]
    document["metadata"] = {
        "compared": True,
        "reason": None,
        "same": not differing,
        "counts": counts,
        "entries": [e for e in entries if e["status"] != "equal"],
    }
    document["same"] = bool(document["same"]) and not differing
    if "by_prefix" not in document:  # the table lists names: keys that differ go below them
        for entry in entries:
            if show_all or entry["status"] != "equal":
                label = LABELS.get(entry["status"], "metadata equal")
                row = {"status": label, "name": entry["key"], "a": _cell(entry["a"]), "b": _cell(entry["b"])}
                verdict.table.rows.append(row)
    shown = [*verdict.counts, ("metadata changed", differing)] if differing else verdict.counts
    return replace(verdict, counts=shown, ok=verdict.ok and not differing)
