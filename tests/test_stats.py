"""``stats`` against torch on the whole tensor, with chunking forced small."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paraminspect import open_checkpoint
from paraminspect.inspect import stats as stats_module
from paraminspect.inspect.moments import FLOAT_BLOCK
from paraminspect.inspect.stats import report, tensor_stats
from tests.conftest import SAMPLES, run_cli, run_script
from tests.test_formats_torchzip import DTYPES
from tests.test_printing import as_numpy


def torch_stats(t: torch.Tensor) -> dict[str, object]:
    """The oracle: the documented definitions computed by torch on the whole tensor."""
    if t.dtype.is_complex:
        x = t.to(torch.complex128).reshape(-1)
        nan = torch.isnan(x.real) | torch.isnan(x.imag)
        finite = torch.isfinite(x.real) & torch.isfinite(x.imag)
        pos = ~nan & ((x.real == math.inf) | (x.imag == math.inf))
        neg = ~nan & ((x.real == -math.inf) | (x.imag == -math.inf))
        kept = x[finite]
        ordered = None
    else:
        x = t.to(torch.float64).reshape(-1)
        nan, finite, pos, neg = torch.isnan(x), torch.isfinite(x), x == math.inf, x == -math.inf
        kept = x[finite]
        exact = t.to(torch.int64) if t.dtype in (torch.uint16, torch.uint32, torch.uint64) else t  # torch lacks min()
        ordered = exact.reshape(-1)[finite] if not t.dtype.is_floating_point else kept
    n = kept.numel()
    return {
        "numel": t.numel(),
        "min": None if ordered is None or n == 0 else ordered.min().item(),
        "max": None if ordered is None or n == 0 else ordered.max().item(),
        "mean": None if ordered is None or n == 0 else kept.mean().item(),
        "std": None if ordered is None or n < 2 else kept.std().item(),  # torch.std: unbiased (n-1)
        "mean_abs": kept.abs().mean().item() if n else None,
        "l2": torch.linalg.vector_norm(kept).item() if n else None,
        "nan": int(nan.sum()),
        "posinf": int(pos.sum()),
        "neginf": int(neg.sum()),
        "zeros": int((x == 0).sum()),
        "sparsity": int((x == 0).sum()) / t.numel() if t.numel() else None,
    }


def assert_close(got: dict[str, object], want: dict[str, object], label: str) -> None:
    for key, expected in want.items():
        value = got[key]
        if isinstance(expected, float):
            assert isinstance(value, float | int), (label, key, value)
            assert math.isclose(value, expected, rel_tol=1e-12, abs_tol=1e-12), (label, key, value, expected)
        else:
            assert value == expected, (label, key, value, expected)


MLP_STATS = """\
name               dtype      numel        min        max        mean       std    mean abs        L2    nan    +inf    -inf    zeros    sparsity
-----------------  -------  -------  ---------  ---------  ----------  --------  ----------  --------  -----  ------  ------  -------  ----------
2.weight           float32        8  -0.330111    0.22307  -0.0550411  0.211367    0.182235   0.58049      0       0       0        0           0
2.bias             float32        1  -0.156799  -0.156799   -0.156799              0.156799  0.156799      0       0       0        0           0
-----------------  -------  -------  ---------  ---------  ----------  --------  ----------  --------  -----  ------  ------  -------  ----------
total (2 tensors)                 9  -0.330111    0.22307  -0.0663476  0.200604    0.179409  0.601294      0       0       0        0           0
"""  # noqa: E501


def _sample(dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    base = torch.randn(37, 23, dtype=torch.float64, generator=g) * 40 + 3
    base[::5, ::3] = 0
    if dtype.is_floating_point or dtype.is_complex:
        base[1, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), float("nan")])
    if dtype.is_complex:
        return torch.complex(base, base.flip(0)).to(dtype)
    if dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64):
        base = base.abs()
    return base.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_and_view_matches_torch_with_tiny_chunks(tmp_path: Path, dtype: torch.dtype) -> None:
    base = _sample(dtype)
    sd = {
        "whole": base,
        "t": base.t(),
        "cols": base[3:30, ::4],
        "scalar": base[2, 2],
        "one": base[2, 2:3],
        "empty": base[:0],
    }
    torch.save(sd, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    refs = open_checkpoint(tmp_path / "m.pt").tensors
    for name, expected in loaded.items():
        want = torch_stats(expected)
        for chunk in (7, 1 << 20):
            assert_close(tensor_stats(refs[name], chunk_elements=chunk).result(), want, f"{name}/{chunk}")


def test_total_and_prefix_groups_merge_exactly(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    shared = torch.randn(30, 30, generator=g)
    sd = {
        "enc.a": torch.randn(100, generator=g) * 5 + 2,
        "enc.b": shared,
        "dec.a": shared,  # tied: counted once in the total
        "dec.c": torch.randn(3, 17, generator=g) - 4,
    }
    torch.save(sd, tmp_path / "m.pt")
    ckpt = open_checkpoint(tmp_path / "m.pt")
    table = report(ckpt, chunk_elements=13)
    unique = torch.cat([sd["enc.a"], shared.reshape(-1), sd["dec.c"].reshape(-1)])
    assert table.document["total"]["unique"] == 3 and table.document["total"]["tensors"] == 4
    assert_close(table.document["total"], torch_stats(unique), "total")
    groups = report(ckpt, by_prefix=1, chunk_elements=13).document["groups"]
    assert [g["name"] for g in groups] == ["enc", "dec"]
    assert_close(groups[0], torch_stats(torch.cat([sd["enc.a"], shared.reshape(-1)])), "enc")
    assert_close(groups[1], torch_stats(torch.cat([shared.reshape(-1), sd["dec.c"].reshape(-1)])), "dec")


def test_chunks_never_exceed_the_chunk_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded by the chunk: the accumulator never sees more than one chunk."""
    torch.save({"w": torch.randn(100, 50).t()}, tmp_path / "m.pt")
    seen: list[int] = []
    original = stats_module.Accumulator.add

    def spy(self: stats_module.Accumulator, chunk: object) -> None:
        seen.append(len(chunk))  # type: ignore[arg-type]
        original(self, chunk)  # type: ignore[arg-type]

    monkeypatch.setattr(stats_module.Accumulator, "add", spy)
    report(open_checkpoint(tmp_path / "m.pt"), chunk_elements=512)
    assert max(seen) == 512 and sum(seen) == 5000


def test_pinned_table_and_json_keys() -> None:
    result = run_cli("stats", SAMPLES / "mlp.pt", "2.*")
    assert result.out == MLP_STATS
    doc = json.loads(run_script("stats", SAMPLES / "rgnet.safetensors", "--by-prefix", "2", "-f", "json").stdout)
    assert set(doc) == {"file", "format", "by_prefix", "groups", "total", "skipped"}
    assert [g["name"] for g in doc["groups"]][:2] == ["0.block 0", "0.block 1"]
    assert doc["groups"][0]["tensors"] == 4 and doc["total"]["numel"] == 309
    rgnet = torch.load(SAMPLES / "rgnet.pt", weights_only=True)
    block = torch.cat([v.reshape(-1) for k, v in rgnet.items() if k.startswith("0.block 1.")])
    assert_close(doc["groups"][1], torch_stats(block), "0.block 1")


def test_undecodable_dtype_is_skipped_with_a_warning(tmp_path: Path) -> None:
    # torch warns about ComplexHalf once per process (whichever test makes one first): silence, not assert.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.save({"a": torch.ones(3), "c": torch.ones(2, dtype=torch.complex32)}, tmp_path / "m.pt")
    result = run_cli("stats", tmp_path / "m.pt", "-f", "json")
    assert result.code == 0
    assert json.loads(result.out)["skipped"] == ["c"]
    assert result.err == "paraminspect: warning: c: cannot decode complex32 values; skipped\n"


def test_tied_weights_are_marked_and_counted_once_in_the_total() -> None:
    lines = run_cli("stats", SAMPLES / "tied.pt").out.splitlines()
    assert lines[0].split()[-2:] == ["tied", "to"]
    assert lines[6].startswith("4.weight") and lines[6].endswith("2.weight")
    tied = torch.load(SAMPLES / "tied.pt", weights_only=True)
    unique = torch.cat([v.reshape(-1) for k, v in tied.items() if not k.startswith("4.")])
    assert lines[-1].startswith(f"total (8 tensors, 6 unique)               {unique.numel()}")


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(0, 300),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int16, torch.bool]),
    scale=st.sampled_from([1e-6, 1.0, 1e3, 1e6]),
    offset=st.sampled_from([0.0, 5.0, -1e4]),
    specials=st.lists(st.sampled_from([0.0, float("nan"), float("inf"), -float("inf")]), max_size=5),
    chunk=st.integers(1, 64),
    seed=st.integers(0, 2**16),
)
def test_fuzzed_chunked_stats_match_torch(
    n: int, dtype: torch.dtype, scale: float, offset: float, specials: list[float], chunk: int, seed: int
) -> None:
    """Any chunking of any values gives the whole-tensor answer (Chan merges are exact enough)."""
    base = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * scale + offset
    if dtype.is_floating_point:
        for i, value in enumerate(specials[:n]):
            base[(i * 31) % n] = value
    t = base.to(dtype) if dtype is not torch.bool else base > offset
    flat = as_numpy(t)
    acc = stats_module.Accumulator()
    for start in range(0, n, chunk):
        acc.add(flat[start : start + chunk])
    want = torch_stats(t)
    got = acc.result()
    for key, expected in want.items():
        if isinstance(expected, float):
            # Absolute rounding grows with the values' magnitude (|offset|), not their spread.
            tolerance = 1e-13 * (abs(offset) + scale)
            assert math.isclose(got[key], expected, rel_tol=1e-9, abs_tol=tolerance), (key, got[key], expected)
        else:
            assert got[key] == expected, key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize(("offset", "scale"), [(0.0, 1.0), (1e4, 1e-2), (-3.0, 1e-6), (1.0, 0.0)])
def test_blocks_match_torch_across_block_and_chunk_edges(
    tmp_path: Path, dtype: torch.dtype, offset: float, scale: float
) -> None:
    """Several float blocks per chunk, a short last block, a mean far from the spread
    (the square sum must not cancel: deviations are summed instead) and all-equal values."""
    n = 3 * FLOAT_BLOCK + 12345
    g = torch.Generator().manual_seed(3)
    t = (torch.randn(n, dtype=torch.float64, generator=g) * scale + offset).to(dtype)
    if offset == 0:  # zeros elsewhere would widen the spread the other cases keep narrow
        t[::97] = 0
        t[5] = -0.0
    torch.save({"w": t}, tmp_path / "m.pt")
    ref = open_checkpoint(tmp_path / "m.pt").tensors["w"]
    for chunk in (1 << 20, 100_003):
        assert_close(tensor_stats(ref, chunk_elements=chunk).result(), torch_stats(t), f"{dtype}/{chunk}")


def test_chunks_read_into_a_reused_buffer_equal_fresh_chunks(tmp_path: Path) -> None:
    from paraminspect.data.arrays import iter_chunks, iter_chunks_into

    torch.save({"w": torch.randn(1000), "t": torch.randn(30, 40).t()}, tmp_path / "m.pt")
    refs = open_checkpoint(tmp_path / "m.pt").tensors
    for name, small in (("w", False), ("w", True), ("t", False)):
        buffer = bytearray(8 if small else 4 * 300)
        fresh = [c.copy() for c in iter_chunks(refs[name], 300)]
        reused = []
        for chunk in iter_chunks_into(refs[name], buffer, 300):
            shares = chunk.size > 0 and chunk.__array_interface__["data"][0] == _address(buffer)
            assert shares == (name == "w" and not small), name  # dense and big enough: a view into buffer
            reused.append(chunk.copy())
        assert len(fresh) == len(reused) and all((a == b).all() for a, b in zip(fresh, reused, strict=True))


def _address(buffer: bytearray) -> int:
    import numpy as np

    return int(np.frombuffer(buffer, np.uint8).__array_interface__["data"][0])


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16", ">f4"])
def test_finite_fast_path_is_bit_identical_to_the_general_path(dtype: str) -> None:
    """Chunks and blocks without NaN/Inf take the fast paths; folding the same blocks
    through the general one (``_add_floats``) must give the same numbers to the last bit."""
    import ml_dtypes
    import numpy as np

    from paraminspect.inspect.moments import Accumulator, _as_float32

    rng = np.random.default_rng(7)
    cases = [rng.standard_normal(3 * FLOAT_BLOCK + 999), 1e3 + 1e-3 * rng.standard_normal(FLOAT_BLOCK + 5)]
    cases.append(np.where(rng.random(FLOAT_BLOCK) < 0.01, -0.0, rng.standard_normal(FLOAT_BLOCK)))
    # An extreme that is a zero: -0.0 or 0.0, whichever the blocks' reductions pick.
    nonnegative = np.abs(rng.standard_normal(3 * FLOAT_BLOCK + 1))
    nonnegative[::50], nonnegative[::77] = 0.0, -0.0
    cases += [nonnegative, -nonnegative]
    for values in cases:
        x = values.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype))
        fast, general = Accumulator(), Accumulator()
        fast.add(x)
        general.numel = x.size
        for start in range(0, x.size, FLOAT_BLOCK):
            block = x[start : start + FLOAT_BLOCK]
            if block.dtype.itemsize < 4:
                block = _as_float32(block, np.empty(block.size, np.float32))
            general._add_floats(block.astype(block.dtype.newbyteorder("=")))
        assert repr(fast) == repr(general), dtype  # repr: -0.0 == 0.0, but not as text
