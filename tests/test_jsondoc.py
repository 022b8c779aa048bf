"""output.jsondoc writes exactly the text of json.dumps(indent=2), whatever it joins itself."""

from __future__ import annotations

import json
import time

import pytest

from paraminspect.output import jsondoc
from paraminspect.output.jsondoc import LONG_LIST, json_document

_AWKWARD = ["", "a", 'q"uote', "back\\slash", "line\nbreak", "tab\t", "\x00nul", "é", "日本", "\U0001f600", "\ud800"]


def _reference(doc: object) -> str:
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


@pytest.mark.parametrize(
    "doc",
    [
        {"tokens": [_AWKWARD[i % len(_AWKWARD)] + str(i) for i in range(1000)]},
        {"a": {"b": [{"c": list(range(-500, 500))}, [str(i) for i in range(LONG_LIST + 1)]]}},
        [list(range(LONG_LIST + 1)), [], {}, [[]], {"x": [1, 2]}],
        list(range(2 * LONG_LIST)),
        {"ints": [2**63, -(2**64), 0] * 40, "short": ["a"] * LONG_LIST},
        {"mixed": [1, "a"] * 100, "bools": [True, False] * 100, "nones": [None] * 100},
    ],
)
def test_the_text_is_json_dumps_indent_2(doc: object) -> None:
    assert json_document(doc) == _reference(doc)


def test_long_lists_are_joined_not_walked_by_the_indenting_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    joined: list[int] = []
    real = jsondoc._joined

    def spy(items: list[object], depth: int) -> str:
        joined.append(len(items))
        return real(items, depth)

    monkeypatch.setattr(jsondoc, "_joined", spy)
    doc = {"vocab": [f"tok{i}" for i in range(151_000)], "merges": [f"a b{i}" for i in range(150_000)], "n": 3}
    start = time.perf_counter()
    text = json_document(doc)
    took = time.perf_counter() - start
    assert joined == [151_000, 150_000] and text == _reference(doc)
    assert took < 5  # a hang guard, not a benchmark (benchmarks/bench_gguf.py times meta -f json)


def test_a_string_in_the_file_cannot_pass_for_a_placeholder() -> None:
    """The token is drawn per document: a string shaped like a placeholder is only a string."""
    doc = {"vocab": ["paraminspect-list-00000000000000000000000000000000-0"] + ["x"] * 100}
    assert json_document(doc) == _reference(doc)
    assert json.loads(json_document(doc)) == doc


def test_nan_and_infinities_are_strings_as_before() -> None:
    doc = {"values": [float("nan"), float("inf"), -float("inf"), 1.5] * 30}
    expected = {"values": ["nan", "inf", "-inf", 1.5] * 30}
    assert json_document(doc) == _reference(expected)
