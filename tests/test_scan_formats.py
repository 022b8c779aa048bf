"""``scan`` on legacy torch.save files, sharded checkpoints, DCP and model directories."""

from __future__ import annotations

import argparse
import io
import json
import pickle
import pickletools
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from paraminspect import limits, open_checkpoint
from paraminspect.formats.dcp import item_locations, read_metadata
from paraminspect.formats.pickle.scanner import ALLOWED
from paraminspect.inspect.scan import scan_file
from tests.conftest import run_cli, run_script
from tests.test_formats_dcp import TWO_RANKS
from tests.test_scan import _System

LEGACY_TABLE = (
    "file       record    kind           name                             status      count  opcode       at byte\n"
    "---------  --------  -------------  -------------------------------  --------  -------  ---------  ---------\n"
    "legacy.pt  (file)    global         torch._utils._rebuild_tensor_v2  allowed         1  GLOBAL           150\n"
    "legacy.pt  (file)    global         torch.FloatStorage               allowed         1  GLOBAL           201\n"
    "legacy.pt  (file)    persistent-id  storage                          allowed         1  BINPERSID        247\n"
    "legacy.pt  (file)    global         collections.OrderedDict          allowed         1  GLOBAL           261\n"
)
SHARD_1, SHARD_2 = "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"


def _legacy(path: Path, obj: object) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


def _json(*args: object, code: int) -> dict[str, Any]:
    result = run_cli("scan", "-f", "json", *args)
    assert result.code == code, result.err
    doc: dict[str, Any] = json.loads(result.out)
    return doc


def _unsafe(doc: dict[str, Any]) -> list[tuple[str, str, list[int]]]:
    return [
        (ref["record"], ref["name"], ref["positions"])
        for file in doc["files"]
        for ref in file["references"]
        if ref["status"] == "unsafe"
    ]


def _global_at(pkl: bytes, position: int) -> str:
    """The GLOBAL opcode pickletools shows at ``position`` (positions are opcode offsets)."""
    for op, arg, pos in pickletools.genops(pkl[position:]):
        assert pos == 0 and op.name == "GLOBAL"
        return str(arg)
    raise AssertionError("no opcode")


def test_clean_legacy_file_table_is_pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _legacy(tmp_path / "legacy.pt", {"w": torch.ones(2)})
    # torch names the storage by its memory address, so offsets after it vary by a
    # byte or two between runs: rename it "0" (a BINUNICODE, so fix its length too).
    raw = path.read_bytes()
    key = open_checkpoint(path).tensors["w"].storage.key
    old = b"X" + len(key).to_bytes(4, "little") + key.encode()
    assert raw.count(old) == 2  # in the object pickle and in the storage-key list
    path.write_bytes(raw.replace(old, b"X\x01\x00\x00\x000"))
    assert open_checkpoint(path).tensors["w"].storage.key == "0"
    monkeypatch.chdir(tmp_path)
    result = run_cli("scan", "legacy.pt")
    assert (result.code, result.out, result.err) == (0, LEGACY_TABLE, "")
    scan = scan_file(Path("legacy.pt"))
    assert (scan.format, scan.pickles) == ("torch-legacy", 5)  # magic, protocol, sys info, object, keys


def test_legacy_unsafe_globals_are_named_at_their_file_offset(tmp_path: Path) -> None:
    path = _legacy(tmp_path / "old.pt", {"w": torch.ones(2), "args": argparse.Namespace(lr=0.1), "x": _System()})
    doc = _json(path, code=1)
    assert doc["files"][0]["format"] == "torch-legacy"
    found = _unsafe(doc)
    assert [(record, name) for record, name, _ in found] == [
        ("(file)", "argparse.Namespace"),
        ("(file)", "posix.system"),
    ]
    raw = path.read_bytes()  # offsets are into the file itself
    assert [_global_at(raw, positions[0]) for _, _, positions in found] == ["argparse Namespace", "posix system"]


def test_truncated_legacy_file_is_unreadable(tmp_path: Path) -> None:
    path = _legacy(tmp_path / "old.pt", {"w": torch.ones(2)})
    path.write_bytes(path.read_bytes()[:120])  # inside the sys-info pickle
    result = run_cli("scan", path)
    assert result.code == 2
    (line,) = result.err.splitlines()
    assert line.startswith(f"paraminspect: error: {path}: malformed pickle data"), line


def _bin_shards(directory: Path, extra: object = None) -> Path:
    directory.mkdir()
    first: dict[str, object] = {"a": torch.ones(2)}
    if extra is not None:
        first["args"] = extra
    torch.save(first, directory / SHARD_1)
    torch.save({"b": torch.zeros(3)}, directory / SHARD_2)
    index = directory / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"a": SHARD_1, "b": SHARD_2}}))
    return index


def test_clean_shards_of_both_formats_scan_clean(tmp_path: Path) -> None:
    index = _bin_shards(tmp_path / "bin")
    doc = _json(index.parent, index, code=0)
    assert [(f["format"], f["status"]) for f in doc["files"]] == [("sharded", "clean")] * 2
    records = sorted({r["record"] for r in doc["files"][0]["references"]})
    assert records == [
        f"{SHARD_1}:pytorch_model-00001-of-00002/data.pkl",
        f"{SHARD_2}:pytorch_model-00002-of-00002/data.pkl",
    ]
    assert doc["files"][0]["references"] == doc["files"][1]["references"]  # the directory resolves to its index

    st = tmp_path / "st"
    st.mkdir()
    save_file({"a": torch.ones(2)}, str(st / "s1.safetensors"))
    save_file({"b": torch.zeros(3)}, str(st / "s2.safetensors"))
    (st / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})
    )
    proc = run_script("scan", st)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines()[2].split() == [str(st), "(no", "pickle", "data)", "clean"]


def test_unsafe_global_in_a_bin_shard_is_reported_for_that_shard(tmp_path: Path) -> None:
    index = _bin_shards(tmp_path / "m", argparse.Namespace(lr=0.1))
    proc = run_script("scan", "--unsafe-only", "-f", "json", index.parent)
    assert proc.returncode == 1
    assert proc.stderr == "paraminspect: scan: 1 of 1 file(s) reference globals outside the allow-list\n"
    ((record, name, positions),) = _unsafe(json.loads(proc.stdout))
    assert (record, name) == (f"{SHARD_1}:pytorch_model-00001-of-00002/data.pkl", "argparse.Namespace")
    with zipfile.ZipFile(index.parent / SHARD_1) as z:
        assert _global_at(z.read("pytorch_model-00001-of-00002/data.pkl"), positions[0]) == "argparse Namespace"


@pytest.mark.parametrize(
    ("shard", "reason"),
    [
        ("../outside.bin", "shard file name '../outside.bin' leaves the checkpoint's directory; refused"),
        ("/etc/passwd", "shard file name '/etc/passwd' leaves the checkpoint's directory; refused"),
        ("gone.bin", "shard 'gone.bin' (holding 'b') does not exist"),
    ],
)
def test_bad_shard_paths_are_one_error_line(tmp_path: Path, shard: str, reason: str) -> None:
    index = _bin_shards(tmp_path / "m")
    shutil.copy(index.parent / SHARD_2, tmp_path / "outside.bin")  # exists, but outside
    index.write_text(json.dumps({"weight_map": {"a": SHARD_1, "b": shard}}))
    for command in ("scan", "shapes"):
        result = run_cli(command, index)
        assert (result.code, result.err) == (2, f"paraminspect: error: {index}: {reason}\n"), command


def test_symlinked_shard_leading_out_is_refused(tmp_path: Path) -> None:
    index = _bin_shards(tmp_path / "m")
    shutil.move(index.parent / SHARD_2, tmp_path / SHARD_2)
    (index.parent / SHARD_2).symlink_to(tmp_path / SHARD_2)
    result = run_cli("scan", index.parent)
    assert result.code == 2 and result.err.count("\n") == 1
    assert "resolves outside the checkpoint's directory; refused" in result.err


def test_broken_shard_names_the_shard(tmp_path: Path) -> None:
    index = _bin_shards(tmp_path / "m")
    (index.parent / SHARD_2).write_bytes(b"PK\x03\x04 not a zip")
    result = run_cli("scan", index)
    assert result.code == 2
    assert result.err.startswith(f"paraminspect: error: {index}: shard '{SHARD_2}': not a readable zip archive")


def test_two_rank_dcp_scans_clean_including_its_checkpoint_path() -> None:
    doc = _json(TWO_RANKS, TWO_RANKS / ".metadata", code=0)
    assert [(f["format"], f["status"]) for f in doc["files"]] == [("dcp", "clean")] * 2
    refs = doc["files"][0]["references"]
    meta = {r["name"]: r["status"] for r in refs if r["record"] == ".metadata"}
    # StorageMeta.checkpoint_id is a pathlib path; every DCP record class is on the allow-list.
    assert meta["pathlib.PosixPath"] == meta["torch.distributed.checkpoint.metadata.Metadata"] == ALLOWED
    assert set(meta.values()) == {ALLOWED}
    items = sorted({r["record"] for r in refs} - {".metadata"})
    assert items[:2] == ["__0_0.distcp@0:archive/data.pkl", "__0_0.distcp@1577:archive/data.pkl"]
    assert len(items) == 7  # the 8th item (step = 7) pickles an int: no references
    assert scan_file(TWO_RANKS).pickles == 1 + 8


def test_dcp_metadata_is_read_once_so_the_scanned_bytes_are_the_parsed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from paraminspect.formats import dcp

    reads: list[Path] = []
    real = dcp.read_metadata_bytes

    def counting(directory: Path, current: limits.Limits) -> bytes:
        reads.append(directory)
        return real(directory, current)

    monkeypatch.setattr(dcp, "read_metadata_bytes", counting)
    assert scan_file(TWO_RANKS).pickles == 1 + 8
    assert reads == [TWO_RANKS]


@pytest.fixture(scope="module")
def unsafe_dcp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch.distributed.checkpoint as dcp

    directory = tmp_path_factory.mktemp("dcp") / "ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save({"w": torch.ones(2), "args": argparse.Namespace(lr=0.1)}, checkpoint_id=str(directory))
    return directory


def test_unsafe_global_in_a_dcp_item(unsafe_dcp: Path) -> None:
    ((record, name, positions),) = _unsafe(_json("--unsafe-only", unsafe_dcp, code=1))
    assert name == "argparse.Namespace"
    file, _, rest = record.partition("@")
    begin = int(rest.partition(":")[0])
    assert record.endswith(":archive/data.pkl") and file == "__0_0.distcp"
    meta = read_metadata(unsafe_dcp, limits.current())
    (length,) = [length for f, b, length in item_locations(meta) if (f, b) == (file, begin)]
    raw = (unsafe_dcp / file).read_bytes()[begin : begin + length]
    with zipfile.ZipFile(io.BytesIO(raw)) as z:  # the item is a whole torch.save zip
        assert _global_at(z.read("archive/data.pkl"), positions[0]) == "argparse Namespace"


def test_unsafe_global_in_metadata_is_listed_even_when_it_is_not_dcp(tmp_path: Path) -> None:
    directory = tmp_path / "evil"
    directory.mkdir()
    pkl = pickle.dumps({"x": _System()}, protocol=2)
    (directory / ".metadata").write_bytes(pkl)
    result = run_cli("scan", directory, "-f", "csv")
    # Not DCP metadata, so unreadable (2); the global found before that is still listed.
    assert result.code == 2
    assert f"{directory},.metadata,global,posix.system,unsafe,1,GLOBAL,13" in result.out
    assert _global_at(pkl, 13) == "posix system"
    assert result.err == f"paraminspect: error: {directory}: .metadata is not torch.distributed.checkpoint metadata\n"


def test_dcp_data_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "copy"
    shutil.copytree(TWO_RANKS, target)
    raw = (target / ".metadata").read_bytes()
    (target / ".metadata").write_bytes(raw.replace(b"__1_0.distcp", b"../_1_0.dist"))
    result = run_cli("scan", target)
    assert result.code == 2 and result.err.count("\n") == 1
    assert "leaves the checkpoint's directory; refused" in result.err


def test_model_directories_resolve_like_open_checkpoint(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    torch.save({"args": argparse.Namespace()}, model / "pytorch_model.bin")
    by_dir, by_file = scan_file(model), scan_file(model / "pytorch_model.bin")
    assert (by_dir.format, by_dir.status) == ("torch-zip", "unsafe")
    assert by_dir.findings == by_file.findings
    torch.save({}, model / "other.pt")  # pytorch_model.bin still wins, as in open_checkpoint
    assert scan_file(model).findings == by_file.findings
    (model / "pytorch_model.bin").unlink()
    _legacy(model / "again.pt", {})
    result = run_cli("scan", model)
    assert result.code == 2
    assert result.err.startswith(
        f"paraminspect: error: {model}: is a directory with several candidates (again.pt, other.pt)"
    )


def test_scanning_the_new_formats_never_imports_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    legacy = _legacy(tmp_path / "legacy.pt", {"w": torch.ones(2)})
    index = _bin_shards(tmp_path / "m")
    code = (
        "import sys, io, contextlib\n"
        "from paraminspect.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['scan', {str(TWO_RANKS)!r}, {str(legacy)!r}, {str(index.parent)!r}]) == 0\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr
