"""``get``: the values behind selected names, decoded from exactly their bytes.

A name may be exact, a subtree prefix, a glob or the index form (resolved by
the CLI's shared selector). Tensors that will be shown summarised are read
only at the corners the print shows, so ``get`` of a multi-GiB tensor stays
instant; JSON and CSV ask for every value and get them. With ``dequantize``
a quantized weight's name gives its logical values (:mod:`paraminspect.quant`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from paraminspect.data import peek
from paraminspect.data.arrays import ensure_in_file, iter_chunks, numpy_dtype, read_array, read_indices
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.naming.order import ordered_names
from paraminspect.naming.select import Selector
from paraminspect.output.printing import DEFAULT_OPTIONS, PrintOptions, shown_indices
from paraminspect.output.report import ValueEntry, ValuesReport
from paraminspect.quant.logical import Logical, Recognition


def selected_names(
    ckpt: Checkpoint, patterns: Sequence[str], *, regex: bool = False, found: Recognition | None = None
) -> list[str]:
    """Names in the order the patterns were given; each pattern's matches in file order, once.
    With ``found``, a quantized weight is named by its logical name instead of its storage."""
    names = ordered_names(ckpt)
    if found:
        names = found.display_names(names)
    chosen: dict[str, None] = {}
    for pattern in patterns:
        chosen.update(dict.fromkeys(Selector([pattern], regex=regex).filter(names)))
    return list(chosen)


def report(
    ckpt: Checkpoint,
    names: Sequence[str],
    options: PrintOptions = DEFAULT_OPTIONS,
    *,
    every_value: bool = False,
    stream: bool = False,
    quantized: Recognition | None = None,
) -> ValuesReport:
    """Decode ``names`` for printing: only what the print shows, or ``every_value``
    (``--full``); with ``stream`` (JSON/CSV, and the CLI's ``--full`` text) values
    are read later, chunk by chunk."""
    tied = ckpt.tied_groups()
    entries: list[ValueEntry] = []
    for name in names:
        weight = quantized.weights.get(name) if quantized else None
        if weight is not None:
            entries.append(_logical_entry(ckpt, weight, stream))
            continue
        entry = ckpt.entries[name]
        if not isinstance(entry, TensorRef):
            entries.append(ValueEntry(name, type_name=entry.type_name, value=entry.value))
            continue
        found = ValueEntry(name, dtype=entry.dtype.name, shape=list(entry.shape), tied_to=tied.get(name))
        if stream:
            numpy_dtype(entry)  # an undecodable dtype or a truncated file fails now, before any output
            ensure_in_file(entry)
            found.chunks = partial(iter_chunks, entry)
        elif every_value:
            found.array = read_array(entry)
        else:
            indices = shown_indices(entry.shape, options)
            found.array = _shown_values(entry, indices)
            found.complete = indices is None
        entries.append(found)
    return ValuesReport(str(ckpt.path), ckpt.format, entries, options)


def _shown_values(ref: TensorRef, indices: list[list[int]] | None) -> Any:
    """What a (possibly summarised) print shows: nested Python lists when the
    standard library can decode the dtype (no numpy import), else a numpy array."""
    if ref.numel == 0:
        return []
    if peek.can_peek(ref):
        return peek.read_shown(ref, indices if indices is not None else [list(range(n)) for n in ref.shape])
    return read_array(ref) if indices is None else read_indices(ref, indices)


def _logical_entry(ckpt: Checkpoint, weight: Logical, stream: bool) -> ValueEntry:
    """A quantized weight's dequantized values (float32), whole or streamed by row blocks."""
    from paraminspect.errors import CheckpointError
    from paraminspect.quant import dequant

    reason = dequant.undecodable(weight, ckpt.entries)
    if reason is not None:
        raise CheckpointError(f"{weight.name}: cannot dequantize: {reason}", ckpt.path)
    found = ValueEntry(weight.name, dtype="float32", shape=list(weight.shape))
    if stream:
        found.chunks = partial(_logical_chunks, ckpt, weight)
    else:
        found.array = dequant.dequantize(weight, ckpt.entries)
    return found


def _logical_chunks(ckpt: Checkpoint, weight: Logical, n: int) -> Iterator[Any]:
    """The logical values in C order, ``n`` at a time (row blocks re-cut to ``n``)."""
    import numpy as np

    from paraminspect.quant import dequant

    pending: list[Any] = []
    held = 0
    for block in dequant.iter_rows(weight, ckpt.entries):
        pending.append(block.reshape(-1))
        held += block.size
        while held >= n:
            flat = np.concatenate(pending)
            yield flat[:n]
            pending, held = [flat[n:]], flat.size - n
    if held:
        yield np.concatenate(pending)
