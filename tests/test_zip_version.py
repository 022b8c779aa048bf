"""The records torch.load checks before it unpickles anything (the version record, byteorder,
.storage_alignment): paraminspect refuses exactly the archives torch refuses, and reads the rest.

The oracle is ``torch.load(weights_only=True)`` on the same bytes: every verdict here is torch's,
never one written down. torch's reader (caffe2/serialize/inline_container.cc,
PyTorchStreamReader::init) reads ``.data/version`` if present, else requires ``version``, parses
it with ``std::stoull`` and wants 1 <= v <= 10 (versions.h); torch.load then wants ``byteorder``
to be exactly ``little`` or ``big`` and ``int()`` of ``.storage_alignment`` to succeed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paraminspect.api.reading import read_tensor
from paraminspect.errors import CheckpointError
from paraminspect.formats.opening import open_checkpoint
from paraminspect.inspect.scan import scan_file
from tests.conftest import run_cli

WEIGHTS = torch.arange(6.0).reshape(2, 3)


def _seed() -> dict[str, bytes]:
    """The records torch.save writes (names without the top folder), version record removed."""
    buffer = io.BytesIO()
    torch.save({"w": WEIGHTS}, buffer)
    with zipfile.ZipFile(buffer) as z:
        records = {info.filename.split("/", 1)[1]: z.read(info) for info in z.infolist()}
    del records["version"]
    return records


SEED = _seed()


def build(path: Path, replace: dict[str, bytes | None]) -> Path:
    """torch.save's archive with records added, replaced or (``None``) dropped, all stored."""
    records = {**SEED, **replace}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            if data is not None:
                z.writestr(f"archive/{name}", data)
    return path


def torch_loads(path: Path) -> bool:
    try:
        loaded = torch.load(path, weights_only=True)
    except Exception:  # RuntimeError, IndexError (stoull), ValueError, UnicodeDecodeError...
        return False
    assert torch.equal(loaded["w"], WEIGHTS)
    return True


def assert_agrees_with_torch(path: Path) -> None:
    """Our verdict is torch's; what we accept reads torch's values; what we refuse scan never calls clean."""
    accepted = torch_loads(path)
    try:
        ckpt = open_checkpoint(path)
    except CheckpointError as exc:
        assert not accepted, f"torch.load reads {path.name}, we refused it: {exc}"
        assert "\n" not in str(exc)
        assert scan_file(path).status == "inconclusive"
        return
    assert accepted, f"torch.load refuses {path.name}, we read it"
    assert read_tensor(ckpt.tensors["w"]).tolist() == WEIGHTS.tolist()
    assert scan_file(path).status == "clean"


# ---------------------------------------------------------------- the cases torch's reader decides one by one

VERSION_CASES = [
    ({"version": b"3\n"}, "what torch.save writes"),
    ({}, "no version record"),
    ({".data/version": b"3\n"}, "only .data/version"),
    ({"version": b"3\n", ".data/version": b"99\n"}, ".data/version wins: refused"),
    ({"version": b"99\n", ".data/version": b"3\n"}, ".data/version wins: read"),
    ({"VERSION": b"3"}, "found ignoring case, as miniz looks names up"),
    ({"version": b"3", ".DATA/Version": b"0"}, ".data/version found ignoring case"),
    ({"version": b"0"}, "below the minimum"),
    ({"version": b"1"}, "the minimum"),
    ({"version": b"10"}, "the maximum"),
    ({"version": b"11"}, "above the maximum"),
    ({"version": b" \t\n\v\f\r3"}, "C whitespace first"),
    ({"version": b"\x1c3"}, "Python whitespace, not C's"),
    ({"version": b"\xa03"}, "no-break space"),
    ({"version": b"+3"}, "a plus sign"),
    ({"version": b"-3"}, "negated in unsigned arithmetic: huge"),
    ({"version": b"-0"}, "minus zero is zero"),
    ({"version": b"-18446744073709551615"}, "negated 2^64-1 is 1"),
    ({"version": b"18446744073709551616"}, "2^64: out of range"),
    ({"version": b"-18446744073709551616"}, "minus 2^64: out of range"),
    ({"version": b"0" * 40 + b"3"}, "leading zeros"),
    ({"version": b"3abc"}, "trailing junk is ignored"),
    ({"version": b"3.5"}, "a fraction: its integer part"),
    ({"version": b"3\0junk"}, "a NUL ends the text"),
    ({"version": b"\x003"}, "a NUL first: no number"),
    ({"version": b""}, "empty"),
    ({"version": b"   "}, "only spaces"),
    ({"version": b"+ 3"}, "space after the sign"),
    ({"version": b"--3"}, "two signs"),
    ({"version": b"0x3"}, "hex is read as 0"),
    ({"version": "\u0663".encode()}, "an Arabic-Indic digit"),
    ({"version": b" " * 5000 + b"3"}, "long leading whitespace"),
]


@pytest.mark.parametrize(("records", "why"), VERSION_CASES, ids=[why for _, why in VERSION_CASES])
def test_version_record_verdict_is_torchs(tmp_path: Path, records: dict[str, bytes], why: str) -> None:
    assert_agrees_with_torch(build(tmp_path / "v.pt", records))


OTHER_CASES = [
    ({"version": b"3\n", "byteorder": b"little\n"}, "byteorder with a newline"),
    ({"version": b"3\n", "byteorder": b"Little"}, "byteorder in another case"),
    ({"version": b"3\n", "byteorder": b" little"}, "byteorder with a space"),
    ({"version": b"3\n", "byteorder": None}, "no byteorder: little"),
    ({"version": b"3\n", ".storage_alignment": b" 64\n"}, "alignment with spaces: int() reads it"),
    ({"version": b"3\n", ".storage_alignment": b"6_4"}, "alignment with an underscore: int() reads it"),
    ({"version": b"3\n", ".storage_alignment": b"sixty-four"}, "alignment not a number"),
    ({"version": b"3\n", ".storage_alignment": b""}, "alignment empty"),
]


@pytest.mark.parametrize(("records", "why"), OTHER_CASES, ids=[why for _, why in OTHER_CASES])
def test_other_records_torch_load_checks(tmp_path: Path, records: dict[str, bytes | None], why: str) -> None:
    assert_agrees_with_torch(build(tmp_path / "r.pt", records))


def test_refusals_are_one_line_errors_naming_the_record(tmp_path: Path) -> None:
    for records, phrase in [
        ({}, "archive has no version record (archive/version or archive/.data/version)"),
        ({"version": b"99\n"}, "archive format version 99 (version record 'archive/version': '99') is newer"),
        ({"version": b"3", ".data/version": b"0"}, "version record 'archive/.data/version': '0') is older"),
        ({"version": b"-1"}, "archive format version 18446744073709551615"),
        ({"version": b"v3"}, "version record 'archive/version' holds no version number ('v3')"),
        ({"version": b"99999999999999999999"}, "holds a version number of 2^64 or more ('99999999999999999999')"),
    ]:
        path = build(tmp_path / "e.pt", records)
        assert not torch_loads(path)
        for command in ("tree", "scan"):
            result = run_cli(command, path)
            assert (result.code, result.out if command == "tree" else "") == (2, ""), result
            (line,) = result.err.splitlines()
            assert line.startswith(f"paraminspect: error: {path}: ") and phrase in line, line


# ---------------------------------------------------------------- generated version records

_SPACES = [b" ", b"\t", b"\n", b"\v", b"\f", b"\r", b"\x1c", b"\x85", b"\xa0", b"\0"]
_NUMBERS = [b"0", b"1", b"3", b"9", b"10", b"11", b"99", b"007", b"18446744073709551615", b"18446744073709551616"]


@st.composite
def version_text(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=12))
    lead = b"".join(draw(st.lists(st.sampled_from(_SPACES), max_size=3)))
    sign = draw(st.sampled_from([b"", b"", b"+", b"-", b"--", b"+-"]))
    number = draw(st.one_of(st.sampled_from(_NUMBERS), st.integers(0, 1 << 70).map(lambda n: str(n).encode())))
    number = b"" if draw(st.integers(0, 7)) == 0 else number
    tail = draw(st.sampled_from([b"", b"", b"\n", b" junk", b".5", b"\0x", b"abc", b"e2", b"0x"]))
    return lead + sign + number + tail


@st.composite
def version_records(draw: st.DrawFn) -> dict[str, bytes]:
    records = {}
    for name in ("version", ".data/version"):
        if draw(st.booleans()):
            spelled = draw(st.sampled_from([name, name, name.upper(), name.title()]))
            records[spelled] = draw(version_text())
    return records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=version_records())
def test_generated_version_records_get_torchs_verdict(tmp_path: Path, records: dict[str, bytes]) -> None:
    assert_agrees_with_torch(build(tmp_path / "g.pt", records))
