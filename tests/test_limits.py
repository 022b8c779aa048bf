"""Resource limits: defaults stop hostile shapes early; --max-... options raise them."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from paraminspect import LimitExceeded, Limits, limits, open_checkpoint
from paraminspect.errors import CheckpointError
from paraminspect.formats.pickle.unpickler import SAFE_GLOBALS, safe_loads
from paraminspect.model import measure
from tests.conftest import SAMPLES, run_cli


def zip_with_pickle(path: Path, pkl: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return path


def dag_bomb(levels: int) -> bytes:
    """Lists two-deep in the same child, ``levels`` times: 2**levels paths, ~8 bytes a level."""
    out = b"\x80\x02]q\x00"
    for i in range(1, levels + 1):
        out += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
    return out + b"."


def test_measure_counts_shared_containers_without_walking_them() -> None:
    obj = pickle.loads(dag_bomb(64))
    with pytest.raises(LimitExceeded, match="expands to more than 1,000,000 entries"):
        measure(obj, max_entries=1_000_000)
    assert measure(pickle.loads(dag_bomb(10)), max_entries=2000) == (1024, 10)


def test_dag_bomb_fails_fast_and_a_small_dag_is_listed_in_full(tmp_path: Path) -> None:
    result = run_cli("tree", zip_with_pickle(tmp_path / "dag.pt", dag_bomb(64)))
    assert result.code == 2
    assert "expands to more than 200,000 entries (use --max-entries" in result.err
    # Sharing is legitimate at small scale: every path is listed, as torch.load would give.
    ckpt = open_checkpoint(zip_with_pickle(tmp_path / "small.pt", dag_bomb(3)))
    assert len(ckpt.entries) == 8
    assert "1.0.1" in ckpt.entries


def test_max_entries_option_raises_and_lowers_the_limit(tmp_path: Path) -> None:
    path = zip_with_pickle(tmp_path / "dag.pt", dag_bomb(12))  # 4096 entries
    assert run_cli("--max-entries", "4095", "shapes", path).code == 2
    assert run_cli("--max-entries", "4096", "shapes", path).code == 0
    # The option does not leak into later calls in the same process.
    assert limits.current() == limits.DEFAULT_LIMITS
    assert run_cli("--max-entries", "3", "shapes", SAMPLES / "mlp.safetensors").code == 2


def test_max_depth_option(tmp_path: Path) -> None:
    n = 1500
    path = zip_with_pickle(tmp_path / "deep.pt", b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b".")
    result = run_cli("tree", path)
    assert result.code == 2 and "nesting deeper than 1000 levels (use --max-depth" in result.err
    assert run_cli("--max-depth", "2000", "shapes", path).code == 0


def test_max_numel_stops_zero_stride_giants(tmp_path: Path) -> None:
    huge = torch.ones(1).expand(1 << 30, 1 << 30)  # 2**60 elements over one float
    torch.save({"x": huge}, tmp_path / "z.pt")
    result = run_cli("shapes", tmp_path / "z.pt")
    assert result.code == 2
    assert "tensors claim 1,152,921,504,606,846,976 elements in total, over the" in result.err
    assert run_cli("--max-numel", str(1 << 60), "shapes", tmp_path / "z.pt").code == 0
    with limits.using(Limits(max_numel=1 << 61)):
        assert open_checkpoint(tmp_path / "z.pt").tensors["x"].numel == 1 << 60


def test_max_pickle_bytes_option(tmp_path: Path) -> None:
    torch.save({"a": torch.ones(2)}, tmp_path / "a.pt")
    result = run_cli("--max-pickle-bytes", "10", "shapes", tmp_path / "a.pt")
    assert result.code == 2 and "over the 10-byte limit" in result.err


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02ctorch\nfloat16\n}X\x05\x00\x00\x00dtypeK\x07sb.",  # BUILD on a dtype stand-in
        b"\x80\x02ctorch\nSize\nN}X\x0c\x00\x00\x00__defaults__K\x07s\x86b.",  # slot-state on a function
    ],
)
def test_build_cannot_modify_shared_stand_ins(payload: bytes) -> None:
    before = {key: str(value) for key, value in SAFE_GLOBALS.items()}
    with pytest.raises(CheckpointError, match="pickle tries to modify"):
        safe_loads(payload)
    assert {key: str(value) for key, value in SAFE_GLOBALS.items()} == before


class _Storage:
    """Pickled as a torch storage persistent id."""


class _MovedTensor:
    """A real tensor rebuild followed by BUILD state that moves it past its storage."""

    def __init__(self, storage: _Storage) -> None:
        self.storage = storage

    def __reduce__(self) -> tuple[object, ...]:
        args = (self.storage, 0, (2,), (1,), False, collections.OrderedDict())
        return torch._utils._rebuild_tensor_v2, args, {"storage_offset": 10**6}


def storage_pickle(obj: object, storage: _Storage) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, item: object) -> object:
            return ("storage", torch.FloatStorage, "0", "cpu", 2) if item is storage else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def test_build_cannot_move_a_checked_tensor(tmp_path: Path) -> None:
    storage = _Storage()
    path = zip_with_pickle(tmp_path / "moved.pt", storage_pickle({"t": _MovedTensor(storage)}, storage))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("archive/data/0", b"\0" * 8)
    with pytest.raises(CheckpointError, match="pickle tries to modify a TensorRef"):
        open_checkpoint(path)


def many_records_zip(path: Path, count: int) -> Path:
    """A zip64 archive whose central directory lists ``count`` empty records (no payloads)."""
    first = b"archive/data.pkl"
    local = b"PK\x03\x04" + struct.pack("<HHHHHIIIHH", 20, 0, 0, 0, 0, 0, 0, 0, len(first), 0) + first
    directory = bytearray()
    for i in range(count):
        name = first if i == 0 else f"archive/data/{i}".encode()
        directory += b"PK\x01\x02" + struct.pack("<HHHHHHIIIHHHHHII", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), *[0] * 6)
        directory += name
    start = len(local)
    end64 = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, count, count, len(directory), start)
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, start + len(directory), 1)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(local + directory + end64 + locator + end)
    return path


def test_zip_record_count_is_checked_before_zipfile_reads_the_directory(tmp_path: Path) -> None:
    path = many_records_zip(tmp_path / "many.pt", 2000)
    for command in ("shapes", "scan"):
        result = run_cli("--max-entries", "100", command, path)
        assert result.code == 2
        assert "zip archive lists 2,000 records, over the 116 limit (use --max-entries to raise it)" in result.err
    # Under the limit the directory is parsed and the layout checks apply (every record shares one header).
    assert "ambiguous archive: zip record 'archive/data.pkl' overlaps" in run_cli("shapes", path).err


def test_reading_a_view_too_big_for_memory_is_a_clean_error(tmp_path: Path) -> None:
    from paraminspect.data.arrays import iter_chunks, read_array

    torch.save({"x": torch.ones(1).expand(1 << 21, 1 << 21)}, tmp_path / "e.pt")  # 16 TiB as float32
    ref = open_checkpoint(tmp_path / "e.pt").tensors["x"]
    assert next(iter_chunks(ref, 4)).tolist() == [1.0] * 4  # chunked reading stays bounded
    with pytest.raises(CheckpointError, match="tensor needs 17,592,186,044,416 bytes in memory"):
        read_array(ref)


def test_pickle_memory_estimate_refuses_cheap_bytes_that_build_big_objects(tmp_path: Path) -> None:
    bomb = zip_with_pickle(tmp_path / "sets.pt", b"\x80\x04(" + b"\x8f" * 100_000 + b"l.")  # ~23 MB of sets
    result = run_cli("--max-pickle-bytes", "10000000", "shapes", bomb)
    assert result.code == 2
    assert "pickle would build more than 10,000,000 bytes of objects (use --max-pickle-bytes" in result.err
    assert run_cli("--max-pickle-bytes", "30000000", "shapes", bomb).code == 0


def test_limits_passed_to_open_checkpoint_reach_the_pickle_precheck(tmp_path: Path) -> None:
    bomb = zip_with_pickle(tmp_path / "sets.pt", b"\x80\x04(" + b"\x8f" * 100_000 + b"l.")
    with pytest.raises(LimitExceeded, match="more than 10,000,000 bytes of objects"):
        open_checkpoint(bomb, limits=Limits(max_pickle_bytes=10_000_000))
    open_checkpoint(bomb)
