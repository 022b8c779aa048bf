"""``diff``'s change measures (issue 16): rel L2, cosine, NMSE, rel mean |B-A|,
fraction differing, per tensor and rolled up per prefix, against torch in float64."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paraminspect import open_checkpoint
from paraminspect.compare import elementwise, owed
from paraminspect.compare.elementwise import Comparer
from paraminspect.compare.metrics import measures
from tests.conftest import run_cli

F = torch.nn.functional

OLD_KEYS = [
    "name",
    "status",
    "a_name",
    "b_name",
    "a",
    "b",
    "differing",
    "max_abs_diff",
    "max_rel_diff",
    "index",
    "a_value",
    "b_value",
    "tied_to",
]
NEW_KEYS = ["rel_l2", "cosine", "nmse", "rel_mean_abs", "frac_differing"]


def reference(a: torch.Tensor, b: torch.Tensor, differing: int | None = None) -> dict[str, float]:
    """The measures computed by torch on the float64 values (finite, A and B nonzero)."""
    x, y = a.double().flatten(), b.double().flatten()
    d = y - x
    out = {
        "rel_l2": float(d.norm() / x.norm()),
        "cosine": float(F.cosine_similarity(x, y, dim=0, eps=0.0)),
        "nmse": float(d.square().sum() / x.square().sum()),
        "rel_mean_abs": float(d.abs().mean() / x.abs().mean()),
    }
    if differing is not None:
        out["frac_differing"] = differing / x.numel()
    return out


def _json(a: Path, b: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = run_cli("diff", a, b, *args, "--format", "json")
    assert result.err == "" and result.code in (0, 1)
    return json.loads(result.out)  # type: ignore[no-any-return]


def _pair(tmp_path: Path, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[Path, Path]:
    save_file(a, tmp_path / "a.safetensors")
    save_file(b, tmp_path / "b.safetensors")
    return tmp_path / "a.safetensors", tmp_path / "b.safetensors"


def _close(entry: dict, expected: dict[str, float]) -> None:  # type: ignore[type-arg]
    for key, value in expected.items():
        assert entry[key] == pytest.approx(value, rel=1e-10, abs=1e-15), key


def test_low_rank_delta_scaled_copy_and_exact_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a = torch.randn(64, 48, dtype=torch.float64)
    low_rank = a + 0.01 * torch.randn(64, 2, dtype=torch.float64) @ torch.randn(2, 48, dtype=torch.float64)
    pa, pb = _pair(tmp_path, {"w": a, "s": a.float()}, {"w": low_rank, "s": a.float() * 2})
    doc = _json(pa, pb)
    by = {e["name"]: e for e in doc["entries"]}
    assert [list(e) for e in doc["entries"]] == [[*OLD_KEYS, *NEW_KEYS]] * 2  # old keys first, in order
    _close(by["w"], reference(a, low_rank, by["w"]["differing"]))
    # B = 2 A (exact in float32): cosine 1, rel_l2 = |2 - 1|, nmse 1, rel mean abs 1.
    _close(by["s"], {"rel_l2": 1.0, "cosine": 1.0, "nmse": 1.0, "rel_mean_abs": 1.0, "frac_differing": 1.0})
    _close(by["s"], reference(a.float(), a.float() * 2))


def test_zero_a_identical_nonfinite_int_and_bool(tmp_path: Path) -> None:
    z = torch.zeros(5)
    finite_a, finite_b = torch.tensor([1.0, math.nan, math.inf, 2.0]), torch.tensor([1.0, math.nan, math.inf, 3.0])
    pa, pb = _pair(
        tmp_path,
        {
            "zero": z,
            "zeros": z.clone(),
            "same": torch.arange(6.0),
            "nf": finite_a,
            "nan": torch.ones(3),
            "i": torch.tensor([1, 2, 3]),
        }
        | {"flag": torch.tensor([True, False, True])},
        {"zero": torch.tensor([0.0, 3, 0, 4, 0]), "zeros": z.clone(), "same": torch.arange(6.0), "nf": finite_b}
        | {"nan": torch.tensor([1.0, math.nan, 1.0]), "i": torch.tensor([1, 2, 5]), "flag": torch.tensor([True] * 3)},
    )
    by = {e["name"]: e for e in _json(pa, pb)["entries"]}
    # A all zero, B not: infinite ratios, cosine 0 (torch's convention for a zero vector).
    assert {k: by["zero"][k] for k in NEW_KEYS} == {
        "rel_l2": "inf",
        "cosine": 0.0,
        "nmse": "inf",
        "rel_mean_abs": "inf",
        "frac_differing": 0.4,
    }
    assert float(F.cosine_similarity(z, torch.tensor([0.0, 3, 0, 4, 0]), dim=0)) == 0.0
    for name in ("zeros", "same"):  # nothing changed: exact, whatever the norms
        assert {k: by[name][k] for k in NEW_KEYS} == {
            "rel_l2": 0.0,
            "cosine": 1.0,
            "nmse": 0.0,
            "rel_mean_abs": 0.0,
            "frac_differing": 0.0,
        }
    # NaN against NaN and inf against inf are equal (as diff counts them): left out of the sums.
    _close(by["nf"], reference(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0])) | {"frac_differing": 0.25})
    assert (by["nan"]["rel_l2"], by["nan"]["cosine"], by["nan"]["frac_differing"]) == ("nan", "nan", 1 / 3)
    _close(by["i"], reference(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 5]), 1))
    _close(by["flag"], reference(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1]), 1))


def _refs(tmp_path: Path, a: torch.Tensor, b: torch.Tensor) -> tuple[object, object]:
    pa, pb = _pair(tmp_path, {"w": a}, {"w": b})
    return open_checkpoint(pa).tensors["w"], open_checkpoint(pb).tensors["w"]


@pytest.mark.parametrize("changed", [1, 3, 5000, 400_000])
def test_few_and_numpy_paths_and_skipped_chunks_agree_with_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed: int
) -> None:
    """A 6 MiB tensor (three raw chunks) changed in its last chunk only: the first
    chunks' norms are owed and read back; few or many differing elements. The
    measures are the same to the last bit whatever budget the numpy-free path has
    left: a pair's budget depends on the pairs its thread compared before, so
    anything else would make a cosine's last digits depend on thread scheduling."""
    torch.manual_seed(1)
    a = torch.randn(1_572_864)
    b = a.clone()
    b[-changed:] += torch.rand(changed) + 0.5
    ra, rb = _refs(tmp_path, a, b)
    results = []
    for few in (elementwise.FEW_ELEMENTS, 0):  # budget left for the numpy-free path, then none
        monkeypatch.setattr(elementwise, "FEW_ELEMENTS", few)
        stats = Comparer(metrics=True).compare(ra, rb)  # type: ignore[arg-type]
        assert stats.differing == changed and stats.sums is not None and stats.sums.complete
        results.append(measures(stats.sums))
        _close(results[-1], reference(a, b, changed))
    assert results[0] == results[1]


def test_small_tensor_owed_norms_in_pure_python_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.arange(-50, 50, dtype=torch.int8)
    b = a.clone()
    b[7] = 100
    ra, rb = _refs(tmp_path, a, b)
    monkeypatch.setattr(owed, "same_sums", lambda *_: pytest.fail("numpy used for 99 owed elements"))
    stats = Comparer(metrics=True).compare(ra, rb)  # type: ignore[arg-type]
    assert stats.sums is not None
    _close(measures(stats.sums), reference(a, b, 1))  # int8 -128 and such summed as float64


def test_identical_tensors_read_no_norms_unless_a_rollup_needs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = torch.randn(1_000_000)
    ra, rb = _refs(tmp_path, a, a.clone())
    calls: list[int] = []
    real = elementwise.settle
    monkeypatch.setattr(elementwise, "settle", lambda *args: calls.append(1) or real(*args))
    stats = Comparer(metrics=True).compare(ra, rb)  # type: ignore[arg-type]
    assert stats.sums is not None and not calls and not stats.sums.complete
    assert measures(stats.sums) == {
        "rel_l2": 0.0,
        "cosine": 1.0,
        "nmse": 0.0,
        "rel_mean_abs": 0.0,
        "frac_differing": 0.0,
    }
    stats = Comparer(norms=True).compare(ra, rb)  # type: ignore[arg-type]
    assert calls and stats.sums is not None and stats.sums.complete
    assert stats.sums.aa == pytest.approx(float(a.double().square().sum()), rel=1e-12)
    assert stats.sums.abs_a == pytest.approx(float(a.double().abs().sum()), rel=1e-12)


def test_cast_pair_and_strided_pair(tmp_path: Path) -> None:
    torch.manual_seed(2)
    a = torch.randn(300, 200)
    torch.save({"cast": a, "t": a.t()}, tmp_path / "a.pt")
    torch.save({"cast": a.bfloat16(), "t": (a * 1.5).t()}, tmp_path / "b.pt")
    by = {e["name"]: e for e in _json(tmp_path / "a.pt", tmp_path / "b.pt")["entries"]}
    _close(by["cast"], reference(a, a.bfloat16(), by["cast"]["differing"]))
    _close(by["t"], reference(a.t(), (a * 1.5).t(), a.numel()))


def test_sort_by_lists_most_moved_first_and_table_columns(tmp_path: Path) -> None:
    torch.manual_seed(3)
    a = {n: torch.randn(10, 10) for n in ("p", "q", "r")}
    b = {"p": a["p"] * 1.1, "q": a["q"] * 1.5, "r": -a["r"]}
    pa, pb = _pair(tmp_path, a | {"s": torch.ones(2)}, b | {"s": torch.ones(3)})
    names = [e["name"] for e in _json(pa, pb, "--sort-by", "rel_l2")["entries"]]
    assert names == ["r", "q", "p", "s"]  # rel_l2: 2, 0.5, 0.1; the shape change has none
    assert [e["name"] for e in _json(pa, pb, "--sort-by", "cosine")["entries"]][:1] == ["r"]
    result = run_cli("diff", pa, pb, "--metrics", "--sort-by", "nmse")
    assert result.out.splitlines()[0].split()[-10:] == [
        "at",
        "rel",
        "L2",
        "cosine",
        "NMSE",
        "rel",
        "mean",
        "abs",
        "frac",
        "differing",
    ]
    r_line = next(line for line in result.out.splitlines() if line.startswith("values changed  r "))
    assert r_line.split()[-5:] == ["2", "-1", "4", "2", "1"]
    assert "rel L2" not in run_cli("diff", pa, pb).out


def test_by_prefix_sums_equal_float64_of_the_concatenated_tensors(tmp_path: Path) -> None:
    torch.manual_seed(4)
    a = {f"model.layers.{i}.{m}.weight": torch.randn(32, 16) for i in range(3) for m in ("q", "k")}
    a["model.norm.weight"] = torch.ones(16)
    b = {n: t.clone() for n, t in a.items()}
    b["model.layers.0.q.weight"] += 0.01 * torch.randn(32, 16)
    b["model.layers.1.k.weight"][3, 4] = 7.0
    b["model.norm.weight"] = torch.ones(15)  # shape changed: not compared, counted apart
    pa, pb = _pair(tmp_path, a, b)
    doc = _json(pa, pb, "--by-prefix", "3")
    groups = {g["prefix"]: g for g in doc["by_prefix"]["groups"]}
    assert doc["by_prefix"]["depth"] == 3 and list(groups) == [
        *(f"model.layers.{i}" for i in range(3)),
        "model.norm.weight",
    ]
    for i in range(3):
        names = [n for n in a if n.startswith(f"model.layers.{i}.")]
        x, y = torch.cat([a[n].flatten() for n in names]), torch.cat([b[n].flatten() for n in names])
        g = groups[f"model.layers.{i}"]
        assert (g["tensors"], g["not_compared"], g["elements"]) == (2, 0, x.numel())
        assert g["sum_a2"] == pytest.approx(float(x.double().square().sum()), rel=1e-12)
        assert g["sum_d2"] == pytest.approx(float((y.double() - x.double()).square().sum()), rel=1e-12, abs=0)
        if i < 2:
            _close(g, reference(x, y, g["differing"]))
        else:
            assert (g["rel_l2"], g["cosine"]) == (0.0, 1.0)
    assert (groups["model.norm.weight"]["tensors"], groups["model.norm.weight"]["not_compared"]) == (0, 1)
    assert groups["model.norm.weight"]["rel_l2"] is None
    table = run_cli("diff", pa, pb, "--by-prefix", "3", "--sort-by", "rel_l2").out.splitlines()
    assert table[0].split()[:4] == ["prefix", "tensors", "not", "compared"]
    assert [line.split()[0] for line in table[2:6]] == [
        "model.layers.1",
        "model.layers.0",
        "model.layers.2",
        "model.norm.weight",
    ]


@pytest.mark.parametrize("few", [elementwise.FEW_ELEMENTS, 0])
def test_nonfinite_and_complex_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, few: int) -> None:
    """Equal NaN/inf pairs are left out of every sum on the numpy path too; complex
    pairs (numpy path only) use |a|^2 and Re<a, b>."""
    monkeypatch.setattr(elementwise, "FEW_ELEMENTS", few)
    a = torch.tensor([1.0, math.nan, math.inf, 2.0, -math.inf, 4.0], dtype=torch.float64)
    b = torch.tensor([1.5, math.nan, math.inf, 3.0, -math.inf, 4.0], dtype=torch.float64)
    ra, rb = _refs(tmp_path, a, b)
    stats = Comparer(metrics=True).compare(ra, rb)  # type: ignore[arg-type]
    assert stats.sums is not None
    keep = torch.tensor([0, 3, 5])
    _close(measures(stats.sums), reference(a[keep], b[keep], 2) | {"frac_differing": 2 / 6})
    torch.manual_seed(6)
    z = torch.randn(40, dtype=torch.complex128)
    w = z * (1 + 0.1j) + 0.01
    torch.save({"w": z}, tmp_path / "za.pt")
    torch.save({"w": w}, tmp_path / "zb.pt")
    stats = Comparer(metrics=True).compare(
        open_checkpoint(tmp_path / "za.pt").tensors["w"], open_checkpoint(tmp_path / "zb.pt").tensors["w"]
    )
    assert stats.sums is not None
    got = measures(stats.sums)
    assert got["rel_l2"] == pytest.approx(float((w - z).norm() / z.norm()), rel=1e-12)
    assert got["cosine"] == pytest.approx(float(torch.vdot(z, w).real / (z.norm() * w.norm())), rel=1e-12)


def test_undecodable_dtype_has_no_measures_even_in_rollups(tmp_path: Path) -> None:
    """complex32 (no numeric decoding): equal bytes, but no norm to roll up, never an error."""
    c = torch.tensor([1 + 2j, 3j, -1.0, 0j]).to(torch.complex32)
    torch.save({"c": c}, tmp_path / "a.pt")
    torch.save({"c": c.clone()}, tmp_path / "b.pt")
    for args in (["--by-prefix", "1"], ["--heatmap"], []):
        result = run_cli("diff", tmp_path / "a.pt", tmp_path / "b.pt", *args, "--format", "json")
        assert (result.code, result.err) == (0, "")
        doc = json.loads(result.out)
        assert doc["entries"][0]["status"] == "equal" and doc["entries"][0]["rel_l2"] is None


def test_blocks_of_any_size_merge_to_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice is compared in blocks (accumulate.BLOCK_ELEMENTS) whose summaries merge:
    with blocks of 1000 elements the counts, the largest differences and where they sit
    are those of whole slices, and the measures still match torch's float64 ones."""
    from paraminspect.compare import accumulate

    torch.manual_seed(5)
    a = torch.randn(300_000)
    b = a * 1.001
    b[123_456] += 3.0  # the largest difference, inside a middle block
    b[7] = a[7]  # equal elements in the first block
    ra, rb = _refs(tmp_path, a, b)
    whole = Comparer(metrics=True).compare(ra, rb)  # type: ignore[arg-type]
    monkeypatch.setattr(accumulate, "BLOCK_ELEMENTS", 1000)
    blocks = Comparer(metrics=True).compare(ra, rb)  # type: ignore[arg-type]
    assert (blocks.differing, blocks.max_abs, blocks.max_rel, blocks.index) == (
        whole.differing,
        whole.max_abs,
        whole.max_rel,
        whole.index,
    )
    from paraminspect.compare.tolerance import DEFAULT_ATOL, DEFAULT_RTOL

    outside = ~torch.isclose(a.double(), b.double(), rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL)
    assert blocks.index == [123_456] and blocks.differing == int(outside.sum())
    assert (blocks.a_value, blocks.b_value) == (float(a[123_456]), float(b[123_456]))
    assert blocks.sums is not None and whole.sums is not None
    _close(measures(blocks.sums), reference(a, b, blocks.differing))
    _close(measures(whole.sums), reference(a, b, whole.differing))
