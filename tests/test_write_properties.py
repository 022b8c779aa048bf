"""Property test: any state dict converts to the exact bytes safetensors writes, and back exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from tests.conftest import run_cli
from tests.test_write_safetensors import DTYPES, assert_bit_identical

NAMES = st.text(alphabet="ab.0 é_", min_size=1, max_size=8).filter(lambda n: n != "__metadata__")


@st.composite
def state_dicts(draw: st.DrawFn) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    state: dict[str, torch.Tensor] = {}
    for name in names:
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        numel = 1
        for d in shape:
            numel *= d
        width = torch.empty(0, dtype=dtype).element_size()
        raw = draw(st.binary(min_size=numel * width, max_size=numel * width))
        tensor = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        state[name] = (tensor > 127).reshape(shape) if dtype == torch.bool else tensor.view(dtype).reshape(shape)
    ties = []
    if len(names) > 1 and draw(st.booleans()):
        ties.append((names[1], names[0]))
        state[names[1]] = state[names[0]]
    return state, ties


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state_dicts())
def test_convert_matches_official_writer_and_round_trips(
    case: tuple[dict[str, torch.Tensor], list[tuple[str, str]]],
) -> None:
    state, ties = case
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save(state, work / "a.pt")
        assert run_cli("convert", work / "a.pt", work / "b.safetensors").code == 0
        if not ties:
            save_file(state, str(work / "official.safetensors"))
            assert (work / "b.safetensors").read_bytes() == (work / "official.safetensors").read_bytes()
        assert run_cli("convert", work / "b.safetensors", work / "c.pt").code == 0
        back = torch.load(work / "c.pt", weights_only=True)
        assert_bit_identical(state, back)
        for alias, owner in ties:
            assert back[alias].data_ptr() == back[owner].data_ptr() or back[owner].numel() == 0
