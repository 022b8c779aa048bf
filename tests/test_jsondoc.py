"""output.jsondoc writes exactly the text of json.dumps(_json_safe(doc), indent=2),
whatever it encodes or joins itself."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paraminspect.output import jsondoc
from paraminspect.output.jsondoc import json_document
from paraminspect.output.text import _json_safe

_AWKWARD = ["", "a", 'q"uote', "back\\slash", "line\nbreak", "tab\t", "\x00nul", "é", "日本", "\U0001f600", "\ud800"]


def _reference(doc: object) -> str:
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


@pytest.mark.parametrize(
    "doc",
    [
        {"tokens": [_AWKWARD[i % len(_AWKWARD)] + str(i) for i in range(1000)]},
        {"a": {"b": [{"c": list(range(-500, 500))}, [str(i) for i in range(70)]]}},
        [list(range(70)), [], {}, [[]], {"x": [1, 2]}, [{}], {"": {}}],
        list(range(200)),
        {"ints": [2**63, -(2**64), 0] * 40, "short": ["a"] * 64},
        {"mixed": [1, "a"] * 100, "bools": [True, False] * 100, "nones": [None] * 100},
        {"floats": [0.1, -0.0, 1e300, 5e-324, 1.0], "one": 2.5, "t": True, "f": False, "n": None},
        # Rows, as shapes and stats print them.
        {
            "tensors": [
                {"name": f"l.{i}.w", "dtype": "f16", "shape": [2, i], "numel": 2 * i, "tied_to": None}
                for i in range(50)
            ]
        },
        "just a string",
        17,
        [],
    ],
)
def test_the_text_is_json_dumps_indent_2(doc: object) -> None:
    assert json_document(doc) == _reference(doc)


def test_what_is_not_plain_json_is_made_safe_first() -> None:
    """NaN/inf as strings, huge ints as text, bytes as hex, tuples as lists, other keys
    as str() of them, numpy scalars: each where it sits, as ``_json_safe`` makes it."""
    import numpy as np

    doc: dict[str, Any] = {
        "values": [float("nan"), float("inf"), -float("inf"), 1.5] * 30,
        "big": 10**5000,
        "raw": b"\x00\xff",
        "pair": (1, (2, "x")),
        "keys": {1: "a", False: "b", None: "c", 2.5: [float("nan")]},
        "numpy": [np.float32(0.5), np.int64(3), np.bool_(True), np.float64("nan")],
        "deep": {"a": [{"b": (float("inf"), {"c": [b"\x01"]})}]},
    }
    assert json_document(doc) == _reference(_json_safe(doc))
    assert json.loads(json_document(doc))["values"][:4] == ["nan", "inf", "-inf", 1.5]


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.binary(max_size=3)
)
_keys = st.text(max_size=4) | st.integers(-3, 3) | st.booleans() | st.none()
_docs = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
        | st.dictionaries(_keys, inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_docs)
def test_any_document_matches_json_dumps_of_the_safe_copy(doc: object) -> None:
    assert json_document(doc) == _reference(_json_safe(doc))


def test_long_plain_lists_are_joined_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = jsondoc._encode

    def spy(value: object, depth: int) -> str:
        nonlocal calls
        calls += 1
        return real(value, depth)

    monkeypatch.setattr(jsondoc, "_encode", spy)
    doc = {"vocab": [f"tok{i}" for i in range(151_000)], "merges": [f"a b{i}" for i in range(150_000)], "n": 3}
    start = time.perf_counter()
    text = json_document(doc)
    took = time.perf_counter() - start
    assert calls == 4 and text == _reference(doc)  # the document, its two lists and 3: no item
    assert took < 5  # a hang guard, not a benchmark (benchmarks/bench_gguf.py times meta -f json)


def test_floats_keep_their_exact_repr() -> None:
    values = [math.pi, 1 / 3, 2.0**-1074, 1.7976931348623157e308]
    assert json.loads(json_document({"v": values}))["v"] == values
