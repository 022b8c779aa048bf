"""Zips that torch's reader (miniz) and Python's zipfile read differently: we accept one only
when torch's own record reader sees the very bytes we see, and ``scan`` calls the rest ambiguous.

The oracle is ``torch._C.PyTorchFileReader`` (what ``torch.load`` uses to get ``data.pkl``);
nothing here is ever unpickled by torch. The "evil" pickle calls ``builtins.print``, a harmless
stand-in for ``os.system``.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paraminspect.errors import AmbiguousArchive, CheckpointError
from paraminspect.formats.torchzip import open_archive
from paraminspect.inspect.scan import scan_file
from tests.conftest import run_cli
from tests.test_limits import many_records_zip

BENIGN = pickle.dumps({"a": 1}, protocol=2)
EVIL = b"\x80\x02cbuiltins\nprint\nX\x04\x00\x00\x00evil\x85R."  # print('evil'): os.system's stand-in
TOP = b"archive/"


def torch_record(path: Path, name: str) -> bytes | None:
    """The record as torch.load would read it, or None if torch refuses the archive or lacks it."""
    try:
        return bytes(torch._C.PyTorchFileReader(str(path)).get_record(name))
    except RuntimeError:
        return None


def local(name: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data)
    return b"PK\x03\x04" + struct.pack("<HHHHHIIIHH", 20, 0, 0, 0, 0, crc, len(data), len(data), len(name), 0) + name


def central(name: bytes, data: bytes, offset: int, external: int = 0) -> bytes:
    crc = zlib.crc32(data)
    fields = (20, 20, 0, 0, 0, 0, crc, len(data), len(data), len(name), 0, 0, 0, 0, external, offset)
    return b"PK\x01\x02" + struct.pack("<HHHHHHIIIHHHHHII", *fields) + name


def end(count: int, cd_size: int, cd_offset: int, comment: bytes = b"") -> bytes:
    return b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, count, count, cd_size, cd_offset, len(comment)) + comment


def members(pickle_name: bytes = b"data.pkl", pkl: bytes = BENIGN) -> list[tuple[bytes, bytes]]:
    return [(TOP + pickle_name, pkl), (TOP + b"byteorder", b"little"), (TOP + b"version", b"3\n")]


def records(items: list[tuple[bytes, bytes]], base: int = 0) -> tuple[bytes, bytes]:
    """Local records and the central directory listing them, the records starting at ``base``."""
    body, directory = b"", b""
    for name, data in items:
        directory += central(name, data, base + len(body))
        body += local(name, data) + data
    return body, directory


def archive(items: list[tuple[bytes, bytes]], comment: bytes = b"") -> bytes:
    body, directory = records(items)
    return body + directory + end(len(items), len(directory), len(body), comment)


def ours(path: Path) -> bytes | Exception:
    """data.pkl as paraminspect's reader sees it, or the error it refuses the file with."""
    with open(path, "rb") as fh:
        try:
            return open_archive(path, fh, path.stat().st_size).read("data.pkl", 1 << 20)
        except CheckpointError as exc:
            return exc


def assert_refused_as_ambiguous(path: Path) -> None:
    assert isinstance(ours(path), AmbiguousArchive)
    tree = run_cli("tree", path)
    assert tree.code == 2 and "ambiguous archive: " in tree.err and tree.out == ""
    scan = run_cli("scan", path)
    assert scan.code == 1, scan
    assert scan.err.startswith(f"paraminspect: scan: {path}: ambiguous archive: "), scan.err
    assert scan_file(path).status == "ambiguous"


# ---------------------------------------------------------------- the exploits: torch would run the evil pickle


def test_names_equal_ignoring_case(tmp_path: Path) -> None:
    seen_by_torch: set[bytes | None] = set()
    for evil_at in (0, 3):  # before or after the benign data.pkl
        items = members()
        items.insert(evil_at, (TOP + b"Data.pkl", EVIL))
        path = tmp_path / f"case-{evil_at}.pt"
        path.write_bytes(archive(items))
        seen_by_torch.add(torch_record(path, "data.pkl"))
        assert_refused_as_ambiguous(path)
    assert EVIL in seen_by_torch  # the trick is real: torch finds Data.pkl when asked for data.pkl


def test_shifted_central_directory(tmp_path: Path) -> None:
    """The end record's CD offset points at an evil directory; Python shifts to the benign one."""
    evil_body, evil_cd = records(members(pkl=EVIL))
    prefix = evil_body + evil_cd
    benign = members()
    benign_body, _ = records(benign)
    cd_at = len(prefix) + len(benign_body)
    shift = cd_at - len(evil_body)  # what zipfile adds to every offset of the directory it reads
    _, benign_cd = records(benign, base=len(prefix) - shift)
    assert len(benign_cd) == len(evil_cd)
    path = tmp_path / "shifted.pt"
    path.write_bytes(prefix + benign_body + benign_cd + end(3, len(benign_cd), len(evil_body)))
    assert torch_record(path, "data.pkl") == EVIL
    assert zipfile.ZipFile(path).read("archive/data.pkl") == BENIGN  # what paraminspect used to read
    assert_refused_as_ambiguous(path)


def test_end_signature_inside_the_comment(tmp_path: Path) -> None:
    """zipfile takes the last signature (and fails on it); miniz the last one with 22 bytes after it."""
    path = tmp_path / "comment.pt"
    path.write_bytes(archive(members(pkl=EVIL), comment=b"PK\x05\x06" + b"\0" * 10))
    assert torch_record(path, "data.pkl") == EVIL
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(path)
    assert_refused_as_ambiguous(path)  # scan used to say "unreadable" (exit 2) for a file torch loads


@pytest.mark.parametrize("evil_first", [True, False])
def test_duplicate_names(tmp_path: Path, evil_first: bool) -> None:
    """torch reads the first of two equal names, Python's zipfile the last."""
    items = members()
    items.insert(0 if evil_first else 3, (TOP + b"data.pkl", EVIL))
    path = tmp_path / "dup.pt"
    path.write_bytes(archive(items))
    if evil_first:
        assert torch_record(path, "data.pkl") == EVIL
        assert zipfile.ZipFile(path).read("archive/data.pkl") == BENIGN
    assert_refused_as_ambiguous(path)


def test_count_patched_below_the_directory(tmp_path: Path) -> None:
    """miniz parses as many entries as the count says; zipfile every entry in the directory."""
    items = [(TOP + b"data.pkl", EVIL), *members()[1:], (TOP + b"data.pkl", BENIGN)]
    body, directory = records(items)
    path = tmp_path / "count.pt"
    path.write_bytes(body + directory + end(3, len(directory), len(body)))
    assert torch_record(path, "data.pkl") == EVIL
    assert_refused_as_ambiguous(path)


def test_record_count_is_held_to_what_is_parsed(tmp_path: Path) -> None:
    path = many_records_zip(tmp_path / "many.pt", 50_000)
    data = bytearray(path.read_bytes())
    at = data.rindex(b"PK\x06\x06")
    data[at + 24 : at + 40] = struct.pack("<QQ", 1, 1)  # the zip64 counts claim one record
    path.write_bytes(bytes(data))
    error = ours(path)
    assert isinstance(error, AmbiguousArchive)
    assert "bytes after its 1 records" in error.message


# ---------------------------------------------------------------- other layouts torch.save never writes


def _mutations() -> dict[str, bytes]:
    items = members()
    good = archive(items)
    body, directory = records(items)
    local_method = bytearray(good)
    local_method[8] = 8  # deflate in the local header, stored in the directory
    (pkl, pkl_data), (order, order_data), (version, version_data) = items
    version_at = body.index(b"PK\x03\x04" + struct.pack("<H", 20), 1 + body.index(order))
    overlap = central(pkl, pkl_data, 0) + central(order, order_data, 0) + central(version, version_data, version_at)
    marked = central(pkl, pkl_data, 0, external=0x10) + directory[46 + len(pkl) :]
    return {
        "prepended": local(TOP + b"x", b"") + good,  # zipfile shifts past it, miniz does not
        "appended": good + b"trailing",
        "comment_too_long": good[:-2] + struct.pack("<H", 5),
        "local_method": bytes(local_method),
        "local_name": good.replace(b"archive/byteorder", b"archive/byteordeR", 1),
        "gap": body + b"\0" * 8 + directory + end(3, len(directory), len(body) + 8),
        "overlap": body + overlap + end(3, len(overlap), len(body)),
        "directory_attribute": body + marked + end(3, len(marked), len(body)),
        "nul_in_name": archive([(TOP + b"data.pkl\0x", BENIGN), *items]),
    }


MUTATIONS = _mutations()


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_layouts_torch_save_never_writes_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.pt"
    path.write_bytes(MUTATIONS[name])
    assert_refused_as_ambiguous(path)


def test_the_builder_makes_archives_both_readers_accept(tmp_path: Path) -> None:
    path = tmp_path / "good.pt"
    path.write_bytes(archive(members()))
    assert ours(path) == torch_record(path, "data.pkl") == BENIGN


# ---------------------------------------------------------------- random mutations of a real torch.save file


def _seed() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(6.0), "b": torch.arange(3, dtype=torch.int64)}, buffer)
    return buffer.getvalue()


SEED = _seed()


def _fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every structure field of the seed's zip: local headers, directory, end records."""
    fields: list[tuple[int, int]] = []
    layouts = {
        b"PK\x03\x04": [(6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2), (30, 1), (37, 1)],
        b"PK\x01\x02": [(8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (34, 2), (38, 4), (42, 4)],
        b"archive/": [(0, 1), (8, 1)],  # names: the folder's first letter, the record's first letter
        b"PK\x07\x08": [(4, 4), (8, 4), (12, 4)],
        b"PK\x06\x06": [(4, 8), (24, 8), (32, 8), (40, 8), (48, 8)],
        b"PK\x06\x07": [(4, 4), (8, 8), (16, 4)],
        b"PK\x05\x06": [(4, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2)],
    }
    for signature, layout in layouts.items():
        start = 0
        while (at := data.find(signature, start)) >= 0:
            fields += [(at + offset, width) for offset, width in layout]
            start = at + 4
    return fields


FIELDS = _fields(SEED)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEED)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["field", "field", "field", "insert", "delete", "case"]))
        offset, width = draw(st.sampled_from(FIELDS))
        if kind == "field":
            old = int.from_bytes(data[offset : offset + width], "little")
            top = (1 << (8 * width)) - 1
            new = draw(st.sampled_from([0, 1, top, old + 1, old - 1, old + 16, old - 16, old + 64, old * 2]))
            new = draw(st.integers(0, top)) if draw(st.booleans()) and width > 1 else new
            data[offset : offset + width] = (new & top).to_bytes(width, "little")
        elif kind == "insert":
            data[offset:offset] = draw(st.binary(min_size=1, max_size=24))
        elif kind == "delete":
            del data[offset : offset + draw(st.integers(1, 24))]
        else:
            at = data.find(b"data.pkl", draw(st.integers(0, len(data))))
            if at >= 0:
                data[at] = ord("D")
    if draw(st.booleans()):
        data += draw(st.sampled_from([b"", b"PK\x05\x06", b"x" * 30]))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_whenever_we_accept_a_mutated_archive_torch_reads_the_same_records(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        try:
            found = open_archive(path, fh, len(data))
        except CheckpointError as exc:
            expected = "ambiguous" if isinstance(exc, AmbiguousArchive) else "inconclusive"
            assert scan_file(path).status == expected
            return
        seen: dict[str, bytes] = {}
        for name in ("data.pkl", "byteorder", "version", "data/0", "data/1"):
            with contextlib.suppress(CheckpointError):  # a record renamed away, say: no disagreement
                seen[name] = found.read(name, 1 << 20)
    reader = torch._C.PyTorchFileReader(str(path))  # must accept what we accept
    for name, payload in seen.items():
        assert bytes(reader.get_record(name)) == payload, name


class _Unseekable(io.RawIOBase):
    """A stream zipfile cannot seek back in: it writes data descriptors after each record."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.data += data
        return len(data)


@pytest.mark.parametrize("layout", ["zip64 local headers", "data descriptors"])
def test_layouts_other_writers_make_are_read_as_torch_reads_them(tmp_path: Path, layout: str) -> None:
    stream = _Unseekable()
    target: io.RawIOBase | Path = tmp_path / "w.pt" if layout == "zip64 local headers" else stream
    with zipfile.ZipFile(target, "w") as z:
        for name, data in members():
            with z.open(name.decode(), "w", force_zip64=layout == "zip64 local headers") as fh:
                fh.write(data)
    path = tmp_path / "w.pt"
    if layout == "data descriptors":
        path.write_bytes(bytes(stream.data))
    assert ours(path) == torch_record(path, "data.pkl") == BENIGN


def test_an_ambiguous_shard_makes_the_sharded_checkpoint_ambiguous(tmp_path: Path) -> None:
    items = members()
    items.insert(0, (TOP + b"data.pkl", EVIL))
    (tmp_path / "model-1.bin").write_bytes(archive(items))
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text('{"metadata": {}, "weight_map": {"a": "model-1.bin"}}')
    assert torch_record(tmp_path / "model-1.bin", "data.pkl") == EVIL
    scan = run_cli("scan", index)
    assert scan.code == 1, scan
    assert scan.err.startswith(f"paraminspect: scan: {index}: shard 'model-1.bin': ambiguous archive: "), scan.err
