"""The numpy-free path for a few differing elements (compare/differing.py) against the numpy path.

Both paths run on the same files and must give the same statistics, field for
field and type for type (``repr`` of every value, so NaN, -0.0 and int vs float
count), for every dtype compare supports, random bit patterns (NaN payloads,
infinities, subnormals, -0.0) and values placed on tolerance edges.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from paraminspect import open_checkpoint
from paraminspect.compare import differing as sparse
from paraminspect.compare import elementwise as compare
from paraminspect.compare.accumulate import ValueStats
from paraminspect.compare.elementwise import Comparer
from paraminspect.compare.tolerance import Tolerance

DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.uint16,
    torch.int32,
    torch.uint32,
    torch.int64,
    torch.uint64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.float8_e5m2,
    torch.float8_e4m3fn,  # no struct decoder: numpy on both runs
    torch.complex64,  # left to numpy (its |z| need not be libm's hypot)
]
TOLERANCES = [Tolerance(), Tolerance(0, 0), Tolerance(0.5, 0), Tolerance(0, 0.5), Tolerance(1e-3, 1e-3)]
_SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, 1.5, 2.0, 3.0, -1.0, 1e-8, 1.00001]


def _pair(dtype: torch.dtype, seed: int, n: int = 3000, changed: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """A random tensor (random bits for floats) and a copy with ``changed``
    elements replaced: new random bits, or special values and tolerance edges.
    Built on the bytes: torch cannot index-assign every dtype."""
    gen = torch.Generator().manual_seed(seed)
    width = torch.empty(0, dtype=dtype).element_size()
    high = 2 if dtype == torch.bool else 256
    a = torch.randint(0, high, (n, width), dtype=torch.uint8, generator=gen)
    b = a.clone()
    where = torch.randperm(n, generator=gen)[:changed]
    b[where] = torch.randint(0, high, (changed, width), dtype=torch.uint8, generator=gen)
    if dtype.is_floating_point:
        # pairs on and next to tolerance edges, signed zeros, infinities
        pairs = [(x, y) for x in _SPECIAL for y in _SPECIAL]
        pos = torch.randperm(n, generator=gen)[: len(pairs) + 1]
        a[pos[1:]] = torch.tensor([p[0] for p in pairs]).to(dtype).view(torch.uint8).reshape(-1, width)
        b[pos[1:]] = torch.tensor([p[1] for p in pairs]).to(dtype).view(torch.uint8).reshape(-1, width)
        # a NaN with another payload
        a[pos[:1]] = torch.tensor([math.nan]).to(dtype).view(torch.uint8)
        b[pos[:1]] = a[pos[:1]]
        b[pos[0], 0] ^= 1
    return a.flatten().view(dtype), b.flatten().view(dtype)


def _key(stats: ValueStats) -> list[str]:
    return [f"{type(v).__name__}:{v!r}" for v in vars(stats).values()]


def _both(
    tmp_path: Path,
    tensors_a: dict[str, torch.Tensor],
    tensors_b: dict[str, torch.Tensor],
    tol: Tolerance,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[list[str]], list[list[str]], int]:
    """Stats of every pair through the numpy path and through the default path,
    and how many slices the default path decoded with numpy."""
    torch.save(tensors_a, tmp_path / "a.pt")
    torch.save(tensors_b, tmp_path / "b.pt")
    refs_a = open_checkpoint(tmp_path / "a.pt").tensors
    refs_b = open_checkpoint(tmp_path / "b.pt").tensors
    decoded: list[int] = []
    original = compare.decode_bytes

    def counting(ref: object, raw: bytes) -> object:
        decoded.append(len(raw))
        return original(ref, raw)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(compare, "FEW_ELEMENTS", 0)
        slow = Comparer(tol)
    fast = Comparer(tol)
    slow_keys = [_key(slow.compare(refs_a[k], refs_b[k])) for k in tensors_a]
    with monkeypatch.context() as m:
        m.setattr(compare, "decode_bytes", counting)
        fast_keys = [_key(fast.compare(refs_a[k], refs_b[k])) for k in tensors_a]
    return slow_keys, fast_keys, len(decoded)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_few_elements_path_equals_numpy_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    a, b = _pair(dtype, seed=DTYPES.index(dtype))
    pairs_a = {"flat": a, "matrix": a.reshape(60, 50), "same": a}
    pairs_b = {"flat": b, "matrix": b.reshape(60, 50), "same": a.clone()}
    for tol in TOLERANCES:
        for equal_nan in (True, False):
            tolerance = Tolerance(tol.atol, tol.rtol, equal_nan)
            slow, fast, decoded = _both(tmp_path, pairs_a, pairs_b, tolerance, monkeypatch)
            assert fast == slow, (dtype, tolerance)
            assert slow[0] != _key(ValueStats())  # the pair does differ
            numpy_only = dtype in (torch.float8_e4m3fn, torch.complex64) or (dtype.is_floating_point and not equal_nan)
            assert (decoded > 0) == numpy_only


def test_slices_chunks_and_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks and slices: differences spread over many of each, int64 past
    2**53 (where float64 differences tie but exact ones do not), and a budget
    that runs out part-way, after which numpy takes over mid-tensor."""
    monkeypatch.setattr(compare, "RAW_CHUNK_BYTES", 1024)
    monkeypatch.setattr(compare, "DECODE_ELEMENTS", 16)
    gen = torch.Generator().manual_seed(7)
    big = torch.randint(-(2**62), 2**62, (4000,), dtype=torch.int64, generator=gen)
    floats = torch.randn(4000, dtype=torch.float64, generator=gen)
    other_big, other_floats = big.clone(), floats.clone()
    where = torch.randperm(4000, generator=gen)[:300]
    other_big[where] += torch.randint(-3, 4, (300,), generator=gen)
    other_floats[where] *= 1.0001
    other_floats[3990:] *= 2  # a burst at the end: many differences in one chunk
    tensors_a, tensors_b = {"i": big, "f": floats}, {"i": other_big, "f": other_floats}
    for budget in (10_000, 250, 5):
        monkeypatch.setattr(compare, "FEW_ELEMENTS", budget)
        slow, fast, _ = _both(tmp_path, tensors_a, tensors_b, Tolerance(), monkeypatch)
        assert fast == slow, budget


def test_grouped_by_numpy_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past 2**53 a later slice can win on float64 difference although the exact
    difference is smaller; the numpy path decides per slice, so must this one."""
    monkeypatch.setattr(compare, "DECODE_ELEMENTS", 16)
    a0, b0 = 2777282568125235874, -3769728825756480313  # float(a0) - float(b0) > float(a0 - b0)
    assert float(a0) - float(b0) > float(a0 - b0) and float(a0 + 1) - float(b0) == float(a0) - float(b0)
    x, y = torch.zeros(40, dtype=torch.int64), torch.zeros(40, dtype=torch.int64)
    x[3], y[3], x[20], y[20] = a0, b0, a0 + 1, b0  # slices 0 and 1
    slow, fast, _ = _both(tmp_path, {"t": x}, {"t": y}, Tolerance(), monkeypatch)
    assert fast == slow and "list:[20]" in fast[0]


def test_differing_offsets_narrows_to_elements() -> None:
    a = bytearray(np.arange(100_000, dtype="<u4").tobytes())
    b = bytearray(a)
    for i in (0, 17, 18, 65_535, 99_999):
        b[i * 4 + 1] ^= 0xFF
    assert sparse.differing_offsets(a, memoryview(b), len(a), 4, 10) == [0, 68, 72, 262_140, 399_996]
    assert sparse.differing_offsets(a, memoryview(b), len(a), 4, 4) is None
    assert sparse.differing_offsets(a, memoryview(a), len(a), 4, 0) == []


def test_one_element_diff_does_not_import_numpy(tmp_path: Path) -> None:
    """The common "what changed?" case must not pay ~65 ms for importing numpy."""
    weights = {f"w{i}": torch.randn(300, 70) for i in range(3)}
    torch.save(weights, tmp_path / "a.pt")
    weights["w1"][123, 45] += 1
    torch.save(weights, tmp_path / "b.pt")
    code = (
        "import json, sys; from paraminspect.cli import main; "
        f"rc = main(['diff', {str(tmp_path / 'a.pt')!r}, {str(tmp_path / 'b.pt')!r}, '-f', 'json']); "
        "assert 'numpy' not in sys.modules, 'numpy was imported'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)["entries"]}
    assert [e["status"] for e in entries.values()] == ["equal", "values_changed", "equal"]
    assert (entries["w1"]["differing"], entries["w1"]["index"]) == (1, [123, 45])
