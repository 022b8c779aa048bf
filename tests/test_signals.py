"""Ctrl-C and SIGTERM: exit 128 + N with one line, no traceback, nothing left behind.

Each case runs ``paraminspect.cli.run`` (the console script's entry point) in a
subprocess with a small hook that makes the signal land exactly where it used
to go wrong: inside the import of the app, inside ``import torch``, inside
torch's writes, on helper threads busy in one long call, and mid-write of a
named (not ``O_TMPFILE``) temporary file.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from paraminspect import interrupts
from tests.conftest import SAMPLES

# Sends the signal from inside the process when a module is first imported.
IMPORT_HOOK = """
import importlib.abc, os, signal, sys
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.{signal})
        return None
sys.meta_path.insert(0, Hook())
"""
RUN = """
sys.argv = ["paraminspect", *sys.argv[1:]]
from paraminspect.cli import run
run()
"""


def run_with(prelude: str, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    code = f"import sys\n{prelude}\n{RUN}"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_ctrl_c_while_the_app_is_imported_is_130_with_one_line() -> None:
    proc = run_with(IMPORT_HOOK.format(module="typer", signal="SIGINT"), "tree", SAMPLES / "mlp.pt")
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "paraminspect: interrupted\n", "")


def test_sigterm_while_the_app_is_imported_is_143() -> None:
    proc = run_with(IMPORT_HOOK.format(module="typer", signal="SIGTERM"), "tree", SAMPLES / "mlp.pt")
    assert (proc.returncode, proc.stderr) == (143, "paraminspect: terminated (SIGTERM)\n")


def test_ctrl_c_inside_import_torch_is_not_a_missing_torch(tmp_path: Path) -> None:
    out = tmp_path / "o.pt"
    proc = run_with(IMPORT_HOOK.format(module="torch", signal="SIGINT"), "convert", SAMPLES / "mlp.safetensors", out)
    assert (proc.returncode, proc.stderr) == (130, "paraminspect: interrupted\n")
    assert list(tmp_path.iterdir()) == []


# Each task blocks in one call that never checks for signals (as a numpy loop over
# a hostile tensor would), after telling the test it has started.
STUCK_WORKERS = """
import os, threading
from paraminspect.inspect import stats
def stuck(ref, chunk_elements, wanted=None):
    os.write(1, b"started\\n")
    threading.Event().wait()
stats.measure = stuck
"""


def test_first_ctrl_c_stops_stats_with_workers_stuck_in_long_calls(tmp_path: Path) -> None:
    path = tmp_path / "two.safetensors"
    from safetensors.torch import save_file

    save_file({"a": torch.ones(4), "b": torch.zeros(4)}, str(path))
    code = f"import sys\n{STUCK_WORKERS}\n{RUN}"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "stats", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        proc.wait(timeout=20)  # hang guard only: it used to wait for the workers forever
        waited = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert proc.stderr is not None and proc.stderr.read() == "paraminspect: interrupted\n"
    assert waited < interrupts.WATCHDOG_SECONDS  # stopped by the handler, not by the watchdog


# The named-temporary-file path (NFS, SMB, FUSE have no O_TMPFILE), with a copy
# slow enough to be caught mid-write.
NAMED_SLOW_WRITER = """
import os, time
from paraminspect.edit import atomic
from paraminspect.edit.writers import copying
atomic.AtomicFile._open_anonymous = staticmethod(lambda directory: -1)
real = copying.copy_range
def slow(*args, **kwargs):
    os.write(1, b"chunk\\n")
    time.sleep(0.2)
    return real(*args, **kwargs)
copying.copy_range = slow
"""


@pytest.mark.parametrize(
    ("sig", "code", "line"), [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")]
)
def test_signal_mid_write_removes_the_named_temporary_file(
    tmp_path: Path, sig: signal.Signals, code: int, line: str
) -> None:
    target = tmp_path / "m.safetensors"
    target.write_bytes((SAMPLES / "rgnet.safetensors").read_bytes())
    original = target.read_bytes()
    script = f"import sys\n{NAMED_SLOW_WRITER}\n{RUN}"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "rename", str(target), "0.=zero.", "--in-place"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(3):  # really mid-write
            assert proc.stdout.readline() == "chunk\n"
        temps = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1  # the temporary file has a name: the case under test
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert proc.stderr is not None and proc.stderr.read() == f"paraminspect: {line}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert target.read_bytes() == original


def test_a_signal_ignored_at_start_stays_ignored() -> None:
    """nohup and background jobs of non-interactive shells start with signals ignored."""
    code = (
        "import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "from paraminspect import interrupts; interrupts.install()\n"
        "assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN\n"
        "assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_chunk_loops_stop_once_a_signal_asked(tmp_path: Path) -> None:
    from paraminspect import open_checkpoint
    from paraminspect.data.arrays import iter_chunks

    ref = open_checkpoint(SAMPLES / "mlp.safetensors").tensors["0.weight"]
    assert sum(len(c) for c in iter_chunks(ref, 4)) == ref.numel
    interrupts.STOP.set()
    try:
        with pytest.raises(interrupts.Stopped):
            next(iter_chunks(ref, 4))
    finally:
        interrupts.STOP.clear()


def test_sigint_handler_is_not_installed_by_importing() -> None:
    """Library users keep Python's own Ctrl-C behaviour: only the console script installs handlers."""
    code = (
        "import signal, paraminspect.cli.dispatch; assert signal.getsignal(signal.SIGINT) is signal.default_int_handler"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


# After leave(): the atexit hook runs only if the interpreter is finalised, and
# reports which helper threads were still alive at that point.
LEAVE = """
import atexit, os, signal, threading, time
from paraminspect import interrupts
atexit.register(lambda: os.write(1, repr([t.name for t in threading.enumerate() if t.is_alive()]).encode()))
interrupts.install()
{before}
interrupts.leave(130)
"""


def test_leave_never_finalises_under_a_busy_daemon_thread() -> None:
    """Finalisation under a daemon thread inside native code (an extension module's
    import) crashed the process at exit now and then: leave() ends it with os._exit."""
    before = "threading.Thread(target=lambda: time.sleep(30), name='busy', daemon=True).start()"
    proc = subprocess.run(
        [sys.executable, "-c", LEAVE.format(before=before)], capture_output=True, text=True, timeout=20, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "", "")


def test_leave_after_a_signal_stops_the_watchdog_before_finalising() -> None:
    """The watchdog (a daemon timer, 10 s) is cancelled and joined: a command whose
    cleanup finished exits through a normal finalisation with no thread left."""
    before = "try:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(5)\nexcept KeyboardInterrupt:\n    pass"
    proc = subprocess.run(
        [sys.executable, "-c", LEAVE.format(before=before)], capture_output=True, text=True, timeout=20, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "[]", "")  # finalised, nothing alive


# A Ctrl-C landing inside CPython's Semaphore, between its release and the
# with-statement's exit: ThreadPoolExecutor.submit then raised "RuntimeError:
# release unlocked lock" (exit 3, "internal error") or left a lock held so the
# pool's join hung. The signal is sent from inside Condition._release_save (on the
# main thread, once the copy pool's first submit begins), where it landed in CI.
IN_SUBMIT = """
import os, signal, sys, threading
from concurrent.futures import thread
real_submit, real_release_save = thread.ThreadPoolExecutor.submit, threading.Condition._release_save
def release_save(self):
    state = real_release_save(self)
    if threading.current_thread() is threading.main_thread():
        threading.Condition._release_save = real_release_save
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode: lock released, not yet waited on
    return state
def submit(self, *args, **kwargs):
    if self._thread_name_prefix == "copy":
        thread.ThreadPoolExecutor.submit = real_submit
        threading.Condition._release_save = release_save
    return real_submit(self, *args, **kwargs)
thread.ThreadPoolExecutor.submit = submit
"""
AS_LIBRARY = "from paraminspect.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.mark.parametrize("entry", ["library", "script"])
def test_signal_inside_a_pool_submit_is_an_interrupt(tmp_path: Path, entry: str) -> None:
    """A signal inside the copy pool's submit ends the edit as an interrupt: 130, one line, file untouched
    (``interrupts.calm`` holds it until ``submit`` returns; the library entry installs the handler)."""
    target = tmp_path / "m.safetensors"
    target.write_bytes((SAMPLES / "rgnet.safetensors").read_bytes())
    original = target.read_bytes()
    code = IN_SUBMIT + (AS_LIBRARY if entry == "library" else RUN)
    argv = [sys.executable, "-c", code, "rename", str(target), "0.=zero.", "--in-place"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stderr) == (130, "paraminspect: interrupted\n")
    assert target.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_an_error_raised_while_handling_an_interrupt_reports_the_interrupt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Whatever a library turns a KeyboardInterrupt into, the user pressed Ctrl-C: exit 130."""
    from paraminspect.edit import save
    from tests.conftest import run_cli

    def broken(*args: object, **kwargs: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("release unlocked lock") from None

    monkeypatch.setattr(save, "save", broken)
    target = tmp_path / "m.safetensors"
    target.write_bytes((SAMPLES / "rgnet.safetensors").read_bytes())
    result = run_cli("rename", target, "0.=zero.", "--in-place")
    assert (result.code, result.err) == (130, "paraminspect: interrupted\n")
