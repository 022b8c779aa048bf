"""Output that cannot deceive: reversible escaping, spreadsheet-safe CSV, short tree
values, singular/plural labels. The reference is what torch loads from the file."""

from __future__ import annotations

import codecs
import csv
import io
import json
import random
from pathlib import Path

import torch

from tests.conftest import run_cli

FORMULAS = ['=HYPERLINK("http://x","y")', "+1+cmd", "-2+cmd", "@SUM(A1)", "\tlead", "\rlead"]


def unescape(text: str) -> str:
    """Undo the terminal escaping (``\\\\`` is a backslash, ``\\x1b`` an ESC...)."""
    return codecs.decode(text.encode("ascii", "backslashreplace"), "unicode_escape")


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_escaping_is_reversible_and_a_real_esc_differs_from_its_spelling(tmp_path: Path) -> None:
    names = ["a\x1bb", "a\\x1bb", "c\\\\d", "e\nf", "e\\nf", "caf\u00e9", "plain.weight"]
    path = tmp_path / "names.pt"
    torch.save({n: torch.zeros(1) for n in names}, path)
    loaded = list(torch.load(path, weights_only=True))
    result = run_cli("shapes", path, "-f", "csv")
    assert result.code == 0
    printed = [row[0] for row in _csv_rows(result.out)[1:]]
    assert "\x1b" not in result.out and "\n" not in "".join(printed)
    assert len(set(printed)) == len(loaded)  # no two names print alike
    assert [unescape(p) for p in printed] == loaded
    table = run_cli("shapes", path)
    for name in loaded:
        escaped = name.replace("\\", "\\\\").replace("\x1b", "\\x1b").replace("\n", "\\n")
        assert any(line.startswith(escaped + " ") for line in table.out.splitlines()), escaped


def test_csv_neutralises_formulas_in_names(tmp_path: Path) -> None:
    path = tmp_path / "formula.pt"
    torch.save({n: torch.zeros(2) for n in [*FORMULAS, "ok.weight"]}, path)
    loaded = list(torch.load(path, weights_only=True))
    for command in ("shapes", "stats"):
        result = run_cli(command, path, "-f", "csv")
        assert result.code == 0, result.err
        rows = _csv_rows(result.out)
        cells = [row[0] for row in rows[1:]]
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
        assert [unescape(c[1:] if c.startswith("'") else c) for c in cells] == loaded
        assert cells[-1] == "ok.weight"  # ordinary names stay as they are
    numbers = _csv_rows(run_cli("stats", path, "-f", "csv").out)
    assert numbers[1][numbers[0].index("min")] == "0.0"  # numbers are not text


def test_get_csv_escapes_string_values_and_keeps_negative_numbers(tmp_path: Path) -> None:
    path = tmp_path / "values.pt"
    torch.save({"=w": torch.tensor([-1.5, 2.0]), "note": "=cmd|' /C calc'!A0\x1b[31m\r\nend"}, path)
    loaded = torch.load(path, weights_only=True)
    result = run_cli("get", path, "=w", "note", "-f", "csv")
    assert result.code == 0, result.err
    assert "\x1b" not in result.out and "\r" not in result.out
    rows = _csv_rows(result.out)
    assert rows[1:3] == [["'=w", "[0]", "-1.5"], ["'=w", "[1]", "2.0"]]
    assert [float(r[2]) for r in rows[1:3]] == loaded["=w"].tolist()
    name, index, value = rows[3]
    assert (name, index) == ("note", "")
    assert value.startswith("'=") and unescape(value[1:]) == loaded["note"]


def test_tree_shortens_long_values_json_keeps_them_whole(tmp_path: Path) -> None:
    random.seed(1)
    state = random.getstate()  # (3, 625 ints, None): ~7,000 characters as text
    path = tmp_path / "rng.pt"
    torch.save({"w": torch.zeros(2), "rng": state, "note": "x" * 500, "r": list(range(624))}, path)
    loaded = torch.load(path, weights_only=True)
    assert len(str(loaded["rng"])) > 5000
    result = run_cli("tree", path)
    assert result.code == 0
    lines = result.out.splitlines()
    assert max(map(len, lines)) < 120
    # The tuple holds a tuple, so the tree lists its items: rng.0, rng.1, rng.2.
    assert f"│   ├── 1  = ({len(loaded['rng'][1])} ints)" in lines
    assert "└── r  = [624 ints]" in lines
    assert any(line.endswith("…") and "'xxx" in line for line in lines)
    doc = json.loads(run_cli("tree", path, "-f", "json").out)
    values = {c["name"]: c.get("value") for c in doc["tree"]["children"]}
    rng = next(c for c in doc["tree"]["children"] if c["name"] == "rng")
    assert rng["children"][1]["value"] == list(loaded["rng"][1])  # whole, as torch loads it
    assert (values["note"], values["r"]) == (loaded["note"], loaded["r"])
    get = run_cli("get", path, "rng")  # get shows a value whole
    assert str(loaded["rng"][1][-1]) in get.out


def test_one_tensor_is_singular(tmp_path: Path) -> None:
    path = tmp_path / "one.pt"
    torch.save({"block": {"w": torch.zeros(3)}}, path)
    assert len(torch.load(path, weights_only=True)["block"]) == 1
    assert "total (1 tensor)" in run_cli("shapes", path).out
    assert "total (1 tensor)" in run_cli("stats", path).out
    tree = run_cli("tree", path, "--depth", "1").out
    assert "torch-zip: 1 tensor, 3 params," in tree and "1 tensor folded" in tree
    assert "tensors" not in tree
    torch.save({"s": torch.zeros(())}, tmp_path / "scalar.pt")
    assert "(torch-zip: 1 tensor, 1 param, 4 B)" in run_cli("tree", tmp_path / "scalar.pt").out
    assert "total (1 prefix)" in run_cli("shapes", path, "--by-prefix", "1").out
