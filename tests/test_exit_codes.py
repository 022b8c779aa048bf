"""Exit codes mean what the README says under every input: no crash is ever exit 1.

Each case here used to end in a Python traceback with exit 1, which scripts read
as "differences found". They run through the installed console script, as a
user (or CI) would, and are checked against torch, pickletools and numpy.
"""

from __future__ import annotations

import json
import os
import pickletools
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SAMPLES, Result, run_cli, run_script


class Empty:
    """No attributes: pickled as NEWOBJ with no BUILD."""


def error_line(proc: subprocess.CompletedProcess[str] | Result, path: Path, code: int = 2) -> str:
    """Assert the exit code and one ``paraminspect: error: <path>:`` line; return the reason."""
    returncode, stderr = (
        (proc.returncode, proc.stderr) if isinstance(proc, subprocess.CompletedProcess) else (proc.code, proc.err)
    )
    assert returncode == code, (returncode, stderr)
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    prefix = f"paraminspect: error: {path}: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix) :]


def opcodes(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        return {op.name for op, _, _ in pickletools.genops(archive.read(name))}


def test_object_with_empty_dict_is_an_inert_placeholder(tmp_path: Path) -> None:
    path, plain = tmp_path / "empty.pt", tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2, 3), "obj": Empty()}, path)
    torch.save({"w": torch.ones(2, 3)}, plain)
    assert "NEWOBJ" in opcodes(path) and "BUILD" not in opcodes(path)  # the case under test
    loaded = torch.load(path, weights_only=False)
    assert type(loaded["obj"]).__name__ == "Empty" and vars(loaded["obj"]) == {}
    tree = run_script("tree", path)
    assert tree.returncode == 0, tree.stderr
    assert f"obj  <object {Empty.__module__}.Empty>" in tree.stdout
    shapes = run_script("shapes", path, "-f", "json")
    assert shapes.returncode == 0, shapes.stderr
    rows = [r for r in json.loads(shapes.stdout)["tensors"] if r["name"] == "w"]
    assert rows and rows[0]["shape"] == list(loaded["w"].shape)
    assert run_script("diff", path, path).returncode == 0
    diff = run_script("diff", path, plain, "-f", "json")
    assert diff.returncode == 1, diff.stderr  # a real difference: obj only in A
    assert [r["name"] for r in json.loads(diff.stdout)["entries"] if r["status"] == "only_in_a"] == ["obj"]


BIG = 10**5000 + 7
DIGITS = 5001  # len(str(BIG)) with the limit lifted, checked below


def test_int_past_the_str_limit_as_value_and_key(tmp_path: Path) -> None:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert len(str(BIG)) == DIGITS and len(str(10**4400)) == 4401
    finally:
        sys.set_int_max_str_digits(old)
    value, key, other = tmp_path / "value.pt", tmp_path / "key.pt", tmp_path / "other.pt"
    torch.save({"w": torch.ones(2), "big": BIG, "many": [BIG, -(10**4400), 3]}, value)
    torch.save({"w": torch.ones(2), BIG: 1}, key)
    torch.save({"w": torch.ones(2), "big": BIG + 1, "many": [BIG, -(10**4400), 3]}, other)
    shown = f"<int of {DIGITS:,} digits>"
    tree = run_script("tree", value)
    assert tree.returncode == 0, tree.stderr
    assert f"big  = {shown}" in tree.stdout
    assert f"many  = [{shown}, <negative int of 4,401 digits>, 3]" in tree.stdout
    tree = run_script("tree", key)
    assert tree.returncode == 0 and f"{shown}  = 1" in tree.stdout, tree.stderr
    for command in ("shapes", "stats"):
        assert run_cli(command, key).code == 0
    got = run_script("get", value, "big", "many", "-f", "json")
    assert got.returncode == 0, got.stderr
    entries = {e["name"]: e["value"] for e in json.loads(got.stdout)["entries"]}
    assert entries == {"big": shown, "many": [shown, "<negative int of 4,401 digits>", 3]}  # JSON: a string
    assert run_cli("diff", value, value).code == 0
    diff = run_script("diff", value, other, "-f", "json")
    assert diff.returncode == 1, diff.stderr  # compared by value, not by the shortened text
    assert [r["name"] for r in json.loads(diff.stdout)["entries"] if r["status"] == "values_changed"] == ["big"]
    out = tmp_path / "out.pt"
    assert run_cli("convert", key, out).code == 0  # in-process: torch is loaded here already
    written = torch.load(out, weights_only=False)  # our own output: LONG4 is outside weights_only's opcodes
    assert list(written) == ["w", BIG] and written[BIG] == 1 and torch.equal(written["w"], torch.ones(2))


def test_convert_of_a_dcp_dataclass_to_pt_is_refused(tmp_path: Path) -> None:
    from torch.distributed.checkpoint.metadata import MetadataIndex, TensorProperties

    path, out = tmp_path / "dcp_objects.pt", tmp_path / "out.pt"
    torch.save({"w": torch.ones(2), "props": TensorProperties(dtype=torch.float32), "idx": MetadataIndex("x")}, path)
    # Refused before anything is written, naming the input and each record (in-process:
    # a subprocess would import torch again).
    reason = error_line(run_cli("convert", path, out), path)
    assert "props <torch.distributed.checkpoint.metadata.TensorProperties>" in reason
    assert "idx <torch.distributed.checkpoint.metadata.MetadataIndex>" in reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dcp_objects.pt"]
    # --drop-unknown leaves them out; what remains is what torch itself holds.
    assert run_cli("convert", path, out, "--drop-unknown").code == 0
    written = torch.load(out, weights_only=True)
    assert list(written) == ["w"] and torch.equal(written["w"], torch.ones(2))


def test_set_from_npy_files_that_are_not_numbers(tmp_path: Path) -> None:
    src, out = tmp_path / "m.pt", tmp_path / "o.safetensors"
    torch.save({"w": torch.zeros(2)}, src)
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    np.save(tmp_path / "struct.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }"  # 4 TiB
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    (tmp_path / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    with pytest.raises(ValueError):  # numpy's own reader agrees the header claims more than is there
        np.load(tmp_path / "huge.npy", mmap_mode="r")
    for name, expected in [
        ("strings.npy", "holds <U1 values"),
        ("struct.npy", "holds [('a', '<f4'), ('b', '<i4')] values"),
        ("huge.npy", "header claims 4,398,046,511,104 bytes of data but the file holds 0"),
    ]:
        npy = tmp_path / name
        assert expected in error_line(run_script("set", src, "w", npy, "-o", out), npy)
        assert not out.exists()
    # A good one still works, byte order and Fortran order included.
    np.save(tmp_path / "ok.npy", np.array([1.5, -2.0], dtype=">f8"))
    assert run_script("set", src, "w", tmp_path / "ok.npy", "-o", out).returncode == 0
    from safetensors.torch import load_file

    assert torch.equal(load_file(out)["w"], torch.tensor([1.5, -2.0]))


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["-s", "normal", "--seed", "-1"], "Invalid value for '--seed': -1 is not in the range x>=0"),
        (["-s", "kaiming_uniform", "--a", "nan"], "--a must be a finite number, not nan"),
        (["-s", "uniform", "--low", "-inf", "--high", "inf"], "--low must be a finite number, not -inf"),
        (["-s", "uniform", "--low", "-1e308", "--high", "1e308"], "--high minus --low must be a finite number"),
        (["-s", "xavier_uniform", "--gain", "-1"], "--gain must not be negative"),
        (["-s", "normal", "--std", "nan"], "--std must be a finite number, not nan"),
    ],
)
def test_init_options_are_validated(tmp_path: Path, options: list[str], reason: str) -> None:
    src, out = tmp_path / "m.pt", tmp_path / "o.safetensors"
    torch.save({"w": torch.zeros(3, 4)}, src)
    if options[1] in ("uniform", "kaiming_uniform"):  # the console script, as a user runs it
        proc = run_script("init", src, "w", *options, "-o", out)
        code, err = proc.returncode, proc.stderr
    else:
        result = run_cli("init", src, "w", *options, "-o", out)
        code, err = result.code, result.err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("paraminspect: error: ") and reason in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


BUG = """
import sys
from paraminspect.inspect import tree
def broken(*args, **kwargs):
    raise ZeroDivisionError("a bug\\nsecond line")
tree.build = broken
sys.argv = ["paraminspect", "tree", sys.argv[1]]
from paraminspect.cli import run
run()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_an_internal_error_is_exit_3_with_one_line(tmp_path: Path, debug: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PARAMINSPECT_DEBUG"}
    if debug:
        env["PARAMINSPECT_DEBUG"] = "1"
    path = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2)}, path)
    proc = subprocess.run(
        [sys.executable, "-c", BUG, str(path)], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert proc.returncode == 3, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("paraminspect: internal error (ZeroDivisionError: a bug); please report it")
    if debug:
        assert "Traceback" in proc.stderr and "in broken" in proc.stderr
    else:
        assert proc.stderr.count("\n") == 1 and "PARAMINSPECT_DEBUG=1 shows the traceback" in last


class FailingFile:
    """The output file as torch's zip writer sees it, failing on its third write."""

    def __init__(self, f: object, error: BaseException) -> None:
        self.f, self.error, self.writes = f, error, 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes == 3:
            raise self.error
        return self.f.write(data)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.f, name)


def fail_writes(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    from paraminspect.edit import atomic

    real = atomic.os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: FailingFile(real(*a, **k), error))


def test_disk_full_during_a_pt_write_says_so_and_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    out = tmp_path / "o.pt"
    fail_writes(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    result = run_cli("convert", SAMPLES / "mlp.pt", out)
    # torch itself reports only "unexpected pos ..." (a RuntimeError) for this.
    assert error_line(result, out) == "cannot write (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_inside_torch_save_is_not_a_torch_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o.pt"
    fail_writes(monkeypatch, KeyboardInterrupt())
    result = run_cli("convert", SAMPLES / "mlp.pt", out)
    assert (result.code, result.err) == (130, "paraminspect: interrupted\n")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem (needs root and a kernel that lets this sandbox mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_real_enospc_on_a_full_filesystem(small_tmpfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from paraminspect.edit import atomic

    src = tmp_path / "big.pt"
    torch.save({"w": torch.ones(1024, 1024)}, src)  # 4 MiB into 2 MiB
    # Past the free-space pre-check (it refuses this case up front), to meet the disk's own ENOSPC.
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(1 << 40, 0, 1 << 40))  # type: ignore[attr-defined]
    for name in ("o.pt", "o.safetensors"):
        out = small_tmpfs / name
        assert error_line(run_cli("convert", src, out), out) == "cannot write (No space left on device)"
        assert list(small_tmpfs.iterdir()) == []


def test_output_through_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.symlink_to(b)
    b.symlink_to(a)
    for force in ([], ["--force"]):
        proc = run_cli("convert", SAMPLES / "mlp.pt", a, *force)
        assert error_line(proc, a) == "symlink loop: the path points at no file"
        assert a.is_symlink() and os.readlink(a) == str(b) and b.is_symlink()


def test_file_shorter_than_a_safetensors_length_prefix(tmp_path: Path) -> None:
    """Found by fuzzing: ``{P`` (two bytes, the start of a JSON index) crashed scan's sniffing."""
    path = tmp_path / "short.json"
    path.write_bytes(b"{P")
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_bytes())  # not an index either
    for command in ("scan", "tree"):
        proc = run_script(command, path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        reason = "index is not valid JSON (Expecting property name enclosed in double quotes at char 1)"
        assert proc.stderr == f"paraminspect: error: {path}: {reason}\n"
