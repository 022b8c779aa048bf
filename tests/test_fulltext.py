"""``get --full`` streams: the text equals torch's ``str(tensor)`` (threshold=inf)
and the old in-memory formatter's, for any chunk size, without holding the tensor."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from paraminspect import open_checkpoint
from paraminspect.data import arrays as tensors
from paraminspect.inspect import get as values
from paraminspect.output import fulltext, printing
from paraminspect.output.printing import PrintOptions, tensor_text
from paraminspect.output.render import Colours, OutputFormat, format_values
from tests.conftest import run_cli
from tests.test_formats_torchzip import DTYPES
from tests.test_printing import _cases, as_numpy, random_tensor

FULL = PrintOptions(threshold=math.inf)


def torch_full(t: torch.Tensor, precision: int = 4) -> str:
    with torch._tensor_str.printoptions(threshold=math.inf, precision=precision):
        return str(t)


def chunker(array: np.ndarray) -> Any:
    """``read_chunks`` over an in-memory array, like tensors.iter_chunks."""
    flat = array.reshape(-1)

    def read_chunks(n: int) -> Iterator[np.ndarray]:
        return (flat[i : i + n] for i in range(0, flat.size, n))

    return read_chunks


def streamed(t: torch.Tensor, options: PrintOptions = FULL) -> str:
    array = as_numpy(t)
    return "".join(fulltext.text_pieces(chunker(array), array.shape, str(t.dtype)[6:], options))


def _edge_cases() -> list[torch.Tensor]:
    """Values where the deciding extremes matter: three-digit exponents, rounding
    into a wider cell, one non-whole value among whole ones, wide negatives."""
    return [
        torch.tensor([1e-150, 2.0, -3e200], dtype=torch.float64),
        torch.tensor([9.99995e99, 1.0], dtype=torch.float64),
        torch.tensor([-9.99996e-100, 5.0, 7.0], dtype=torch.float64),
        torch.tensor([1.0, 2.0, 3.0, 2.5, 1000.0, -40.0]),
        torch.tensor([1.0, 2.0, 3.0, -99999.0]),
        torch.tensor([0.5, -1234.5678, 0.25, 7.0]),
        torch.tensor([-0.00001, 0.3, 0.2]),
        torch.tensor([float("nan"), float("inf"), -0.0]),
        torch.tensor([-float("inf"), 12345678.0]),
        torch.tensor([[-5, 3], [100000, -7]], dtype=torch.int32),
        torch.tensor([[1.5 + 1e-6j, -2.0 + 300j], [0.0 - 1e9j, 4.0 + 0j]], dtype=torch.complex128),
        torch.tensor([float("nan") + 1j, 2.0 - 0j], dtype=torch.complex64),
        torch.tensor([[[True], [False]], [[True], [True]]]),
    ]


_ALL = _cases() + _edge_cases()


@pytest.mark.parametrize("t", _ALL, ids=lambda t: f"{str(t.dtype)[6:]}{list(t.shape)}")
@pytest.mark.parametrize(
    "scan, text", [(1, 1), (3, 5), (7, 2), (1 << 16, 1 << 14)], ids=["1-1", "3-5", "7-2", "default"]
)
def test_streamed_text_equals_torch_and_the_in_memory_formatter(
    monkeypatch: pytest.MonkeyPatch, t: torch.Tensor, scan: int, text: int
) -> None:
    """Small chunk sizes put chunk boundaries inside rows and lines, and split the
    layout decision over many chunks."""
    monkeypatch.setattr(fulltext, "SCAN_CHUNK", scan)
    monkeypatch.setattr(fulltext, "TEXT_CHUNK", text)
    expected = torch_full(t)
    assert tensor_text(as_numpy(t), str(t.dtype)[6:], FULL) == expected
    assert streamed(t) == expected


@pytest.mark.parametrize("threshold", [5, 1000])
def test_a_finite_threshold_shows_the_corners_picked_from_the_stream(
    monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    """A library caller may render a streamed report with summarising options."""
    monkeypatch.setattr(fulltext, "SCAN_CHUNK", 7)
    options = PrintOptions(threshold=threshold)
    for t in _ALL:
        with torch._tensor_str.printoptions(threshold=threshold):
            assert streamed(t, options) == str(t), t.shape


def test_streamed_and_read_reports_render_alike(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(4)
    torch.save({"w": torch.randn(300, 40, generator=g).t(), "b": torch.randn(7, generator=g)}, tmp_path / "m.pt")
    ckpt = open_checkpoint(tmp_path / "m.pt")
    for options in (PrintOptions(), FULL):
        read = values.report(ckpt, ["w", "b"], options, every_value=options is FULL)
        streaming = values.report(ckpt, ["w", "b"], options, stream=True)
        assert streaming.entries[0].array is None and streaming.entries[0].chunks is not None
        for fmt in (OutputFormat.table, OutputFormat.markdown):
            text = "".join(format_values(streaming, fmt, Colours(sys.stdout)))
            assert text == "".join(format_values(read, fmt, Colours(sys.stdout))), (options, fmt)


@pytest.mark.parametrize("precision", [0, 2, 8])
def test_precision_and_scientific_rows(monkeypatch: pytest.MonkeyPatch, precision: int) -> None:
    monkeypatch.setattr(fulltext, "TEXT_CHUNK", 13)
    t = torch.randn(3, 4, 30, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 1e6, 1e-6, 3.0])[:, None]
    assert streamed(t, PrintOptions(threshold=math.inf, precision=precision)) == torch_full(t, precision)


_FUZZ_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.bool, torch.complex64]
_SPECIALS = [0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-7, 1e9, 12345.0, -3.0, 0.5, 1e-120, -1e150]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dims=st.lists(st.integers(0, 9), min_size=0, max_size=4),
    dtype=st.sampled_from(_FUZZ_DTYPES),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 7.0, 1e4, 1e10]),
    specials=st.lists(st.sampled_from(_SPECIALS), max_size=4),
    precision=st.integers(0, 8),
    chunks=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    seed=st.integers(0, 2**16),
)
def test_fuzzed_streamed_text_matches_torch(
    dims: list[int],
    dtype: torch.dtype,
    scale: float,
    specials: list[float],
    precision: int,
    chunks: tuple[int, int],
    seed: int,
) -> None:
    t = random_tensor(dims, dtype, scale, specials, seed)
    saved = fulltext.SCAN_CHUNK, fulltext.TEXT_CHUNK
    fulltext.SCAN_CHUNK, fulltext.TEXT_CHUNK = chunks
    try:
        got = streamed(t, PrintOptions(threshold=math.inf, precision=precision))
    finally:
        fulltext.SCAN_CHUNK, fulltext.TEXT_CHUNK = saved
    assert got == torch_full(t, precision)


def test_pinned_text() -> None:
    """One exact case written out: 3-d, wrapped rows, blank line between blocks, dtype suffix."""
    t = torch.arange(-6, 24, dtype=torch.float16).reshape(2, 1, 15) * 0.5
    assert streamed(t) == (
        "tensor([[[-3.0000, -2.5000, -2.0000, -1.5000, -1.0000, -0.5000,  0.0000,\n"
        "           0.5000,  1.0000,  1.5000,  2.0000,  2.5000,  3.0000,  3.5000,\n"
        "           4.0000]],\n"
        "\n"
        "        [[ 4.5000,  5.0000,  5.5000,  6.0000,  6.5000,  7.0000,  7.5000,\n"
        "           8.0000,  8.5000,  9.0000,  9.5000, 10.0000, 10.5000, 11.0000,\n"
        "          11.5000]]], dtype=torch.float16)"
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cli_full_matches_torch_for_every_dtype_and_view(tmp_path: Path, dtype: torch.dtype) -> None:
    base = (torch.randn(40, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 50).to(dtype)
    sd = {"whole": base, "t": base.t(), "cols": base[1:4, ::2], "scalar": base[1, 1], "empty": base[:0]}
    sd["cube"] = base.reshape(4, 10, 30)
    torch.save(sd, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    result = run_cli("get", tmp_path / "m.pt", *sd, "--full")
    assert result.code == 0, result.err
    dtype_name = str(dtype)[6:]
    blocks = [f"{name}  {dtype_name} [{', '.join(map(str, t.shape))}]\n{torch_full(t)}\n" for name, t in loaded.items()]
    assert result.out == "\n".join(blocks)


def test_cli_markdown_and_tied_header(tmp_path: Path) -> None:
    w = torch.randn(12, 100, generator=torch.Generator().manual_seed(6))
    torch.save({"a.weight": w, "b.weight": w}, tmp_path / "m.pt")
    result = run_cli("get", tmp_path / "m.pt", "b.weight", "--full", "-f", "markdown")
    assert result.out == f"`b.weight` float32 [12, 100]  (tied to a.weight)\n\n```\n{torch_full(w)}\n```\n"


def test_full_never_holds_the_whole_tensor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading more than LIMIT elements at once, or the whole array, fails the test."""
    limit = 1000
    g = torch.Generator().manual_seed(7)
    sd = {"w": torch.randn(60, 300, generator=g), "v": torch.randn(5000, dtype=torch.float64, generator=g)}
    sd["t"] = sd["w"].t()  # strided: chunks are gathered through a memory map
    sd["c"] = torch.randn(30, 70, dtype=torch.complex64, generator=g)
    torch.save(sd, tmp_path / "m.pt")

    original_iter, original_read = tensors.iter_chunks, tensors._read_contiguous

    def bounded_iter(ref: Any, chunk_elements: int = limit) -> Iterator[np.ndarray]:
        assert chunk_elements <= limit, f"asked for {chunk_elements} elements at once"
        return original_iter(ref, chunk_elements)

    def bounded_read(fh: Any, ref: Any, first: int, count: int) -> np.ndarray:
        assert count <= limit, f"read {count} elements at once"
        return original_read(fh, ref, first, count)

    def whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole tensor was read")

    def bounded_values(array: np.ndarray, dtype_name: str) -> Any:
        assert array.size <= limit, f"{array.size} values as Python numbers"
        return printing.python_values(array, dtype_name)

    monkeypatch.setattr(values, "iter_chunks", bounded_iter)
    monkeypatch.setattr(tensors, "_read_contiguous", bounded_read)
    monkeypatch.setattr(values, "read_array", whole)
    monkeypatch.setattr(tensors, "read_array", whole)
    monkeypatch.setattr(fulltext, "python_values", bounded_values)
    monkeypatch.setattr(fulltext, "SCAN_CHUNK", limit)
    monkeypatch.setattr(fulltext, "TEXT_CHUNK", limit)
    result = run_cli("get", tmp_path / "m.pt", *sd, "--full")
    assert result.code == 0, result.err
    shapes = {n: ", ".join(map(str, t.shape)) for n, t in sd.items()}
    assert result.out == "\n".join(f"{n}  {str(t.dtype)[6:]} [{shapes[n]}]\n{torch_full(t)}\n" for n, t in sd.items())


def test_broken_pipe_is_success_and_torch_is_never_imported(tmp_path: Path) -> None:
    """``get --full big | head``: the reader leaves early; exit 0, nothing on stderr."""
    save_file({"w": torch.randn(400, 1000, generator=torch.Generator().manual_seed(8))}, tmp_path / "m.safetensors")
    exe = shutil.which("paraminspect", path=str(Path(sys.executable).parent))  # as run_script finds it
    assert exe, "paraminspect console script is not installed next to this python"
    proc = subprocess.Popen(
        [exe, "get", tmp_path / "m.safetensors", "w", "--full"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(200)
    proc.stdout.close()  # like head exiting: the next write gets EPIPE
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert head.startswith(b"w  float32 [400, 1000]\ntensor([[")
    assert err == b""
    code = (
        "import sys; from paraminspect.cli import main; "
        f"assert main(['get', {str(tmp_path / 'm.safetensors')!r}, 'w', '--full']) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert check.returncode == 0, check.stderr


def test_every_reader_feeds_the_streamed_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DCP pieces (reassembled slab by slab), legacy torch.save and sharded safetensors."""
    from tests.test_formats_dcp import TWO_RANKS, _model_state

    monkeypatch.setattr(fulltext, "SCAN_CHUNK", 5)
    monkeypatch.setattr(fulltext, "TEXT_CHUNK", 7)
    for name, t in _model_state().items():
        result = run_cli("get", TWO_RANKS, name, "--full")
        header = f"{name}  {str(t.dtype)[6:]} [{', '.join(map(str, t.shape))}]"
        assert result.out == f"{header}\n{torch_full(t)}\n", name
    sd = {"a.w": torch.randn(40, 50, generator=torch.Generator().manual_seed(9)), "c": torch.arange(7)}
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file({"a.w": sd["a.w"]}, tmp_path / "s1.safetensors")
    save_file({"c": sd["c"]}, tmp_path / "s2.safetensors")
    index = '{"metadata": {}, "weight_map": {"a.w": "s1.safetensors", "c": "s2.safetensors"}}'
    (tmp_path / "model.safetensors.index.json").write_text(index)
    expected = f"a.w  float32 [40, 50]\n{torch_full(sd['a.w'])}\n\nc  int64 [7]\n{torch_full(sd['c'])}\n"
    for path in (tmp_path / "legacy.pt", tmp_path / "model.safetensors.index.json"):
        assert run_cli("get", path, "a.w", "c", "--full").out == expected, path
