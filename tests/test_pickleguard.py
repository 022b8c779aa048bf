"""The opcode walker that guards the C unpickler agrees with pickletools.genops."""

from __future__ import annotations

import pickle
import pickletools
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.pickle.guard import precheck, walk
from tests.conftest import SAMPLES

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=300)
    | st.complex_numbers(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=5)
        | st.frozensets(st.integers(), max_size=4)
        | st.sets(st.text(max_size=3), max_size=4)
    ),
    max_leaves=30,
)


def _genops_positions(data: bytes) -> list[int] | None:
    try:
        return [pos for _, _, pos in pickletools.genops(data)]
    except ValueError:
        return None


@settings(max_examples=150, deadline=None, derandomize=True)
@given(VALUES, st.integers(0, pickle.HIGHEST_PROTOCOL), st.binary(max_size=3), st.integers(0, 400))
def test_walk_finds_the_opcodes_genops_finds(value: object, protocol: int, noise: bytes, at: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    assert [pos for _, pos, _ in walk(data)] == _genops_positions(data)
    # Damaged pickles: whenever genops can still parse them, the walker agrees.
    damaged = data[:at] + noise + data[at + len(noise) :]
    expected = _genops_positions(damaged)
    if expected is not None:
        assert [pos for _, pos, _ in walk(damaged)] == expected


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.pt")), ids=lambda p: p.name)
def test_walk_on_torch_pickles(sample: object) -> None:
    with zipfile.ZipFile(sample) as z:  # type: ignore[arg-type]
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert [pos for _, pos, _ in walk(data)] == _genops_positions(data)
    precheck(data)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x02]r\xff\xff\xff\x7f.", "memo slot 2147483647 at byte 3 is out of range"),
        (b"\x80\x02]p99999999\n.", "memo slot 99999999 at byte 3 is out of range"),
        (b"\x80\x02]pxx\n.", "bad memo index"),
        (b"\x80\x02\xff.", "unknown opcode 0xff at byte 2"),
        (b"\x80\x02X\xff\xff\xff\x00abc.", "truncated BINUNICODE at byte 2"),
        (b"\x80\x02T\xff\xff\xff\xffabc.", "negative length"),
        (b"\x80\x02cos\nsystem", "no newline after GLOBAL"),
        (b"\x80\x02]", "exhausted before seeing STOP"),
    ],
)
def test_precheck_refuses(data: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        precheck(data)


def test_precheck_budget() -> None:
    sets = b"\x80\x04(" + b"\x8f" * 10_000 + b"l."
    with pytest.raises(LimitExceeded, match="more than 1,000,000 bytes of objects"):
        precheck(sets, 1_000_000)
    precheck(sets, 3_000_000)
