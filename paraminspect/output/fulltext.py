"""``print(tensor)`` with every value (``get --full``), streamed in bounded memory.

torch's layout needs one cell width and one number style (fixed or scientific,
whole-number ``3.``) for the whole tensor, and printing.py derives them from
every value as a Python number: ~430 MiB for a 16 MiB float32 tensor, ~27 GiB
for 1 GiB. Here pass 1 reduces the tensor, chunk by chunk with numpy, to the
handful of its values that decide that layout (per sign, the smallest and the
largest magnitude; one value that is not a whole number), and printing.py's own
formatter is built from those alone; pass 2 formats chunk by chunk. So the text
is printing.py's character for character, and memory is bounded by a chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from paraminspect.output.printing import (
    _IMPLIED_DTYPES,
    PrintOptions,
    _Cells,
    _element_formatter,
    _kind,
    _with_suffixes,
    python_values,
    shown_indices,
    summarises,
    tensor_text,
)

if TYPE_CHECKING:
    import numpy as np

# Elements per chunk. Pass 1 reduces with numpy (large chunks are cheap);
# pass 2 turns each element into a Python number and text (~100 bytes each).
SCAN_CHUNK = 1 << 16
TEXT_CHUNK = 1 << 14

_PREFIX = "tensor("


class _Deciders:
    """The few values of a stream of real numbers that decide printing._Cells' layout.

    For floats _Cells looks at the finite non-zero values only: their smallest
    and largest magnitude (scientific or not), whether all are whole numbers,
    and the widest text. On each side of zero, text never narrows as the
    magnitude grows in fixed and ``3.`` notation, and in scientific notation
    widens only at both ends (a third exponent digit), so the smallest and
    largest magnitude of each sign include the widest text. One value that is
    not whole, if any, settles "whole"; being one of the values, it moves
    neither the extremes nor the width. Integers and bool: the minimum and
    maximum hold the widest text.
    """

    def __init__(self, floating: bool) -> None:
        self.floating = floating
        self.extremes: dict[str, Any] = {}  # "pos_lo", "pos_hi", "neg_lo", "neg_hi" or "lo", "hi"
        self.fraction: float | None = None  # a value that is not a whole number

    def _keep(self, key: str, value: Any, smaller: bool) -> None:
        held = self.extremes.get(key)
        if held is None or (value < held if smaller else value > held):
            self.extremes[key] = value

    def add(self, values: np.ndarray) -> None:
        """Fold in a chunk (float64 for floats, the stored dtype otherwise)."""
        import numpy as np

        if not values.size:
            return
        if not self.floating:
            self._keep("lo", values.min().item(), smaller=True)
            self._keep("hi", values.max().item(), smaller=False)
            return
        useful = values[np.isfinite(values) & (values != 0)]
        for sign, part in (("pos", useful[useful > 0]), ("neg", useful[useful < 0])):
            if part.size:
                self._keep(f"{sign}_lo", float(part.min()), smaller=True)
                self._keep(f"{sign}_hi", float(part.max()), smaller=False)
        if self.fraction is None:
            fractional = useful[useful != np.ceil(useful)]
            if fractional.size:
                self.fraction = float(fractional[0])

    def values(self) -> list[Any]:
        found = list(self.extremes.values())
        return found if self.fraction is None else [*found, self.fraction]


def _layout_values(read_chunks: Callable[[int], Iterator[np.ndarray]], kind: str) -> list[Any]:
    """Pass 1: values for printing's formatter that give it the layout of the whole tensor."""
    import numpy as np

    if kind == "exact":
        exact = _Deciders(floating=False)
        for chunk in read_chunks(SCAN_CHUNK):
            exact.add(chunk)
        return exact.values()
    real, imag = _Deciders(floating=True), _Deciders(floating=True)
    for chunk in read_chunks(SCAN_CHUNK):
        if kind == "complex":
            wide = chunk.astype(np.complex128)
            real.add(wide.real)
            imag.add(wide.imag)
        else:
            real.add(chunk.astype(np.float64))
    if kind != "complex":
        return real.values()
    # Zeros are ignored by the formatter, so each part stands alone.
    return [complex(v, 0.0) for v in real.values()] + [complex(0.0, v) for v in imag.values()]


def _shown_values(
    read_chunks: Callable[[int], Iterator[np.ndarray]], shape: tuple[int, ...], options: PrintOptions
) -> np.ndarray:
    """The elements a summarised print shows, picked from the stream (one pass).

    The CLI reads those straight from the file instead; this keeps a streamed
    report right whatever print options a library caller renders it with.
    """
    import numpy as np

    indices = shown_indices(shape, options) or [list(range(n)) for n in shape]
    wanted = np.ravel_multi_index(np.ix_(*indices), shape).reshape(-1)  # ascending: C order
    picked = []
    start = 0
    for chunk in read_chunks(SCAN_CHUNK):
        low, high = np.searchsorted(wanted, [start, start + chunk.size])
        picked.append(chunk[wanted[low:high] - start])
        start += chunk.size
    return np.concatenate(picked).reshape([len(axis) for axis in indices])


def text_pieces(
    read_chunks: Callable[[int], Iterator[np.ndarray]],
    shape: Sequence[int],
    dtype_name: str,
    options: PrintOptions,
) -> Iterator[str]:
    """``str(tensor)`` piece by piece: every value with ``--full``'s infinite threshold.

    ``read_chunks(n)`` yields the elements in C order, ``n`` at a time
    (tensors.iter_chunks); it is called twice (two passes). Joined, the
    pieces equal ``printing.tensor_text`` of the whole tensor.
    """
    shape = tuple(shape)
    if math.prod(shape) == 0:
        yield tensor_text([], dtype_name, options, shape)  # no values needed
        return
    if shape and summarises(shape, options):  # a finite threshold: only the corners are shown
        yield tensor_text(_shown_values(read_chunks, shape, options), dtype_name, options, shape)
        return
    kind = _kind(dtype_name)
    cell, width = _element_formatter(_layout_values(read_chunks, kind), 1, kind, options.precision)
    tail = ""  # the last line so far: the dtype suffix goes after it, or on a new line
    for piece in _body_pieces(read_chunks, shape, dtype_name, cell, width, options):
        yield piece
        cut = piece.rfind("\n")
        tail = piece[cut + 1 :] if cut >= 0 else tail + piece
    suffixes = [] if dtype_name in _IMPLIED_DTYPES else [f"dtype=torch.{dtype_name}"]
    yield _with_suffixes(tail, suffixes, len(_PREFIX), options.linewidth)[len(tail) :] + ")"


def _body_pieces(
    read_chunks: Callable[[int], Iterator[np.ndarray]],
    shape: tuple[int, ...],
    dtype_name: str,
    cell: Callable[[Any], str],
    width: int,
    options: PrintOptions,
) -> Iterator[str]:
    """Pass 2: ``tensor(`` and the nested brackets, one chunk of text at a time.

    Rows (the last dimension) wrap after as many cells as fit the line width;
    between rows, the outermost dimension whose index changes decides how many
    brackets close and reopen, how many blank lines and how deep the indent.
    A row that lies whole in a chunk is formatted by one ``str.format`` call.
    """
    ndim = len(shape)
    if ndim == 0:
        for chunk in read_chunks(1):
            yield _PREFIX + cell(python_values(chunk, dtype_name)[0])
        return
    indent = len(_PREFIX)
    row = shape[-1]
    row_indent = indent + ndim - 1
    per_line = max(1, (options.linewidth - row_indent) // (width + 2))
    wrap = ",\n" + " " * (row_indent + 1)
    spec = cell.spec() if isinstance(cell, _Cells) else None
    field = "{:" + spec + "}" if spec else "{}"
    texts = (lambda values: values) if spec else (lambda values: map(cell, values))
    line_format = ", ".join([field] * per_line).format
    row_format = None
    if row <= TEXT_CHUNK:  # a template per row: one call formats it, wrapped
        full_lines, rest = divmod(row, per_line)
        row_format = wrap.join([", ".join([field] * per_line)] * full_lines + [", ".join([field] * rest)] * bool(rest))
    rows_per_step = [math.prod(shape[d + 1 : -1]) for d in range(ndim - 1)]
    yield _PREFIX + "[" * ndim
    position = 0
    # Whole rows per chunk where they fit, so that rows rarely straddle chunks.
    for chunk in read_chunks(TEXT_CHUNK // row * row or TEXT_CHUNK):
        values = python_values(chunk, dtype_name)
        parts: list[str] = []
        start = 0
        while start < len(values):
            column = position % row
            if column == 0 and position:
                r = position // row
                level = next(d for d, step in enumerate(rows_per_step) if r % step == 0)
                closed = ndim - 1 - level
                parts.append("]" * closed + "," + "\n" * closed + " " * (indent + 1 + level) + "[" * closed)
            elif column and column % per_line == 0:
                parts.append(wrap)
            elif column:
                parts.append(", ")
            if row_format is not None and column == 0 and len(values) - start >= row:
                stop = start + row
                parts.append(row_format.format(*texts(values[start:stop])))
            else:  # up to the end of this line (or row, or chunk)
                stop = min(len(values), start + per_line - column % per_line, start + row - column)
                if stop - start == per_line:
                    parts.append(line_format(*texts(values[start:stop])))
                else:
                    parts.append(", ".join([field] * (stop - start)).format(*texts(values[start:stop])))
            position += stop - start
            start = stop
        yield "".join(parts)
    yield "]" * ndim
