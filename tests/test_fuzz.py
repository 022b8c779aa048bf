"""Property-based fuzzing: mutate valid files and run every reader on them.

The only acceptable outcomes are a consistent result or the project's own
:class:`ParamInspectError`. The default run is small and derandomized (a few
hundred cases in a few seconds); the long run is the same tests with more cases:

    PARAMINSPECT_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest tests/test_fuzz.py -q

(100,000 cases per strategy; set a random seed with ``--hypothesis-seed=N``.)
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickletools
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from paraminspect import ParamInspectError, open_checkpoint
from paraminspect.data.arrays import iter_chunks, read_array
from paraminspect.inspect import shapes, tree
from paraminspect.inspect.scan import scan_file
from paraminspect.model import TensorRef
from paraminspect.output import render
from paraminspect.output.render import OutputFormat
from tests.conftest import SAMPLES

LONG = int(os.environ.get("PARAMINSPECT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=LONG or 60,
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
OPCODE_BYTES = [op.code.encode("latin-1") for op in pickletools.opcodes]


@functools.cache
def _seeds() -> dict[str, list[bytes]]:
    """Valid files to mutate: the samples plus richer ones built here (views, dtypes, nesting)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rich = Path(tmp) / "rich.pt"
        base = torch.arange(24.0).reshape(4, 6)
        torch.save(
            {
                "model": {"w": base, "t": base.t(), "row": base[1], "half": base.half(), "p": torch.nn.Parameter(base)},
                "opt": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
                "ints": torch.arange(5, dtype=torch.int64),
                "bf": torch.ones(3, dtype=torch.bfloat16),
                "f8": torch.zeros(2, dtype=torch.float8_e4m3fn),
                "epoch": 3,
                "empty": torch.zeros(0, 2),
            },
            rich,
        )
        rich_st = Path(tmp) / "rich.safetensors"
        save_file(
            {"a": base, "b": torch.ones(3, dtype=torch.bfloat16), "c": torch.arange(4, dtype=torch.int16)},
            str(rich_st),
            metadata={"format": "pt"},
        )
        pts = [rich.read_bytes(), *((SAMPLES / n).read_bytes() for n in ("mlp.pt", "trainer_checkpoint.pt"))]
        sts = [rich_st.read_bytes(), *((SAMPLES / n).read_bytes() for n in ("mlp.safetensors", "tied.safetensors"))]
    return {"pt": pts, "safetensors": sts}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "case.bin"


def exercise(path: Path, data: bytes) -> None:
    """Every reader on ``path``; anything but success or ParamInspectError fails the test."""
    path.write_bytes(data)
    try:
        ckpt = open_checkpoint(path)
    except ParamInspectError:
        ckpt = None
    if ckpt is not None:
        size = len(data)
        for ref in ckpt.tensors.values():
            begin, end = ref.byte_range()
            assert 0 <= begin <= end <= size or ref.numel == 0 or end > size  # past the end: refused on read
            _read_values(ref)
        for fmt in (f for f in OutputFormat if f is not OutputFormat.sarif):  # trees and tables refuse SARIF
            render.format_tree(tree.report(ckpt), fmt, render.Colours(io.StringIO()))
            render.format_table(shapes.report(ckpt), fmt)
    result = scan_file(path)
    assert result.error is None or isinstance(result.error, ParamInspectError)
    render.format_table(_scan_table(path), OutputFormat.json)


def _scan_table(path: Path) -> object:
    from paraminspect.inspect import scan

    return scan.report([path]).table


def _read_values(ref: TensorRef) -> None:
    try:
        for i, _chunk in enumerate(iter_chunks(ref, chunk_elements=4096)):
            if i >= 2:
                break
        if ref.numel <= 1 << 16:
            array = read_array(ref)
            assert array.shape == ref.shape
    except ParamInspectError:
        pass


@st.composite
def byte_edits(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "duplicate", "truncate"]))
        if kind == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            out[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "duplicate":
            span = bytes(out[at : at + draw(st.integers(1, 32))])
            out[at:at] = span
        else:
            del out[at:]
    return bytes(out)


@st.composite
def pickle_edits(draw: st.DrawFn, pkl: bytes) -> bytes:
    """Perturb opcodes: replace, insert or drop opcode bytes, or edit their arguments."""
    out = bytearray(pkl)
    positions = [pos for _, _, pos in pickletools.genops(pkl)]
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from(positions)) if draw(st.booleans()) else draw(st.integers(0, len(out) - 1))
        at = min(at, len(out) - 1)
        kind = draw(st.sampled_from(["replace", "insert", "drop", "arg"]))
        if kind == "replace":
            out[at : at + 1] = draw(st.sampled_from(OPCODE_BYTES))
        elif kind == "insert":
            out[at:at] = draw(st.sampled_from(OPCODE_BYTES))
        elif kind == "drop":
            del out[at : at + 1]
        elif at + 1 < len(out):
            out[at + 1] = draw(st.integers(0, 255))
    return bytes(out)


def _rezip(seed: bytes, pkl: bytes) -> bytes:
    """The seed archive with data.pkl replaced: a valid zip around a damaged pickle."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(seed)) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, pkl if info.filename.endswith("/data.pkl") else src.read(info))
    return buffer.getvalue()


def _data_pkl(seed: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(seed)) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


@FUZZ
@given(st.data())
def test_fuzz_torch_zip_bytes(target: Path, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(_seeds()["pt"]))
    exercise(target, data.draw(byte_edits(seed)))


@FUZZ
@given(st.data())
def test_fuzz_torch_zip_pickle_opcodes(target: Path, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(_seeds()["pt"]))
    exercise(target, _rezip(seed, data.draw(pickle_edits(_data_pkl(seed)))))


@FUZZ
@given(st.data())
def test_fuzz_safetensors_bytes(target: Path, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(_seeds()["safetensors"]))
    exercise(target, data.draw(byte_edits(seed)))


_JSON_PIECES = ['"', "{", "}", "[", "]", ",", ":", "-", "0", "1", "9", "e", ".", "NaN", "true", "null", '"F32"']


@st.composite
def header_edits(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """Edit the JSON header (fixing up its length) or splice one file's header onto another's data."""
    seed = draw(st.sampled_from(seeds))
    (length,) = struct.unpack("<Q", seed[:8])
    header, body = seed[8 : 8 + length].decode(), seed[8 + length :]
    if draw(st.booleans()):
        other = draw(st.sampled_from(seeds))
        body = other[8 + struct.unpack("<Q", other[:8])[0] :]
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(header)))
        piece = draw(st.sampled_from(_JSON_PIECES))
        cut = draw(st.integers(0, 3))
        header = header[:at] + piece + header[at + cut :]
    raw = header.encode()
    return struct.pack("<Q", len(raw)) + raw + body


@FUZZ
@given(st.data())
def test_fuzz_safetensors_headers(target: Path, data: st.DataObject) -> None:
    exercise(target, data.draw(header_edits(_seeds()["safetensors"])))


def test_seeds_are_valid_and_match_torch(target: Path) -> None:
    """The unmutated seeds must read completely, or the fuzzing proves little."""
    for kind, seeds in _seeds().items():
        for seed in seeds:
            target.write_bytes(seed)
            ckpt = open_checkpoint(target)
            assert ckpt.tensors, kind
            if kind == "safetensors":
                json.loads(seed[8 : 8 + struct.unpack("<Q", seed[:8])[0]])
            for ref in ckpt.tensors.values():
                if ref.dtype.numpy is not None:
                    read_array(ref)
