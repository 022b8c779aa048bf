"""``diff`` of tensors whose dtype changed (a cast): values compared across dtypes, torch as the oracle."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paraminspect import open_checkpoint
from paraminspect.compare import accumulate
from paraminspect.compare import elementwise as compare
from paraminspect.compare.accumulate import cast_comparable
from paraminspect.compare.diff import Status
from paraminspect.compare.diff import compare as diff_rows
from paraminspect.compare.elementwise import Comparer, compare_tensors
from paraminspect.compare.tolerance import Tolerance
from tests.conftest import run_cli, run_script
from tests.test_diff import _by_name, _json, refuse_data_reads


def _oracle(a: torch.Tensor, b: torch.Tensor, tol: Tolerance) -> dict[str, object]:
    """What diff must report, computed by torch in float64 (the first largest |a - b|)."""
    da, db = a.double(), b.double()
    diff = (da - db).abs()
    close = torch.isclose(da, db, rtol=tol.rtol, atol=tol.atol, equal_nan=tol.equal_nan)
    rel = torch.where(diff == 0, torch.zeros_like(diff), diff / db.abs())
    flat = int(torch.argmax(diff.flatten()))
    index = list(np.unravel_index(flat, a.shape))
    return {
        "differing": int((~close).sum()),
        "max_abs_diff": diff.max().item(),
        "max_rel_diff": rel.max().item(),
        "index": [int(i) for i in index],
        "a_value": da.flatten()[flat].item(),
        "b_value": db.flatten()[flat].item(),
    }


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16, torch.float8_e4m3fn, torch.float8_e5m2], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_fp32_against_its_cast_matches_torch(tmp_path: Path, low: torch.dtype, layout: str) -> None:
    """The common use: `cast --dtype bfloat16`, then diff the original against the cast."""
    torch.manual_seed(3)
    w = torch.randn(48, 40) * 3
    w[0, 0] = 0.0  # 0 against 0: relative difference 0, not NaN
    if layout == "transposed":
        w = w.t()  # a strided view in the .pt: the decode path reads through its strides
    cast = w.to(low)
    torch.save({"w": w}, tmp_path / "a.pt")
    save_file({"w": cast.contiguous()}, tmp_path / "b.safetensors")
    for tol in (Tolerance(), Tolerance(atol=1e-3, rtol=4e-3), Tolerance(0, 0)):
        code, doc = _json(
            tmp_path / "a.pt", tmp_path / "b.safetensors", "--atol", str(tol.atol), "--rtol", str(tol.rtol)
        )
        w_entry = _by_name(doc)["w"]
        assert code == 1 and w_entry["status"] == "dtype_changed" and doc["counts"]["dtype_changed"] == 1
        expected = _oracle(w, cast, tol)
        assert {k: w_entry[k] for k in expected} == expected
        assert w_entry["max_abs_diff"] > 0


def test_equal_integers_of_another_width_differ_in_dtype_only(tmp_path: Path) -> None:
    values = [0, 1, -5, 2**31 - 1, -(2**31)]
    torch.save({"n": torch.tensor(values, dtype=torch.int32)}, tmp_path / "a.pt")
    save_file({"n": torch.tensor(values, dtype=torch.int64)}, tmp_path / "b.safetensors")
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b.safetensors")
    n = _by_name(doc)["n"]
    assert code == 1 and doc["same"] is False
    assert (n["status"], n["differing"], n["max_abs_diff"], n["max_rel_diff"], n["index"]) == (
        "dtype_changed",
        0,
        0,
        0.0,
        None,
    )
    assert run_cli("diff", tmp_path / "a.pt", tmp_path / "b.safetensors", "-q").code == 1  # the dtype differs


def test_integers_compare_exactly_past_float64_precision(tmp_path: Path) -> None:
    """int64 against uint64: float64 would call 2**53 + 1 and 2**53 equal, and -1 and 2**64 - 1 close."""
    a = [2**53 + 1, -1, 2**62 + 1, 7, 2**63 - 1]
    b = [2**53, 2**64 - 1, 2**62 + 1, 7, 2**63 - 1]
    torch.save({"i": torch.tensor(a, dtype=torch.int64)}, tmp_path / "a.pt")
    save_file({"i": torch.tensor(b, dtype=torch.uint64)}, tmp_path / "b.safetensors")
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b.safetensors", "--atol", "100", "--rtol", "1")
    i = _by_name(doc)["i"]
    assert code == 1 and i["status"] == "dtype_changed"
    assert i["differing"] == 2  # exact although a tolerance was given: both sides are integers
    assert (i["index"], i["a_value"], i["b_value"], i["max_abs_diff"]) == ([1], -1, 2**64 - 1, 2**64)


def test_exact_equality_helper_on_signed_against_uint64() -> None:
    signed = np.array([-1, 0, 2**53 + 1, 2**63 - 1, -(2**63)], dtype=np.int64)
    unsigned = np.array([2**64 - 1, 0, 2**53, 2**63 - 1, 2**63], dtype=np.uint64)
    expected = [int(x) == int(y) for x, y in zip(signed, unsigned, strict=True)]
    for x, y in ((signed, unsigned), (unsigned, signed), (signed.astype(np.int8), unsigned)):
        out = np.empty(len(x), bool)
        accumulate._equal_exact(x, y, out)
        assert out.tolist() == [int(p) == int(q) for p, q in zip(x, y, strict=True)]
    assert expected == [False, True, False, True, False]


def test_changed_element_reports_its_index_and_both_values(tmp_path: Path) -> None:
    """An int32 counter saved again as float64 with one entry moved: each value in its own type."""
    a = torch.arange(24, dtype=torch.int32).reshape(4, 6)
    b = a.to(torch.float64)
    b[2, 3] = 15.5
    b[1, 1] = 7.0 + 1e-9  # inside the default tolerance: not differing, but smaller than 0.5
    torch.save({"c": a}, tmp_path / "a.pt")
    torch.save({"c": b}, tmp_path / "b.pt")
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b.pt")
    c = _by_name(doc)["c"]
    assert code == 1 and c["status"] == "dtype_changed"
    assert (c["differing"], c["index"], c["max_abs_diff"]) == (1, [2, 3], 0.5)
    assert c["a_value"] == 15 and isinstance(c["a_value"], int)
    assert c["b_value"] == 15.5
    assert c["max_rel_diff"] == pytest.approx(0.5 / 15.5, rel=1e-15)


def test_exact_table_text_for_a_cast(tmp_path: Path) -> None:
    a = torch.tensor([1.0, 0.1, -3.0, 1000.1])
    b = a.to(torch.bfloat16)
    torch.save({"x": a, "n": torch.tensor([1, 2], dtype=torch.int32), "y": torch.ones(2)}, tmp_path / "a.pt")
    save_file({"x": b, "n": torch.tensor([1, 2]), "y": torch.ones(3, dtype=torch.float16)}, tmp_path / "b.safetensors")
    result = run_cli("diff", tmp_path / "a.pt", tmp_path / "b.safetensors")
    assert (result.code, result.err) == (1, "")
    assert result.out == (
        "status         name    A            B               differing    max abs diff    max rel diff  at\n"
        "-------------  ------  -----------  ------------  -----------  --------------  --------------  ----\n"
        "dtype changed  x       float32 [4]  bfloat16 [4]            2       0.0999756     0.000975595  [3]\n"
        "dtype changed  n       int32 [2]    int64 [2]               0               0               0\n"
        "dtype changed  y       float32 [2]  float16 [3]\n"
        "\n"
        "0 only in A, 0 only in B, 3 dtype changed, 0 shape changed, 0 values changed, 0 equal\n"
    )
    expected = _oracle(a, b, Tolerance())
    assert (expected["max_abs_diff"], expected["index"], expected["differing"]) == (float(a[3]) - 1000, [3], 2)
    assert expected["max_rel_diff"] == pytest.approx(0.000975595, rel=1e-6)


def test_json_entry_for_a_cast(tmp_path: Path) -> None:
    a = torch.tensor([[0.5, 2.0], [3.0, 0.1]])
    torch.save({"x": a}, tmp_path / "a.pt")
    torch.save({"x": a.to(torch.float16)}, tmp_path / "b.pt")
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b.pt")
    assert code == 1
    assert doc["counts"] == {
        "only_in_a": 0,
        "only_in_b": 0,
        "dtype_changed": 1,
        "shape_changed": 0,
        "values_changed": 0,
        "equal": 0,
        "tied_alias": 0,
    }
    delta = float(a[1, 1].double() - a[1, 1].half().double())
    ad, bd = a.double().flatten(), a.half().double().flatten()
    assert doc["entries"] == [
        {
            "name": "x",
            "status": "dtype_changed",
            "a_name": "x",
            "b_name": "x",
            "a": {"kind": "tensor", "dtype": "float32", "shape": [2, 2]},
            "b": {"kind": "tensor", "dtype": "float16", "shape": [2, 2]},
            "differing": 1,
            "max_abs_diff": abs(delta),
            "max_rel_diff": abs(delta) / 0.0999755859375,
            "index": [1, 1],
            "a_value": float(a[1, 1]),
            "b_value": 0.0999755859375,  # 0.1 in float16
            "tied_to": None,
            # The change measures (issue 16), from torch in float64.
            "rel_l2": pytest.approx(float((bd - ad).norm() / ad.norm()), rel=1e-12),
            "cosine": pytest.approx(float(torch.nn.functional.cosine_similarity(ad, bd, dim=0)), rel=1e-12),
            "nmse": pytest.approx(float((bd - ad).square().sum() / ad.square().sum()), rel=1e-12),
            "rel_mean_abs": pytest.approx(float((bd - ad).abs().mean() / ad.abs().mean()), rel=1e-12),
            "frac_differing": 0.25,
        }
    ]
    assert abs(delta) == pytest.approx(2.4415e-05, rel=1e-4)


def test_overflow_in_the_cast_is_an_infinite_difference(tmp_path: Path) -> None:
    torch.save({"x": torch.tensor([65504.0, 70000.0, math.inf])}, tmp_path / "a.pt")
    torch.save({"x": torch.tensor([65504.0, 70000.0, math.inf]).to(torch.float16)}, tmp_path / "b.pt")
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b.pt")
    x = _by_name(doc)["x"]
    assert code == 1 and x["status"] == "dtype_changed"
    # 70000 overflows float16 to inf; inf against inf is equal, as in torch.isclose
    assert (x["differing"], x["max_abs_diff"], x["index"], x["a_value"], x["b_value"]) == (
        1,
        "inf",
        [1],
        70000.0,
        "inf",
    )


def test_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks: statistics must not depend on where chunks start and end."""
    monkeypatch.setattr(compare, "DECODE_ELEMENTS", 7)
    chunks: list[int] = []
    original = compare.iter_chunks

    def counting(ref: object, size: int) -> object:
        for chunk in original(ref, size):  # type: ignore[arg-type]
            chunks.append(len(chunk))
            yield chunk

    monkeypatch.setattr(compare, "iter_chunks", counting)
    torch.manual_seed(4)
    a = torch.randn(23, 9, dtype=torch.float64) * 100
    b = a.to(torch.float32)
    b.view(-1)[150] += 1.25  # in the 22nd chunk of 7
    torch.save({"t": a}, tmp_path / "a.pt")
    torch.save({"t": b}, tmp_path / "b.pt")
    tol = Tolerance(atol=1e-6, rtol=1e-7)
    rows = diff_rows(open_checkpoint(tmp_path / "a.pt"), open_checkpoint(tmp_path / "b.pt"), tolerance=tol)
    assert rows[0].status is Status.DTYPE and rows[0].stats is not None
    stats, expected = rows[0].stats, _oracle(a, b, tol)
    assert (stats.differing, stats.index, stats.a_value, stats.b_value) == (
        expected["differing"],
        [16, 6],
        expected["a_value"],
        expected["b_value"],
    )
    assert (stats.max_abs, stats.max_rel) == (expected["max_abs_diff"], expected["max_rel_diff"])
    assert len(chunks) == 2 * math.ceil(207 / 7) and max(chunks) == 7  # both sides, every chunk decoded


def test_structure_reads_no_data_of_a_cast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save({"w": torch.ones(100), "n": torch.arange(3)}, tmp_path / "a.pt")
    save_file({"w": torch.ones(100, dtype=torch.bfloat16), "n": torch.arange(3, dtype=torch.int32)}, tmp_path / "b.st")

    refuse_data_reads(monkeypatch)
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b.st", "--structure")
    assert code == 1 and doc["counts"]["dtype_changed"] == 2
    assert all(e["differing"] is None and e["max_abs_diff"] is None for e in doc["entries"])
    trapped = run_cli("diff", tmp_path / "a.pt", tmp_path / "b.st")  # the trap is live (exit 3)
    assert trapped.code == 3 and "tensor data was read" in trapped.err


def _handmade_safetensors(path: Path, dtype: str, shape: list[int], nbytes: int) -> Path:
    header = json.dumps({"x": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(nbytes))
    return path


def test_uncomparable_pairs_keep_empty_statistics(tmp_path: Path) -> None:
    """Different shapes, complex against real, and dtypes that cannot be decoded: no values read."""
    torch.save(
        {"x": torch.zeros(8), "z": torch.zeros(8, dtype=torch.complex64), "s": torch.zeros(4)}, tmp_path / "a.pt"
    )
    save_file({"x": torch.zeros(8), "z": torch.zeros(8), "s": torch.zeros(2, 2, dtype=torch.float16)}, tmp_path / "b")
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b")
    entries = _by_name(doc)
    assert code == 1 and entries["x"]["status"] == "equal"
    for name, status in (("z", "dtype_changed"), ("s", "dtype_changed")):
        assert entries[name]["status"] == status
        assert [entries[name][k] for k in ("differing", "max_abs_diff", "index", "a_value")] == [None] * 4
    f4 = open_checkpoint(_handmade_safetensors(tmp_path / "f4.safetensors", "F4", [8], 4)).tensors["x"]
    f8 = open_checkpoint(_handmade_safetensors(tmp_path / "f8.safetensors", "F8_E4M3", [8], 8)).tensors["x"]
    u8 = open_checkpoint(_handmade_safetensors(tmp_path / "u8.safetensors", "U8", [8], 8)).tensors["x"]
    assert not cast_comparable(f4, f8) and not cast_comparable(f8, f4)
    assert cast_comparable(f8, u8)
    code, doc = _json(tmp_path / "f4.safetensors", tmp_path / "f8.safetensors")
    assert code == 1 and _by_name(doc)["x"]["status"] == "dtype_changed" and _by_name(doc)["x"]["differing"] is None
    with pytest.raises(ValueError, match="equal shapes"):
        compare_tensors(f4, f8)


def test_complex_against_complex_and_bool_against_int(tmp_path: Path) -> None:
    z = torch.tensor([1 + 2j, 3 - 1j, 0j], dtype=torch.complex128)
    flags = torch.tensor([True, False, True, False])
    torch.save({"z": z, "m": flags, "f": flags}, tmp_path / "a.pt")
    z64 = z.to(torch.complex64)
    z64[1] = 3 - 2j
    ints = torch.tensor([1, 0, 1, 3], dtype=torch.uint8)
    torch.save({"z": z64, "m": ints, "f": torch.tensor([1.0, 0.0, 1.0, 1e-9])}, tmp_path / "b.pt")
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b.pt")
    entries = _by_name(doc)
    assert code == 1 and {e["status"] for e in doc["entries"]} == {"dtype_changed"}
    assert (entries["z"]["differing"], entries["z"]["index"], entries["z"]["max_abs_diff"]) == (1, [1], 1.0)
    # bool against uint8: exact, each value in its own type
    m = entries["m"]
    assert (m["differing"], m["index"], m["a_value"], m["b_value"], m["max_abs_diff"]) == (1, [3], False, 3, 3)
    # bool against float: the float rule, so 1e-9 is within atol
    f = entries["f"]
    assert (f["differing"], f["index"], f["a_value"], f["b_value"]) == (0, [3], False, torch.tensor(1e-9).item())


def test_installed_script(tmp_path: Path) -> None:
    torch.save({"w": torch.tensor([0.1, 0.2, 0.3])}, tmp_path / "a.pt")
    save_file({"w": torch.tensor([0.1, 0.2, 0.3]).to(torch.bfloat16)}, tmp_path / "b.safetensors")
    proc = run_script("diff", tmp_path / "a.pt", tmp_path / "b.safetensors", "-f", "json", "--rtol", "1e-2")
    assert (proc.returncode, proc.stderr) == (1, "")
    (entry,) = json.loads(proc.stdout)["entries"]
    assert (entry["status"], entry["differing"]) == ("dtype_changed", 0)
    expected = (torch.tensor([0.1, 0.2, 0.3]).double() - torch.tensor([0.1, 0.2, 0.3]).bfloat16().double()).abs()
    assert entry["max_abs_diff"] == expected.max().item()


@pytest.mark.parametrize("few", [0, 4096], ids=["numpy-path", "few-elements-path"])
def test_integers_that_float64_rounds_together_still_show_their_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, few: int
) -> None:
    """2**53 + 1 against 2**53 is 0 apart in float64: differing must come with a
    non-zero max abs diff and its index, across dtypes and within one dtype alike."""
    monkeypatch.setattr(compare, "FEW_ELEMENTS", few)
    a = torch.tensor([5, 2**53 + 1, 2**62 + 3, 0], dtype=torch.int64)
    torch.save({"s": a, "c": a}, tmp_path / "a.pt")
    same = torch.tensor([5, 2**53, 2**62, 0], dtype=torch.int64)
    save_file({"s": same, "c": same.to(torch.uint64)}, tmp_path / "b.safetensors")
    rows = diff_rows(open_checkpoint(tmp_path / "a.pt"), open_checkpoint(tmp_path / "b.safetensors"))
    assert [(r.name, r.status) for r in rows] == [("s", Status.VALUES), ("c", Status.DTYPE)]
    for row in rows:
        assert row.stats is not None
        assert (row.stats.differing, row.stats.index, row.stats.max_abs) == (2, [2], 3)
        assert (row.stats.a_value, row.stats.b_value) == (2**62 + 3, 2**62)


def test_quiet_reads_no_values_of_a_cast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--quiet shows no statistics and a dtype change fixes the exit code: nothing to read."""
    torch.save({"w": torch.ones(100)}, tmp_path / "a.pt")
    save_file({"w": torch.ones(100, dtype=torch.bfloat16)}, tmp_path / "b.safetensors")

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("tensor data was read")

    monkeypatch.setattr(Comparer, "compare", refuse)
    result = run_cli("diff", tmp_path / "a.pt", tmp_path / "b.safetensors", "-q")
    assert (result.code, result.out, result.err) == (1, "", "")
    trapped = run_cli("diff", tmp_path / "a.pt", tmp_path / "b.safetensors")  # the trap is live without -q
    assert trapped.code == 3 and "tensor data was read" in trapped.err
