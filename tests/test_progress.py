"""The progress bar: drawn on a terminal's stderr during long work, never on a pipe,
in CI, with --quiet/--no-progress, or in the output; rich loaded only when drawn."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paraminspect.io import progress
from tests.conftest import ROOT

SCRIPT = str(Path(sys.executable).parent / "paraminspect")
BAR_PIECES = ("GiB", "MiB")  # rich's DownloadColumn: bytes done of bytes to do


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "big.safetensors"
    g = torch.Generator().manual_seed(0)
    save_file({f"w{i}": torch.randn(1024, 1024, generator=g) for i in range(8)}, path)  # 32 MiB
    return path


def _run(args: list[str], *, tty: bool, env: dict[str, str] | None = None) -> tuple[str, str, int]:
    """Run the installed script with stdout on a pipe and stderr on a pseudo-terminal (or a pipe)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR", "TERM")}
    environment |= {"PARAMINSPECT_PROGRESS_DELAY": "0", "TERM": "xterm-256color", "COLUMNS": "100"} | (env or {})
    if not tty:
        done = subprocess.run(
            [SCRIPT, *args], capture_output=True, text=True, env=environment, timeout=120, check=False
        )
        return done.stdout, done.stderr, done.returncode
    leader, follower = pty.openpty()
    proc = subprocess.Popen([SCRIPT, *args], stdout=subprocess.PIPE, stderr=follower, env=environment, cwd=ROOT)
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the follower closed: the process is gone
                    return
                if not data:
                    return
                chunks.append(data)
            elif proc.poll() is not None:
                return

    reader = threading.Thread(target=drain)
    reader.start()
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    code = proc.wait(timeout=120)
    reader.join(timeout=10)
    os.close(leader)
    return out, b"".join(chunks).decode(errors="replace"), code


@pytest.mark.parametrize(
    "command", [["stats"], ["hash"], ["stats", "--percentiles", "50"], ["hist", "w3"]], ids=" ".join
)
def test_a_terminal_sees_the_bar_and_a_pipe_does_not(big: Path, command: list[str]) -> None:
    out_tty, err_tty, code = _run([command[0], str(big), *command[1:]], tty=True)
    assert code == 0
    assert command[0] in err_tty and any(unit in err_tty for unit in BAR_PIECES), err_tty
    assert "\x1b[2K" in err_tty  # the bar wipes itself (transient)
    out_pipe, err_pipe, code = _run([command[0], str(big), *command[1:]], tty=False)
    assert code == 0 and err_pipe == ""
    assert out_tty == out_pipe  # stdout never holds a trace of the bar


def test_diff_shows_the_bar_but_not_with_quiet(big: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    save_file({f"w{i}": torch.zeros(1024, 1024) for i in range(8)}, other)
    _, err, code = _run(["diff", str(big), str(other)], tty=True)
    assert code == 1 and "diff" in err and "MiB" in err
    _, err, code = _run(["diff", "--quiet", str(big), str(other)], tty=True)
    assert code == 1 and err == ""


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--no-progress"], {}), ([], {"CI": "true"}), ([], {"TERM": "dumb"}), ([], {"NO_COLOR": "1"})],
    ids=["flag", "ci", "dumb", "no-color"],
)
def test_nothing_is_drawn_when_forbidden(big: Path, args: list[str], env: dict[str, str]) -> None:
    _, err, code = _run([*args, "stats", str(big)], tty=True, env=env)
    assert code == 0 and err == ""


def test_header_only_commands_never_load_rich(big: Path) -> None:
    code = (
        "import sys; from paraminspect.cli.dispatch import main; "
        f"main(['shapes', {str(big)!r}]); main(['tree', {str(big)!r}]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.splitlines()[-1] == "[]"


def test_counts_from_two_threads_add_up() -> None:
    seen: list[progress.Task] = []

    def show(task: progress.Task):  # type: ignore[no-untyped-def]
        seen.append(task)
        from contextlib import nullcontext

        return nullcontext()

    old = progress.SHOW
    progress.SHOW = show
    try:
        with progress.task(4_000_000, "test"):
            threads = [threading.Thread(target=lambda: [progress.advance(1) for _ in range(200_000)]) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            with progress.task(10, "inner"):  # a task inside another adds nothing
                progress.advance(5)
    finally:
        progress.SHOW = old
    assert len(seen) == 1 and seen[0].done == 400_005
    progress.advance(7)  # no task open: nothing counted, nothing fails
    assert seen[0].done == 400_005
