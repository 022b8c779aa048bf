"""render: units, escaping, JSON safety, table layout."""

from __future__ import annotations

import json

import pytest

from paraminspect.output.render import OutputFormat, format_table, human_bytes, human_count, safe_text
from paraminspect.output.report import Column, Kind, Table


@pytest.mark.parametrize(
    "n, text",
    [(0, "0"), (999, "999"), (1234, "1,234"), (12_345, "12.3K"), (3_400_000, "3.4M"), (7_000_000_000, "7.0B")],
)
def test_human_count(n: int, text: str) -> None:
    assert human_count(n) == text


@pytest.mark.parametrize(
    "n, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (1 << 30, "1.0 GiB")]
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_safe_text_escapes_control_characters_only() -> None:
    assert safe_text("0.block 1.bias") == "0.block 1.bias"
    assert safe_text("a\x1b[2Jb\nc\td") == "a\\x1b[2Jb\\nc\\td"
    assert safe_text("caf\u00e9") == "caf\u00e9"


TABLE = Table(
    [Column("name", "name", Kind.NAME), Column("v", "value", Kind.NUMBER), Column("n", "bytes", Kind.BYTES)],
    [{"name": "x", "v": float("nan"), "n": 2048}, {"name": "y", "v": float("-inf"), "n": 1}],
    {"name": "total", "n": 2049},
    {"rows": [{"v": float("nan")}, {"v": float("inf")}, {"v": float("-inf")}, {"v": 1.5}]},
)


def test_json_writes_non_finite_numbers_as_strings() -> None:
    assert json.loads(format_table(TABLE, OutputFormat.json)) == {
        "rows": [{"v": "nan"}, {"v": "inf"}, {"v": "-inf"}, {"v": 1.5}]
    }


def test_table_has_a_rule_above_the_total() -> None:
    assert format_table(TABLE, OutputFormat.table) == (
        "name      value    bytes\n"
        "------  -------  -------\n"
        "x           nan  2.0 KiB\n"
        "y          -inf      1 B\n"
        "------  -------  -------\n"
        "total            2.0 KiB\n"
    )


def test_csv_has_exact_numbers() -> None:
    assert format_table(TABLE, OutputFormat.csv) == "name,v,n\nx,nan,2048\ny,-inf,1\n"


def test_markdown_escapes_pipes_in_cells() -> None:
    table = Table([Column("name", "name", Kind.NAME), Column("n", "bytes", Kind.BYTES)], [{"name": "a|b", "n": 3}])
    assert format_table(table, OutputFormat.markdown) == (
        "| name   |   bytes |\n|--------|---------|\n| a\\|b   |     3 B |\n"
    )


def test_empty_table_keeps_its_header() -> None:
    table = Table([Column("name", "name", Kind.NAME)], [])
    assert format_table(table, OutputFormat.table) == "name\n------\n"
