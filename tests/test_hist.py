"""Distributions: ``hist``, ``stats --hist``, ``stats --percentiles`` and sparsity, against numpy."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paraminspect import open_checkpoint
from paraminspect.inspect import hist
from paraminspect.output import charts
from paraminspect.output.colours import Colours
from paraminspect.output.report import HistReport
from paraminspect.output.sparks import sparkline
from tests.conftest import run_cli


def _tensors() -> dict[str, torch.Tensor]:
    """Known distributions, with NaN/Inf sprinkled in, zeros, ties, and a broadcast view."""
    g = torch.Generator().manual_seed(3)
    normal = torch.randn(300, 70, generator=g)
    normal[0, :6] = torch.tensor([math.nan, math.inf, -math.inf, math.nan, 0.0, -0.0])
    sparse = torch.randn(5000, generator=g).double()
    sparse[torch.rand(5000, generator=g) < 0.8] = 0  # 80% zeros: heavy ties at 0
    return {
        "normal": normal,
        "uniform": torch.rand(4099, generator=g).to(torch.float16),
        "exponential": torch.empty(7001).exponential_(generator=g).to(torch.bfloat16),
        "sparse": sparse,
        "ints": torch.randint(-40, 40, (3001,), generator=g, dtype=torch.int32),
        "steps": torch.arange(12).repeat_interleave(torch.arange(1, 13)).to(torch.int8),  # 1 one, 2 twos, ...
        "flags": torch.rand(999, generator=g) < 0.3,
    }


def _finite(t: torch.Tensor) -> np.ndarray:
    x = t.to(torch.float64).numpy().reshape(-1)
    return x[np.isfinite(x)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hist") / "m.safetensors"
    save_file({k: v.contiguous() for k, v in _tensors().items()}, path)
    return path


@pytest.mark.parametrize("name", list(_tensors()))
@pytest.mark.parametrize("bins", [1, 7, 64])
def test_hist_counts_are_numpy_histogram_counts(model: Path, name: str, bins: int) -> None:
    want = _finite(_tensors()[name])
    counts, edges = np.histogram(want, bins=bins)
    doc = json.loads(run_cli("hist", model, name, "--bins", str(bins), "-f", "json").out)
    assert doc["counts"] == counts.tolist()
    assert doc["edges"] == edges.tolist()
    assert doc["nonfinite"] == _tensors()[name].numel() - want.size
    assert doc["below"] == doc["above"] == 0


def test_hist_range_counts_the_values_outside(model: Path) -> None:
    want = _finite(_tensors()["normal"])
    doc = json.loads(run_cli("hist", model, "normal", "--range", "-1,0.5", "--bins", "9", "-f", "json").out)
    assert doc["counts"] == np.histogram(want, bins=9, range=(-1, 0.5))[0].tolist()
    assert doc["below"] == int((want < -1).sum()) and doc["above"] == int((want > 0.5).sum())


def test_hist_many_chunks_and_a_broadcast_view_count_exactly(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(5)
    base = torch.randn(40, 1, generator=g)
    torch.save({"w": base.expand(40, 25), "x": torch.randn(10_000, generator=g)}, tmp_path / "m.pt")
    ckpt = open_checkpoint(tmp_path / "m.pt")
    for name, tensor in (("w", base.expand(40, 25)), ("x", None)):
        values, times = hist.tensor_values(ckpt.tensors[name], chunk_elements=333)
        x = (tensor if tensor is not None else torch.load(tmp_path / "m.pt")[name]).double().numpy().reshape(-1)
        counts = hist.histogram(values, 13, float(x.min()), float(x.max()), times)
        assert counts.counts == np.histogram(x, bins=13)[0].tolist(), name


@pytest.mark.parametrize("collect", [hist.COLLECT, 50])  # 50: every large interval is refined, several passes
def test_percentiles_equal_numpy(model: Path, monkeypatch: pytest.MonkeyPatch, collect: int) -> None:
    monkeypatch.setattr(hist, "COLLECT", collect)
    percents = [0, 1, 12.5, 50, 99, 99.9, 100]
    doc = json.loads(run_cli("stats", model, "--percentiles", ",".join(map(str, percents)), "-f", "json").out)
    for row in doc["tensors"]:
        want = _finite(_tensors()[row["name"]])
        for q in percents:
            assert row["percentiles"][f"{q:g}"] == np.percentile(want, q), (row["name"], q)


def test_percentiles_of_a_broadcast_view_and_constant_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hist, "COLLECT", 10)
    g = torch.Generator().manual_seed(9)
    tensors = {"view": torch.randn(1, 30, generator=g).expand(7, 30), "same": torch.full((500,), 2.5)}
    torch.save(tensors, tmp_path / "m.pt")
    doc = json.loads(run_cli("stats", tmp_path / "m.pt", "--percentiles", "3,50,97", "-f", "json").out)
    for row in doc["tensors"]:
        want = tensors[row["name"]].double().numpy().reshape(-1)
        assert list(row["percentiles"].values()) == np.percentile(want, [3, 50, 97]).tolist()


def test_sparsity_and_row_histograms(model: Path) -> None:
    doc = json.loads(run_cli("stats", model, "--hist", "-f", "json").out)
    for row in doc["tensors"]:
        t = _tensors()[row["name"]]
        x = t.to(torch.float64).numpy().reshape(-1)
        assert row["sparsity"] == np.count_nonzero(x == 0) / x.size
        every = row["hist"]["every"]
        assert every == max(1, math.ceil(x.size / hist.SAMPLE))
        sample = x[::every]
        counts, edges = np.histogram(sample[np.isfinite(sample)], bins=16, range=(row["min"], row["max"]))
        assert row["hist"]["counts"] == counts.tolist() and row["hist"]["edges"] == edges.tolist()


def test_row_histogram_of_a_large_tensor_is_sampled_systematically(tmp_path: Path) -> None:
    x = torch.randn(hist.SAMPLE * 3 + 5, generator=torch.Generator().manual_seed(1))
    save_file({"x": x}, tmp_path / "m.safetensors")
    (row,) = json.loads(run_cli("stats", tmp_path / "m.safetensors", "--hist", "-f", "json").out)["tensors"]
    assert row["hist"]["every"] == 4
    want = np.histogram(x.double().numpy()[::4], bins=16, range=(row["min"], row["max"]))[0]
    assert row["hist"]["counts"] == want.tolist()


@pytest.mark.parametrize("case", ["normal", "ties", "edges", "constant", "nonfinite", "one"])
def test_row_histogram_counts_are_numpy_histogram_counts(case: str) -> None:
    """The row histogram sorts its sample to count it: the same edges and counts as
    numpy.histogram, values on the edges, NaN and Inf included."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(hist.SAMPLE)
    if case == "ties":
        x = np.round(x * 3) / 3
    elif case == "edges":  # 0..16 over 16 bins: every value sits on an edge
        x = rng.integers(0, 17, hist.SAMPLE).astype(np.float64)
    elif case == "constant":
        x[:] = 0.25
    elif case == "nonfinite":
        x[::7], x[1::11], x[2::13] = math.nan, math.inf, -math.inf
    elif case == "one":
        x = x[:1]
    finite = x[np.isfinite(x)]
    low, high = float(finite.min()), float(finite.max())
    sampler = hist.Sampler(x.size)
    sampler.add(x)
    got = sampler.histogram(low, high, times=3)
    counts, edges = np.histogram(finite, bins=hist.ROW_BINS, range=(low, high))
    assert got == {"edges": edges.tolist(), "counts": (counts * 3).tolist(), "every": 1}


def test_bad_options_are_one_line_errors(model: Path) -> None:
    for args in (["stats", model, "--percentiles", "50,x"], ["stats", model, "--percentiles", "101"]):
        result = run_cli(*args)
        assert result.code == 2 and result.err.startswith("paraminspect: error: --percentiles"), result.err
    for bad in ("1", "2,1", "0,nan", "a,b"):
        result = run_cli("hist", model, "normal", "--range", bad)
        assert result.code == 2 and result.err.startswith("paraminspect: error: --range"), result.err
    result = run_cli("hist", model, "nothing")
    assert result.code == 2 and "no name matches" in result.err


# i + 1 copies of each i in 0..11; 4 bins over [0, 11]: 0-2, 3-5, 6-8, 9-11 hold 6, 15, 24, 33 values.
# Bars are 40 eighth-blocks wide at the top count: 6/33 * 320 = 58.2 -> 58 eighths = 7 blocks and a quarter.
STEPS_TABLE = (
    "steps  int8 [78], 4 bins, 78 values\n"
    "[0, 2.75)     6  " + "█" * 7 + "▎\n"
    "[2.75, 5.5)  15  " + "█" * 18 + "▏\n"
    "[5.5, 8.25)  24  " + "█" * 29 + "▏\n"
    "[8.25, 11]   33  " + "█" * 40 + "\n"
)


def _colour_stream() -> io.StringIO:
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    return stream


def test_hist_table_snapshot_without_and_with_colour(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli("hist", model, "steps", "--bins", "4").out == STEPS_TABLE
    doc = json.loads(run_cli("hist", model, "steps", "--bins", "4", "-f", "json").out)
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = charts.format_hist(HistReport(doc), hist_format(), Colours(_colour_stream()))
    assert coloured.startswith("\033[1msteps\033[0m  \033[2mint8 [78], 4 bins, 78 values\033[0m\n")
    assert "\033[36m████████████████████████████████████████\033[0m" in coloured
    plain = coloured.replace("\033[1m", "").replace("\033[2m", "").replace("\033[36m", "").replace("\033[0m", "")
    assert plain == STEPS_TABLE
    monkeypatch.setenv("NO_COLOR", "1")
    assert charts.format_hist(HistReport(doc), hist_format(), Colours(_colour_stream())) == plain


def hist_format():  # type: ignore[no-untyped-def]
    from paraminspect.output.render import OutputFormat

    return OutputFormat.table


def test_log_bars_and_sparklines() -> None:
    assert charts.bar(1000, 1000, log=True) == "█" * charts.BAR_WIDTH
    # log(11) / log(1001) * 320 eighths = 111.07: 13 blocks and 7 eighths
    assert charts.bar(10, 1000, log=True) == "█" * 13 + "▉"
    assert charts.bar(0, 10) == "" and charts.bar(1, 10**9) == "▏"
    assert sparkline([0, 1, 4, 8]) == " ▁▄█"
    assert sparkline([0, 0]) == "  "


def test_stats_table_shows_percentile_columns_and_a_sparkline(model: Path) -> None:
    lines = run_cli("stats", model, "steps", "--hist", "--percentiles", "50").out.splitlines()
    assert lines[0].split()[-3:] == ["sparsity", "p50", "hist"]
    x = _tensors()["steps"].double().numpy()
    want_counts = np.histogram(x, bins=16)[0].tolist()
    assert lines[2].endswith(f"{np.percentile(x, 50):g}  {sparkline(want_counts)}".rstrip())


def test_dequantized_weights_have_histograms_and_percentiles(tmp_path: Path) -> None:
    """--dequantize: the logical values (the packer's own float32 truth) are binned and ranked."""
    from tests.test_quant_dequant import _layout

    path, _, expected, _ = _layout(tmp_path, "gptq")
    want = expected.astype(np.float64).reshape(-1)
    doc = json.loads(run_cli("hist", "--dequantize", path, "l.weight", "--bins", "12", "-f", "json").out)
    assert doc["dtype"] != "float32" and sum(doc["counts"]) == want.size
    np.testing.assert_allclose(doc["edges"], np.histogram_bin_edges(want, bins=12), rtol=1e-6)
    # decoding may round differently from the packer by an ulp: a value on an edge may move one bin
    assert np.abs(np.array(doc["counts"]) - np.histogram(want, bins=12)[0]).sum() <= 2
    (row,) = json.loads(run_cli("stats", "--dequantize", "--percentiles", "5,50,95", "-f", "json", path).out)["tensors"]
    assert list(row["percentiles"].values()) == pytest.approx(np.percentile(want, [5, 50, 95]).tolist(), rel=1e-6)


def test_the_first_percentile_pass_counts_each_chunk_without_copying_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass's interval holds every finite value, so each widened chunk is counted
    (and kept) as it is, not copied through a mask: one chunk's worth of memory less per
    thread. The values found are still numpy.percentile's."""
    from paraminspect.inspect import hist

    rng = np.random.default_rng(11)
    chunks = [rng.standard_normal(50_000).astype(np.float32) for _ in range(3)]
    widened: list[np.ndarray] = []
    counted: list[np.ndarray] = []
    real_finite, real_histogram = hist.finite64, np.histogram

    def finite(chunk: np.ndarray) -> np.ndarray:
        widened.append(real_finite(chunk))
        return widened[-1]

    def histogram(values: np.ndarray, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        counted.append(values)
        return real_histogram(values, *args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(hist, "finite64", finite)
    monkeypatch.setattr(np, "histogram", histogram)
    everything = np.concatenate(chunks).astype(np.float64)
    ranks = {0, 74_999, 149_999}
    found = hist.order_statistics(lambda: iter(chunks), ranks, float(everything.min()), float(everything.max()))
    assert all(counted[i] is widened[i] for i in range(len(chunks)))  # the first pass: no copies
    ordered = np.sort(everything)
    assert found == {r: float(ordered[r]) for r in ranks}
