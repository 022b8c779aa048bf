"""Atomic writes: a failed, interrupted or killed writer leaves the original intact and no temp file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from paraminspect.edit import atomic
from paraminspect.edit.writers import copying
from paraminspect.edit.writers import safetensors as safetensors_write
from tests.conftest import SAMPLES, run_cli


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(SAMPLES / "rgnet.safetensors", tmp_path / "m.safetensors")
    return tmp_path


@pytest.mark.parametrize("anonymous", [True, False])
@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_exception_mid_write_leaves_original_and_no_temp(
    work: Path, monkeypatch: pytest.MonkeyPatch, anonymous: bool, error: type[BaseException]
) -> None:
    if not anonymous:
        monkeypatch.setattr(atomic.AtomicFile, "_open_anonymous", staticmethod(lambda _d: -1))
    original = (work / "m.safetensors").read_bytes()
    real = copying.copy_range
    calls = 0

    def failing(*args: int, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise error(28, "No space left on device") if error is OSError else error()
        return real(*args, **kwargs)

    monkeypatch.setattr(copying, "copy_range", failing)
    result = run_cli("rename", work / "m.safetensors", "0.=zero.", "--in-place")
    if error is OSError:
        assert result.code == 2
        assert result.err == f"paraminspect: error: {work / 'm.safetensors'}: cannot write (No space left on device)\n"
    else:
        assert result.code == 130
    assert (work / "m.safetensors").read_bytes() == original
    assert listing(work) == ["m.safetensors"]


def test_failed_verification_leaves_original(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = (work / "m.safetensors").read_bytes()
    real = safetensors_write.write

    def corrupting(layout, out):  # type: ignore[no-untyped-def]
        crcs = real(layout, out)
        out.seek(-1, os.SEEK_END)
        out.write(b"\x7f")
        return crcs

    monkeypatch.setattr(safetensors_write, "write", corrupting)
    result = run_cli("rename", work / "m.safetensors", "0.=zero.", "--in-place")
    assert result.code == 2
    assert "failed verification: checksum" in result.err
    assert (work / "m.safetensors").read_bytes() == original
    assert listing(work) == ["m.safetensors"]


SLOW_WRITER = """
import os, sys, time
from paraminspect.edit.writers import copying
real = copying.copy_range
def slow(*args, **kwargs):
    os.write(1, b"chunk\\n")  # one write: two copy threads print at once
    time.sleep(0.2)
    return real(*args, **kwargs)
copying.copy_range = slow
from paraminspect.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_writer_leaves_original_and_no_temp(work: Path, sig: signal.Signals) -> None:
    target = work / "m.safetensors"
    original = target.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, "rename", str(target), "0.=zero.", "--in-place"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(3):  # wait until it is really mid-write
        assert proc.stdout.readline() == "chunk\n"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    time.sleep(0.05)
    assert target.read_bytes() == original
    assert listing(work) == ["m.safetensors"]


# The official library's import (started on a helper thread as the copy begins) is
# still running when the interrupted write ends, as on a loaded machine. An atexit
# hook (run after non-daemon threads are joined, just before the interpreter is
# finalised) reports any thread still alive: finalising under a daemon thread busy
# importing numpy crashed the process at exit now and then (-11 instead of 130).
ALIVE_AT_EXIT = """
import atexit, os, sys, threading, time
from paraminspect.edit import verify
from paraminspect.edit.writers import copying
real_import = verify._import_official
def slow_import():
    time.sleep(1.0)
    real_import()
verify._import_official = slow_import
real = copying.copy_range
def slow(*args, **kwargs):
    os.write(1, b"chunk\\n")
    time.sleep(0.2)
    return real(*args, **kwargs)
copying.copy_range = slow
def alive():
    names = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if names:
        os.write(2, f"alive at exit: {names}\\n".encode())
atexit.register(alive)
"""
AS_LIBRARY = "from paraminspect.cli import main\nsys.exit(main(sys.argv[1:]))\n"
AS_SCRIPT = 'sys.argv = ["paraminspect", *sys.argv[1:]]\nfrom paraminspect.cli import run\nrun()\n'


@pytest.mark.parametrize(
    ("entry", "sig", "code", "line"),
    [
        (AS_LIBRARY, signal.SIGINT, 130, "paraminspect: interrupted\n"),
        (AS_SCRIPT, signal.SIGINT, 130, "paraminspect: interrupted\n"),
        (AS_SCRIPT, signal.SIGTERM, 143, "paraminspect: terminated (SIGTERM)\n"),
    ],
    ids=["library-SIGINT", "script-SIGINT", "script-SIGTERM"],
)
def test_interrupted_write_never_finalises_under_a_live_thread(
    work: Path, entry: str, sig: signal.Signals, code: int, line: str
) -> None:
    target = work / "m.safetensors"
    original = target.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", ALIVE_AT_EXIT + entry, "rename", str(target), "0.=zero.", "--in-place"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "chunk\n"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (code, line)
    assert target.read_bytes() == original
    assert listing(work) == ["m.safetensors"]


def test_interrupt_inside_submit_still_waits_for_that_copy(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C handled while ``submit`` starts a copy thread (after the thread took its job)
    left that thread out of the pool's join: it copied on into the output's descriptor
    after the write had closed it. No copy may run once the command has returned."""
    target = work / "m.safetensors"
    no_copy_outlives_an_interrupt(monkeypatch, target, ["rename", target, "0.=zero.", "--in-place"])


def no_copy_outlives_an_interrupt(monkeypatch: pytest.MonkeyPatch, target: Path, argv: list[Any]) -> None:
    """Run an in-place edit whose first copy thread gets a Ctrl-C as it starts (every
    writer's copies run :func:`copying.copy_range`); the command must return 130 with
    no copy still running, and leave ``target`` and its folder as they were."""
    original = target.read_bytes()
    real_copy = copying.copy_range
    real_start = threading.Thread.start
    began = threading.Event()
    lock = threading.Lock()
    state = {"running": 0, "returned": False, "late": False}

    def copy(*args: Any, **kwargs: Any) -> None:
        with lock:
            state["late"] = state["late"] or state["returned"]
            state["running"] += 1
        began.set()
        try:
            time.sleep(0.3)
            real_copy(*args, **kwargs)
        finally:
            with lock:
                state["running"] -= 1

    def start(thread: threading.Thread) -> None:
        real_start(thread)
        if thread.name == "copy_0":
            assert began.wait(10)
            raise KeyboardInterrupt  # as a signal handled right after the new thread started

    before = sorted(os.listdir(target.parent))
    monkeypatch.setattr(copying, "copy_range", copy)
    monkeypatch.setattr(threading.Thread, "start", start)
    result = run_cli(*argv)
    with lock:
        state["returned"] = True
        running = state["running"]
    monkeypatch.undo()
    assert result.code == 130
    assert running == 0
    time.sleep(0.5)
    assert not state["late"]
    assert target.read_bytes() == original
    assert sorted(os.listdir(target.parent)) == before


def test_mode_is_kept_in_place_and_copied_to_new_files(work: Path) -> None:
    target = work / "m.safetensors"
    target.chmod(0o640)
    assert run_cli("drop", target, "1", "--in-place").code == 0
    assert (target.stat().st_mode & 0o777) == 0o640
    assert run_cli("drop", target, "0.block 0", "-o", work / "new.safetensors").code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (work / "new.safetensors").stat().st_mode & 0o777 == 0o640 & ~umask


def test_symlink_target_is_replaced_not_the_link(work: Path) -> None:
    link = work / "link.safetensors"
    link.symlink_to(work / "m.safetensors")
    assert run_cli("drop", link, "1", "--in-place").code == 0
    assert link.is_symlink()
    assert "1.weight" not in run_cli("shapes", work / "m.safetensors").out


def test_refusals(work: Path) -> None:
    src = work / "m.safetensors"
    before = src.read_bytes()
    for args, reason in [
        (("drop", src, "1"), "exactly one of -o OUT and --in-place"),
        (("drop", src, "1", "-o", src), "use --in-place"),
        (("drop", src, "1", "-o", work / "x.txt"), "cannot tell the output format"),
        (("drop", src, "nothing.here", "-o", work / "o.safetensors"), "no name matches"),
    ]:
        result = run_cli(*args)
        assert result.code == 2, args
        assert reason in result.err, result.err
        assert len(result.err.splitlines()) == 1
    (work / "exists.safetensors").write_bytes(b"keep me")
    result = run_cli("drop", src, "1", "-o", work / "exists.safetensors")
    assert result.code == 2 and "--force" in result.err
    assert (work / "exists.safetensors").read_bytes() == b"keep me"
    assert run_cli("drop", src, "1", "-o", work / "exists.safetensors", "--force").code == 0
    assert src.read_bytes() == before


def test_dry_run_writes_nothing(work: Path) -> None:
    result = run_cli("drop", work / "m.safetensors", "1", "-o", work / "o.safetensors", "--dry-run")
    assert result.code == 0
    assert "dry run, nothing written" in result.err
    assert "dropped   1.weight" in result.err
    assert listing(work) == ["m.safetensors"]


def test_not_enough_space_is_a_clean_error(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(1, 1, 0))  # type: ignore[attr-defined]
    result = run_cli("drop", work / "m.safetensors", "1", "-o", work / "o.safetensors")
    assert result.code == 2 and "not enough free space" in result.err
    assert listing(work) == ["m.safetensors"]


def test_pt_verification_covers_non_tensor_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paraminspect.edit.writers import torchsave as torch_write

    real = torch_write._torch_value
    monkeypatch.setattr(torch_write, "_torch_value", lambda v, t, n: 4 if v == 3 else real(v, t, n))
    result = run_cli("convert", SAMPLES / "trainer_checkpoint.pt", tmp_path / "o.pt", "--drop-unknown")
    assert result.code == 2
    assert "non-tensor entries differ: ['epoch'" in result.err  # (and the 3 in param_groups.params)
    assert listing(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_and_group_are_kept_in_place(work: Path) -> None:
    target = work / "m.safetensors"
    os.chown(target, 12345, 23456)
    assert run_cli("drop", target, "1", "--in-place").code == 0
    st = target.stat()
    assert (st.st_uid, st.st_gid) == (12345, 23456)
