"""Every command on every matrix file, held to the reference readers (issue 11).

Each test is one (command, case): ``test_get[dcp-state-dict]`` fails alone when
``get`` misreads a DCP state dict. Expected values come from torch /
safetensors / dcp_to_torch_save (tests/matrix/reference.py), never from
paraminspect. Commands run in-process through the CLI with JSON output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from paraminspect import open_checkpoint
from paraminspect.data.arrays import read_array
from tests.conftest import run_cli
from tests.matrix.conftest import CASES, SLOW_CASES, Matrix
from tests.matrix.reference import Flat, changed_elements, dtype_name, raw, read, ties

ALL = [*CASES, *(pytest.param(c, marks=pytest.mark.slow) for c in SLOW_CASES)]
NO_SAFETENSORS = {torch.complex128}  # no safetensors dtype: convert must refuse, not drop
REL = 1e-9


def _json(*args: str | Path) -> tuple[int, Any]:
    result = run_cli(*args)
    assert result.code in (0, 1), result.err
    return result.code, json.loads(result.out)


def _groups(rows: list[dict[str, Any]]) -> set[frozenset[str]]:
    """Tie groups from ``shapes``/``stats`` rows: each tied name points at its group's first."""
    groups: dict[str, set[str]] = {}
    for row in rows:
        groups.setdefault(row["tied_to"] or row["name"], set()).add(row["name"])
    return {frozenset(g) for g in groups.values() if len(g) > 1}


@pytest.mark.parametrize("case_id", ALL)
def test_shapes(matrix: Matrix, case_id: str) -> None:
    """Names, dtypes, shapes and ties (same storage, offset, shape, stride per torch)."""
    case = matrix.case(case_id)
    expected = matrix.reference(case.path)
    _, report = _json("shapes", "-f", "json", "--root", "", case.path)
    got = {row["name"]: (row["dtype"], row["shape"]) for row in report["tensors"]}
    assert got == {n: (dtype_name(t), list(t.shape)) for n, t in expected.items()}
    assert _groups(report["tensors"]) == ties(expected)


def _values(tensor: torch.Tensor) -> Any:
    """What ``get -f json`` must print: every value exactly (complex as [re, im])."""
    if tensor.is_complex():
        return torch.view_as_real(tensor.to(torch.complex128)).tolist()
    if tensor.is_floating_point():
        return tensor.to(torch.float64).tolist()
    return tensor.tolist()


def _strings_for_specials(value: Any) -> Any:
    if isinstance(value, list):
        return [_strings_for_specials(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


@pytest.mark.parametrize("case_id", ALL)
def test_get(matrix: Matrix, case_id: str) -> None:
    """``get`` values (CLI JSON) and the library's arrays, bit-exact against the reference."""
    case = matrix.case(case_id)
    expected = matrix.reference(case.path)
    _, report = _json("get", "-f", "json", "--root", "", case.path, *expected)
    got = {e["name"]: e["values"] for e in report["entries"] if e["kind"] == "tensor"}
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name] == _strings_for_specials(_values(tensor)), name
    ckpt = open_checkpoint(case.path)
    for name, tensor in expected.items():
        assert read_array(ckpt.tensors[name]).tobytes() == raw(tensor), name


def _stats(tensor: torch.Tensor) -> dict[str, Any]:
    """The reference statistics in float64 torch, with paraminspect's documented rules
    (README, paraminspect/inspect/stats.py): NaN/Inf counted apart and left out of the rest,
    std with divisor n-1, complex by modulus with no order."""
    out: dict[str, Any] = dict.fromkeys(("min", "max", "mean", "std", "mean_abs", "l2"))
    if tensor.is_complex():
        re, im = (part.to(torch.float64).reshape(-1) for part in (tensor.real, tensor.imag))
        nan = re.isnan() | im.isnan()
        finite = re.isfinite() & im.isfinite()
        out["posinf"] = int((~nan & ((re == math.inf) | (im == math.inf))).sum())
        out["neginf"] = int((~nan & ((re == -math.inf) | (im == -math.inf))).sum())
        modulus = torch.complex(re[finite], im[finite]).abs()
        zeros = int((tensor == 0).sum())
    else:
        x = tensor.to(torch.float64).reshape(-1)
        nan, finite = x.isnan(), x.isfinite()
        out["posinf"], out["neginf"] = int((x == math.inf).sum()), int((x == -math.inf).sum())
        x = x[finite]
        modulus = x.abs()
        zeros = int((x == 0).sum())
        if x.numel():
            values = tensor.reshape(-1)[finite].tolist()  # exact for 64-bit integers
            out.update(min=min(values), max=max(values), mean=x.mean().item())
            out["std"] = x.std().item() if x.numel() > 1 else None
    if modulus.numel():
        out.update(mean_abs=modulus.mean().item(), l2=modulus.norm().item())
    out.update(nan=int(nan.sum()), zeros=zeros)
    return out


def _close(got: Any, want: Any) -> bool:
    if want is None or isinstance(want, (bool, int)) or got is None:
        return bool(got == want)
    return abs(got - want) <= REL * abs(want)


@pytest.mark.parametrize("case_id", ALL)
def test_stats(matrix: Matrix, case_id: str) -> None:
    """``stats`` within 1e-9 relative of float64 torch; counts and integer extremes exact."""
    case = matrix.case(case_id)
    expected = matrix.reference(case.path)
    _, report = _json("stats", "-f", "json", "--root", "", case.path)
    rows = {row["name"]: row for row in report["tensors"]}
    assert set(rows) == set(expected) - {s["name"] for s in report["skipped"]}
    assert all(expected[s["name"]].is_complex() for s in report["skipped"]), report["skipped"]
    for name, row in rows.items():
        want = _stats(expected[name])
        bad = {k: (row[k], v) for k, v in want.items() if not _close(row[k], v)}
        assert not bad, f"{name}: {bad}"


@pytest.mark.parametrize("case_id", ALL)
def test_diff_against_itself(matrix: Matrix, case_id: str) -> None:
    case = matrix.case(case_id)
    code, report = _json("diff", "-f", "json", "--root", "", case.path, case.path)
    assert code == 0 and report["same"], [e for e in report["entries"] if e["status"] != "equal"]
    assert set(matrix.reference(case.path)) <= {e["name"] for e in report["entries"]}


@pytest.mark.parametrize("case_id", ALL)
def test_diff_one_element_changed(matrix: Matrix, case_id: str) -> None:
    """Against the writer's own re-save with one element changed: exactly that element."""
    case = matrix.case(case_id)
    assert case.changed is not None
    expected = changed_elements(matrix.reference(case.path), matrix.reference(case.changed))
    assert len(expected) >= 1 and all(count == 1 for count, _ in expected.values()), expected
    code, report = _json("diff", "-f", "json", "--root", "", case.path, case.changed)
    assert code == 1 and not report["same"]
    differing = {e["name"]: e for e in report["entries"] if e["status"] != "equal"}
    assert {n: (e["status"], e.get("differing"), e.get("index")) for n, e in differing.items()} == {
        n: ("values_changed", count, index) for n, (count, index) in expected.items()
    }


def _storage_groups(tensors: Flat) -> list[set[str]]:
    groups: dict[int, set[str]] = {}
    for name, t in tensors.items():
        if t.numel():
            groups.setdefault(t.untyped_storage().data_ptr(), set()).add(name)
    return list(groups.values())


def _written(output: Path, expected: Flat, drop_unknown: bool, *args: str | Path) -> Flat | None:
    """Run an edit writing ``output`` from a file whose reference is ``expected``; None when
    the content cannot go there (and the edit refused, naming it)."""
    extra = ("--drop-unknown",) if drop_unknown else ()
    result = run_cli(*args, *extra)
    unwritable = sorted(n for n, t in expected.items() if t.dtype in NO_SAFETENSORS)
    if output.suffix == ".safetensors" and unwritable:
        assert result.code == 2 and unwritable[0] in result.err, (result.code, result.err)
        assert not output.exists()
        return None
    assert result.code == 0, result.err
    written = read(output)
    # Bytes may be shared in the output only where the source shared them.
    source = _storage_groups(expected)
    for group in _storage_groups(written) if output.suffix == ".pt" else []:
        assert any(group <= g for g in source), f"{sorted(group)} share bytes, their sources do not"
    assert ties(written) == ties(expected)
    return written


def _same(written: Flat, expected: Flat) -> None:
    assert set(written) == set(expected)
    for name, tensor in expected.items():
        got = written[name]
        assert (dtype_name(got), tuple(got.shape)) == (dtype_name(tensor), tuple(tensor.shape)), name
        assert raw(got) == raw(tensor), name


@pytest.mark.parametrize("target", [".safetensors", ".pt"])
@pytest.mark.parametrize("case_id", ALL)
def test_convert(matrix: Matrix, case_id: str, target: str, tmp_path: Path) -> None:
    """``convert`` to each format: the output, read by torch/safetensors, is the input's reference."""
    case = matrix.case(case_id)
    expected = matrix.reference(case.path)
    output = tmp_path / f"out{target}"
    written = _written(output, expected, case.drop_unknown, "convert", case.path, output)
    if written is not None:
        _same(written, expected)


@pytest.mark.parametrize("target", [".safetensors", ".pt"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("case_id", ALL)
def test_cast(matrix: Matrix, case_id: str, dtype: str, target: str, tmp_path: Path) -> None:
    """``cast``: floating tensors bit-exact to torch's ``.to(dtype)``, the rest unchanged."""
    case = matrix.case(case_id)
    source = matrix.reference(case.path)
    expected = {n: t.to(getattr(torch, dtype)) if t.is_floating_point() else t for n, t in source.items()}
    output = tmp_path / f"out{target}"
    args = ("cast", case.path, "--dtype", dtype, "-o", output)
    written = _written(output, source, case.drop_unknown, *args)
    if written is not None:
        _same(written, expected)


@pytest.mark.parametrize("case_id", ALL)
def test_check(matrix: Matrix, case_id: str, tmp_path: Path) -> None:
    """``check`` passes a spec made from the reference, and fails it with one name removed."""
    case = matrix.case(case_id)
    expected = matrix.reference(case.path)
    items = [{"name": n, "dtype": dtype_name(t), "shape": list(t.shape)} for n, t in expected.items()]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"tensors": items}))
    result = run_cli("check", "--root", "", case.path, "--expect", spec)
    assert result.code == 0, result.out + result.err
    spec.write_text(json.dumps({"tensors": items[1:]}))
    assert run_cli("check", "--root", "", case.path, "--expect", spec, "-q").code == 1
