"""Work spread over threads (diff, stats): same results, order, errors and context as one thread."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from paraminspect import limits, open_checkpoint, parallel
from paraminspect.compare.accumulate import ValueStats
from paraminspect.compare.elementwise import Comparer, compare_pairs
from paraminspect.compare.tolerance import Tolerance
from paraminspect.model import TensorRef
from tests.conftest import run_cli


def _files(tmp_path: Path) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(0)
    a = {f"t{i}": torch.randn(64 + i, generator=g) for i in range(12)}
    a["ints"] = torch.arange(50, dtype=torch.int64)
    a["tied"] = a["t3"]
    b = {k: v.clone() for k, v in a.items()}
    b["t2"][5] += 1  # one element
    b["t7"] *= 1.01  # every element
    b["ints"][-1] = -1
    b["t9"] = b["t9"].to(torch.bfloat16)  # a cast
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt"


def test_threads_give_the_one_thread_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _files(tmp_path)
    many = run_cli("diff", a, b, "--format", "json", "--all")
    monkeypatch.setattr(parallel, "THREADS", 1)
    one = run_cli("diff", a, b, "--format", "json", "--all")
    assert (many.code, many.err) == (one.code, one.err) == (1, "")
    assert many.out == one.out
    entries = {e["name"]: e for e in json.loads(many.out)["entries"]}
    assert entries["t2"]["differing"] == 1 and entries["t2"]["index"] == [5]
    assert entries["t7"]["differing"] == 71
    assert entries["ints"]["max_abs_diff"] == 50 and entries["t9"]["status"] == "dtype_changed"
    assert entries["t0"]["status"] == "equal"
    renamed = {"name": "tied", "a_name": "tied", "b_name": "tied"}
    assert entries["tied"] == {**entries["t3"], **renamed}  # a tied pair: read once, reported for both names


def _pairs(tmp_path: Path) -> list[tuple[TensorRef, TensorRef]]:
    a, b = (open_checkpoint(p) for p in _files(tmp_path))
    return [(a.tensors[n], b.tensors[n]) for n in a.tensors if a.tensors[n].dtype == b.tensors[n].dtype]


def test_results_come_back_in_the_pairs_order(tmp_path: Path) -> None:
    pairs = _pairs(tmp_path)
    sequential = [Comparer(Tolerance()).compare(x, y) for x, y in pairs]
    assert compare_pairs(pairs, Tolerance()) == sequential


def test_an_error_in_one_pair_is_raised_and_later_pairs_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = _pairs(tmp_path)
    started: list[int] = []
    real = Comparer.compare

    def failing(self: Comparer, a: TensorRef, b: TensorRef) -> ValueStats:
        index = next(i for i, p in enumerate(pairs) if p[0] is a)
        started.append(index)
        if index == 1:
            raise OSError(5, "Input/output error")
        time.sleep(0.05)  # the others are slow: the error is seen long before they are all done
        return real(self, a, b)

    monkeypatch.setattr(Comparer, "compare", failing)
    with pytest.raises(OSError, match="Input/output error"):
        compare_pairs(pairs, Tolerance())
    assert len(started) < len(pairs)


def test_workers_see_the_callers_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = _pairs(tmp_path)[:4]
    seen: list[limits.Limits] = []
    monkeypatch.setattr(Comparer, "compare", lambda self, a, b: seen.append(limits.current()) or ValueStats())
    mine = limits.Limits(max_entries=7)
    with limits.using(mine):
        compare_pairs(pairs, Tolerance())
    assert seen == [mine] * 4


def test_stats_on_threads_equal_one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = _files(tmp_path)
    many = run_cli("stats", a, "--format", "json")
    monkeypatch.setattr(parallel, "THREADS", 1)
    one = run_cli("stats", a, "--format", "json")
    assert (many.code, many.err) == (one.code, one.err) == (0, "")
    assert many.out == one.out
    doc = json.loads(many.out)
    assert [t["name"] for t in doc["tensors"]] == [*(f"t{i}" for i in range(12)), "ints", "tied"]
    assert doc["total"]["unique"] == 13  # the tied alias read once


def test_ordered_map_keeps_order_whatever_finishes_first() -> None:
    def slow_first(n: int) -> int:
        time.sleep(0.05 if n == 0 else 0)
        return n * n

    assert parallel.ordered_map(slow_first, range(6)) == [0, 1, 4, 9, 16, 25]
    assert parallel.ordered_map(slow_first, [], threads=4) == []
