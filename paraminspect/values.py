"""``get``: the values behind selected names, decoded from exactly their bytes.

A name may be exact, a subtree prefix, a glob or the index form (resolved by
the CLI's shared selector). Tensors that will be shown summarised are read
only at the corners the print shows, so ``get`` of a multi-GiB tensor stays
instant; JSON and CSV ask for every value and get them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paraminspect import peek
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.printing import DEFAULT_OPTIONS, PrintOptions, shown_indices
from paraminspect.report import ValueEntry, ValuesReport
from paraminspect.select import Selector
from paraminspect.tensors import read_array, read_indices
from paraminspect.tree import ordered_names


def selected_names(ckpt: Checkpoint, patterns: Sequence[str], *, regex: bool = False) -> list[str]:
    """Names in the order the patterns were given; each pattern's matches in file order, once."""
    names = ordered_names(ckpt)
    chosen: dict[str, None] = {}
    for pattern in patterns:
        chosen.update(dict.fromkeys(Selector([pattern], regex=regex).filter(names)))
    return list(chosen)


def report(
    ckpt: Checkpoint, names: Sequence[str], options: PrintOptions = DEFAULT_OPTIONS, *, every_value: bool = False
) -> ValuesReport:
    """Decode ``names``; ``every_value`` reads whole tensors even where a print would summarise."""
    tied = ckpt.tied_groups()
    entries: list[ValueEntry] = []
    for name in names:
        entry = ckpt.entries[name]
        if isinstance(entry, TensorRef):
            indices = None if every_value else shown_indices(entry.shape, options)
            array = _shown_values(entry, indices) if not every_value else read_array(entry)
            entries.append(
                ValueEntry(
                    name,
                    dtype=entry.dtype.name,
                    shape=list(entry.shape),
                    array=array,
                    complete=indices is None,
                    tied_to=tied.get(name),
                )
            )
        else:
            entries.append(ValueEntry(name, type_name=entry.type_name, value=entry.value))
    return ValuesReport(str(ckpt.path), ckpt.format, entries, options)


def _shown_values(ref: TensorRef, indices: list[list[int]] | None) -> Any:
    """What a (possibly summarised) print shows: nested Python lists when the
    standard library can decode the dtype (no numpy import), else a numpy array."""
    if ref.numel == 0:
        return []
    if peek.can_peek(ref):
        return peek.read_shown(ref, indices if indices is not None else [list(range(n)) for n in ref.shape])
    return read_array(ref) if indices is None else read_indices(ref, indices)
