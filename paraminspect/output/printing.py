"""Array values as text, the way ``print(tensor)`` shows them in torch.

People compare what paraminspect prints with what they saw in a notebook, so
the layout follows torch's print options (precision 4, threshold 1000,
edgeitems 3, linewidth 80): past the threshold only the first and last
``edgeitems`` along each dimension are shown around ``...``; floats switch to
scientific notation when their magnitudes span more than 1000x, exceed 1e8 or
fall below 1e-4; floats that are all whole numbers print as ``3.``; a
non-default dtype is named in a ``dtype=torch.X`` suffix. Written from those
observed rules, not from torch's code; tests compare with ``str(tensor)``.

Pure functions of values (nested lists of Python numbers, or numpy arrays):
no I/O. numpy is imported lazily, and not at all for Python numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paraminspect import dtypes

if TYPE_CHECKING:
    import numpy as np

# Dtypes torch leaves out of the ``dtype=`` suffix (with its default float32).
_IMPLIED_DTYPES = frozenset({"float32", "complex64", "int64", "bool"})


@dataclass(frozen=True)
class PrintOptions:
    """torch's print options; ``threshold=math.inf`` prints every value (``--full``)."""

    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80


DEFAULT_OPTIONS = PrintOptions()


def summarises(shape: Sequence[int], options: PrintOptions) -> bool:
    """Whether a tensor of ``shape`` is shown with ``...`` rather than in full."""
    return math.prod(shape) > options.threshold


def shown_indices(shape: Sequence[int], options: PrintOptions) -> list[list[int]] | None:
    """Per dimension, the indices a summarised print shows (None: everything is shown).

    Lets a reader decode only these elements of a huge tensor, not all of it.
    """
    if not summarises(shape, options):
        return None
    edge = options.edgeitems
    return [[*range(edge), *range(n - edge, n)] if n > 2 * edge else list(range(n)) for n in shape]


def corners(array: np.ndarray, options: PrintOptions) -> np.ndarray:
    """The part of ``array`` a summarised print shows (the array itself otherwise)."""
    import numpy as np

    indices = shown_indices(array.shape, options)
    if indices is None or array.ndim == 0:
        return array
    return array[np.ix_(*indices)]


def _kind(dtype_name: str) -> str:
    if dtype_name in dtypes.GGML_BY_NAME:  # GGUF quant types: dequantized to float32
        return "float"
    if dtype_name.startswith("complex"):
        return "complex"
    if "float" in dtype_name:
        return "float"
    return "exact"  # integers and bool: printed as Python prints them


class _Cells:
    """Formats single numbers with one shared width, as torch does per tensor.

    Works on plain Python numbers: the few values a summarised print shows can
    then come straight from the file without importing numpy (see peek.py).
    """

    def __init__(self, shown: list[Any], floating: bool, precision: int) -> None:
        self.floating = floating
        self.precision = precision
        self.sci = False
        self.whole = True
        self.width = 1
        if not floating:
            self.width = max((len(str(v)) for v in shown), default=1)
            return
        useful = [v for v in shown if v != 0 and math.isfinite(v)]
        if not useful:
            return
        magnitudes = [abs(v) for v in useful]
        low, high = min(magnitudes), max(magnitudes)
        self.whole = all(v == math.ceil(v) for v in useful)
        self.sci = high / low > 1000.0 or high > 1.0e8 or low < 1.0e-4
        if self.sci:
            self.width = max(len(f"{v:.{precision}e}") for v in useful)
        elif self.whole:
            self.width = max(len(f"{v:.0f}") + 1 for v in useful)
        else:
            self.width = max(len(f"{v:.{precision}f}") for v in useful)

    def __call__(self, value: Any) -> str:
        if not self.floating:
            text = str(value)
        elif self.sci:
            text = f"{value:{self.width}.{self.precision}e}"
        elif self.whole:
            text = f"{value:.0f}" + ("." if math.isfinite(value) else "")
        else:
            text = f"{value:.{self.precision}f}"
        return text.rjust(self.width)

    def spec(self) -> str | None:
        """A format spec giving exactly ``self(value)``, where one exists (fixed and
        scientific floats): fulltext.py then formats a whole row in one call."""
        if not self.floating or (self.whole and not self.sci):
            return None  # bool's True/False and the whole-number "3." have no spec
        return f"{self.width}.{self.precision}{'e' if self.sci else 'f'}"


def _flat(values: Any, ndim: int) -> list[Any]:
    if ndim == 0:
        return [values]
    for _ in range(ndim - 1):
        values = [v for row in values for v in row]
    return list(values)


def _element_formatter(shown: Any, ndim: int, kind: str, precision: int) -> tuple[Callable[[Any], str], int]:
    """A function from one Python number to its text, and the width it takes."""
    flat = _flat(shown, ndim)
    if kind != "complex":
        cells = _Cells(flat, kind == "float", precision)
        return cells, cells.width
    real = _Cells([v.real for v in flat], True, precision)
    imag = _Cells([v.imag for v in flat], True, precision)

    def complex_cell(value: complex) -> str:
        imag_text = (imag(value.imag) + "j").lstrip()
        sign = "" if imag_text[0] in "+-" else "+"
        return real(value.real) + sign + imag_text

    return complex_cell, real.width + imag.width + 1


def python_values(array: np.ndarray, dtype_name: str) -> Any:
    """Nested lists of Python numbers (bfloat16/float8 widened exactly to float)."""
    import numpy as np

    kind = _kind(dtype_name)
    if kind == "float":
        return array.astype(np.float64).tolist()
    if kind == "complex":
        return array.astype(np.complex128).tolist()
    return array.tolist()


def _body(
    values: Any, cut: Sequence[bool], indent: int, cell: Callable[[Any], str], width: int, options: PrintOptions
) -> str:
    """The bracketed text of one (sub)tensor; ``cut[d]`` marks dimensions shown around ``...``."""
    if not cut:
        return cell(values)
    half = options.edgeitems
    if len(cut) == 1:
        items = [cell(v) for v in values]
        if cut[0]:
            items = [*items[:half], " ...", *items[half:]]
        per_line = max(1, (options.linewidth - indent) // (width + 2))
        lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    parts = [_body(row, cut[1:], indent + 1, cell, width, options) for row in values]
    if cut[0]:
        parts = [*parts[:half], "...", *parts[half:]]
    return "[" + ("," + "\n" * (len(cut) - 1) + " " * (indent + 1)).join(parts) + "]"


def tensor_text(
    values: Any, dtype_name: str, options: PrintOptions = DEFAULT_OPTIONS, shape: Sequence[int] | None = None
) -> str:
    """``str(tensor)`` for a tensor of ``dtype_name`` and ``shape``.

    ``values`` is a numpy array of the whole tensor, or nested lists of Python
    numbers (:func:`python_values`): the whole tensor, or only what
    :func:`shown_indices` selects when the print is summarised.
    """
    if shape is None:
        shape = values.shape
    full_shape = tuple(shape)
    prefix = "tensor("
    indent = len(prefix)
    suffixes: list[str] = []
    if math.prod(full_shape) == 0:
        body = "[]"
        if len(full_shape) != 1:
            suffixes.append(f"size={full_shape}")
        if dtype_name != "float32":
            suffixes.append(f"dtype=torch.{dtype_name}")
    else:
        summarised = summarises(full_shape, options)
        if hasattr(values, "shape"):  # a numpy array: keep what is shown, as Python numbers
            shown = corners(values, options) if summarised and values.shape == full_shape else values
            values = python_values(shown, dtype_name)
        cut = [summarised and n > 2 * options.edgeitems for n in full_shape]
        cell, width = _element_formatter(values, len(full_shape), _kind(dtype_name), options.precision)
        body = _body(values, cut, indent, cell, width, options)
        if dtype_name not in _IMPLIED_DTYPES and dtype_name not in dtypes.GGML_BY_NAME:
            suffixes.append(f"dtype=torch.{dtype_name}")
    return _with_suffixes(prefix + body, suffixes, indent, options.linewidth) + ")"


def _with_suffixes(text: str, suffixes: list[str], indent: int, linewidth: int) -> str:
    # torch measures the last line from one past the newline (or +2 without one).
    used = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if used + len(suffix) + 2 > linewidth:
            text += ",\n" + " " * indent + suffix
            used = indent + len(suffix)
        else:
            text += ", " + suffix
            used += len(suffix) + 2
    return text


def json_values(array: np.ndarray, dtype_name: str) -> Any:
    """Every value as nested lists of exact JSON numbers.

    Floats are widened exactly to float64 (what ``tensor.tolist()`` gives);
    NaN/Inf become ``"nan"``/``"inf"``/``"-inf"``; a complex number is a
    ``[real, imag]`` pair; bool stays bool and integers stay exact.
    """
    import numpy as np

    kind = _kind(dtype_name)
    if kind == "exact":
        return array.tolist()
    if kind == "complex":
        array = np.stack([array.real, array.imag], axis=-1)
    wide = array.astype(np.float64)
    values = wide.tolist()
    if bool(np.isfinite(wide).all()):
        return values
    return _strings_for_nonfinite(values)


def _strings_for_nonfinite(values: Any) -> Any:
    if isinstance(values, list):
        return [_strings_for_nonfinite(v) for v in values]
    if math.isnan(values):
        return "nan"
    if math.isinf(values):
        return "inf" if values > 0 else "-inf"
    return values


def json_value_pieces(
    read_chunks: Callable[[int], Iterator[np.ndarray]], shape: Sequence[int], dtype_name: str, budget: int = 1 << 16
) -> Iterator[str]:
    """The JSON text of every value (nested lists of ``shape``), piece by piece.

    ``read_chunks(n)`` yields the tensor's elements in C order, ``n`` at a time
    (tensors.iter_chunks). Memory stays bounded by ``budget`` elements whatever
    the tensor's size: whole sub-tensors ("units") of at most ``budget`` values
    are encoded at once, and the brackets of the dimensions above them are
    written as positions roll over.
    """
    import json

    import numpy as np

    shape = tuple(shape)
    if math.prod(shape) == 0 and shape:
        yield json.dumps(np.zeros(shape).tolist())
        return
    ndim = len(shape)
    level = next(k for k in range(ndim + 1) if math.prod(shape[k:]) <= budget)
    inner = shape[level:]
    unit = math.prod(inner)
    group = math.prod(shape[level - 1 :]) if level else unit  # units sharing one parent list
    spans = [math.prod(shape[k:]) for k in range(ndim)]
    yield "[" * level
    position = 0
    for chunk in read_chunks(max(1, budget // unit) * unit):
        start = 0
        while start < len(chunk):
            stop = min(len(chunk), start + group - position % group)
            if position:
                rolled = sum(1 for span in spans[:level] if position % span == 0)
                yield "]" * rolled + ", " + "[" * rolled
            units = json_values(chunk[start:stop].reshape(-1, *inner), dtype_name)
            yield json.dumps(units, allow_nan=False)[1:-1]
            position += stop - start
            start = stop
    yield "]" * level
