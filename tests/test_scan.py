"""``scan``: static pickle analysis, cross-checked against torch's own checker."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from paraminspect.formats.pickle.scanner import ALLOWED, NUMPY_DATA, TORCH_SAFE, UNSAFE, classify, scan_pickle
from paraminspect.inspect.scan import scan_file
from tests.conftest import SAMPLES, run_cli, run_script

MLP_TABLE = (
    "file                  record        kind           name     "
    "                        status      count  opcode       at byte\n"
    "--------------------  ------------  -------------  ---------"
    "----------------------  --------  -------  ---------  ---------\n"
    "sample_models/mlp.pt  mlp/data.pkl  global         collectio"
    "ns.OrderedDict          allowed         1  GLOBAL             2\n"
    "sample_models/mlp.pt  mlp/data.pkl  global         torch._ut"
    "ils._rebuild_tensor_v2  allowed         1  GLOBAL            49\n"
    "sample_models/mlp.pt  mlp/data.pkl  global         torch.Flo"
    "atStorage               allowed         1  GLOBAL           100\n"
    "sample_models/mlp.pt  mlp/data.pkl  persistent-id  storage  "
    "                        allowed         4  BINPERSID        145\n"
)


def zip_with_pickle(path: Path, pkl: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")  # as torch.save writes it (torch refuses archives without one)
    return path


def test_clean_file_table_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SAMPLES.parent)
    result = run_cli("scan", "sample_models/mlp.pt")
    assert (result.code, result.out, result.err) == (0, MLP_TABLE, "")


def test_trainer_checkpoint_names_argparse_namespace_through_the_script() -> None:
    proc = run_script("scan", "--format", "json", SAMPLES / "trainer_checkpoint.pt", SAMPLES / "mlp.safetensors")
    assert proc.returncode == 1
    assert proc.stderr == "paraminspect: scan: 1 of 2 file(s) reference globals outside the allow-list\n"
    doc = json.loads(proc.stdout)
    assert doc["summary"] == {"files": 2, "clean": 1, "unsafe": 1, "ambiguous": 0, "inconclusive": 0}
    first, second = doc["files"]
    assert first["status"] == "unsafe" and first["format"] == "torch-zip" and first["error"] is None
    unsafe = [r for r in first["references"] if r["status"] == "unsafe"]
    assert unsafe == [
        {
            "record": "trainer_checkpoint/data.pkl",
            "kind": "global",
            "name": "argparse.Namespace",
            "status": "unsafe",
            "count": 1,
            "opcodes": ["GLOBAL"],
            "positions": [1491],
        }
    ]
    # The position is the opcode's offset, as pickletools shows it.
    with zipfile.ZipFile(SAMPLES / "trainer_checkpoint.pt") as z:
        listing = io.StringIO()
        pickletools.dis(z.read("trainer_checkpoint/data.pkl"), out=listing)
    assert " 1491: c        GLOBAL     'argparse Namespace'" in listing.getvalue()
    assert second == {
        "file": str(SAMPLES / "mlp.safetensors"),
        "format": "safetensors",
        "status": "clean",
        "error": None,
        "references": [],
    }


def test_unreadable_file_is_exit_2_with_other_files_still_reported(tmp_path: Path) -> None:
    result = run_cli("scan", "--unsafe-only", "-f", "csv", SAMPLES / "trainer_checkpoint.pt", tmp_path / "missing.pt")
    assert result.code == 2
    assert result.err.splitlines() == [
        f"paraminspect: error: {tmp_path / 'missing.pt'}: no such file",
        "paraminspect: scan: 1 of 2 file(s) reference globals outside the allow-list",
    ]
    assert f"{tmp_path / 'missing.pt'},,error,no such file,inconclusive,,," in result.out
    assert "argparse.Namespace,unsafe,1,GLOBAL,1491" in result.out


def _saved(tmp_path: Path, name: str, obj: object) -> Path:
    torch.save(obj, tmp_path / name)
    return tmp_path / name


ORACLE_CASES = {
    "state_dict": lambda: torch.nn.Linear(3, 2).state_dict(),
    "whole_module": lambda: torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()),
    "sparse": lambda: {"s": torch.eye(3).to_sparse()},
    "quantized": lambda: {"q": torch.quantize_per_tensor(torch.rand(4), 0.1, 3, torch.quint8)},
    "numpy_scalar": lambda: {"best": np.float64(0.5), "arr": np.arange(3)},
    "namespace": lambda: {"args": argparse.Namespace(lr=0.1), "w": torch.ones(2)},
    "parameter_and_views": lambda: {"p": torch.nn.Parameter(torch.ones(2, 3)), "t": torch.ones(4, 4).t()},
    "dtypes_and_devices": lambda: {"d": torch.float16, "dev": torch.device("cpu"), "size": torch.Size([2, 3])},
}


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_unsafe_set_matches_torch_weights_only(tmp_path: Path, case: str) -> None:
    path = _saved(tmp_path, f"{case}.pt", ORACLE_CASES[case]())
    expected = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    scan = scan_file(path)
    assert scan.error is None
    found = {f.ref.name for f in scan.findings if f.ref.kind == "global" and f.ref.status == UNSAFE}
    # paraminspect also decodes a few globals torch's default list lacks (frozenset, slice,
    # copyreg._reconstructor, and numpy's array data, which the Trainer allow-lists for torch);
    # nothing torch calls safe is unsafe here and vice versa.
    extra = {n for n in expected if classify(n) in (ALLOWED, NUMPY_DATA)}
    assert found == expected - extra
    assert scan.status == ("unsafe" if found else "clean")


def test_every_global_torch_allows_is_allowed_or_torch_safe_except_bytearray() -> None:
    from torch._weights_only_unpickler import _get_allowed_globals

    statuses = {name: classify(name) for name in _get_allowed_globals()}
    assert {n for n, s in statuses.items() if s == UNSAFE} == {"builtins.bytearray"}
    assert statuses["torch._utils._rebuild_sparse_tensor"] == TORCH_SAFE
    assert statuses["torch._utils._rebuild_tensor_v2"] == ALLOWED


def test_python2_builtin_module_maps_like_the_unpickler() -> None:
    assert classify("__builtin__.set") == ALLOWED
    assert classify("__builtin__.eval") == UNSAFE
    refs, _ = scan_pickle(b"c__builtin__\nset\n)R.")
    assert [(r.name, r.status) for r in refs if r.kind == "global"] == [("builtins.set", ALLOWED)]


class _System:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("true",)


def _names(data: bytes, kinds: frozenset[str] = frozenset()) -> list[tuple[str, str, str, int]]:
    refs, _ = scan_pickle(data, persistent_kinds=kinds)
    return [(r.kind, r.name, r.opcode, r.position) for r in refs if r.kind != "pattern"]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_protocol_names_os_system(protocol: int) -> None:
    data = pickle.dumps({"x": _System()}, protocol=protocol)
    (found,) = _names(data)
    assert found[1] in ("posix.system", "os.system")
    assert found[2] == ("STACK_GLOBAL" if protocol >= 4 else "GLOBAL")
    assert data[found[3] : found[3] + 1] == {"GLOBAL": b"c", "STACK_GLOBAL": b"\x93"}[found[2]]


def test_stack_global_through_memo_and_computed_names() -> None:
    # 'os' and 'system' memoized, then fetched with BINGET for a second STACK_GLOBAL.
    data = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94h\x00h\x01\x93\x940."
    assert _names(data)[:2] == [
        ("global", "os.system", "STACK_GLOBAL", 16),
        ("global", "os.system", "STACK_GLOBAL", 22),
    ]
    # Operands that are not literal strings cannot be checked: reported unsafe.
    assert _names(b"\x80\x04K\x01K\x02\x93.") == [("global", "<computed name>", "STACK_GLOBAL", 6)]


def test_inst_ext_and_persistent_ids() -> None:
    assert _names(b"(S'true'\nios\nsystem\n.") == [("global", "os.system", "INST", 9)]
    assert _names(b"\x80\x02\x82\x07\x83\x08\x01\x84\x09\x00\x00\x00\x87.") == [
        ("global", "<extension code 7>", "EXT1", 2),
        ("global", "<extension code 264>", "EXT2", 4),
        ("global", "<extension code 9>", "EXT4", 7),
    ]
    storage_pid = b"\x80\x02(X\x07\x00\x00\x00storageK\x00tQ."
    assert _names(storage_pid, frozenset({"storage"})) == [("persistent-id", "storage", "BINPERSID", 18)]
    refs, _ = scan_pickle(b"\x80\x02(X\x04\x00\x00\x00evilK\x00tQ.", persistent_kinds=frozenset({"storage"}))
    assert [(r.name, r.status) for r in refs] == [("evil", UNSAFE)]
    refs, _ = scan_pickle(b"Pabc\n.")
    assert [(r.name, r.opcode) for r in refs if r.kind != "pattern"] == [("<string 'abc'>", "PERSID")]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x80\x02]q\x00", "pickle exhausted before seeing STOP"),
        (b"\x80\x02a.", "stack underflow"),
        (b"\x80\x02h\x05.", "memo slot 5 read before it is written"),
        (b"\x80\x02\xff.", "opcode"),
        (b"\x80\x02e.", "no MARK"),
    ],
)
def test_malformed_pickles_are_unreadable(tmp_path: Path, data: bytes, reason: str) -> None:
    path = zip_with_pickle(tmp_path / "bad.pt", data)
    result = run_cli("scan", path)
    assert result.code == 2
    (line,) = result.err.splitlines()
    assert line.startswith(f"paraminspect: error: {path}: malformed pickle") and reason in line, line


def test_unsafe_only_filters_json_references_too() -> None:
    result = run_cli("scan", "--unsafe-only", "-f", "json", SAMPLES / "trainer_checkpoint.pt", SAMPLES / "mlp.pt")
    doc = json.loads(result.out)
    assert [[r["name"] for r in f["references"]] for f in doc["files"]] == [["argparse.Namespace"], []]
    assert [f["status"] for f in doc["files"]] == ["unsafe", "clean"]
