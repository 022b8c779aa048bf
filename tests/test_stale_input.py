"""An input that changes under a command: replaced, truncated, or edited in place twice at once.

Every read goes through the handle opened with the checkpoint, a changed input is
refused with exit 2 before anything is replaced, a truncation is a one-line error
(never SIGBUS), and two concurrent ``--in-place`` edits never lose one's work.
torch.load and safetensors are the references for what each file holds.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from paraminspect import open_checkpoint
from paraminspect.data.arrays import iter_chunks, read_array
from paraminspect.edit.writers import safetensors as safetensors_write
from paraminspect.edit.writers import torchsave as torch_write
from tests.conftest import run_cli

CHANGED = "the file changed while it was being read; nothing was written"


def load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)  # type: ignore[no-any-return]


def state(seed: int) -> dict[str, torch.Tensor]:
    """Same names, shapes and layout for every seed; different values."""
    g = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(64, 32, generator=g),
        "b": torch.randn(128, generator=g),
        "t": torch.randn(32, 48, generator=g).t(),  # a strided view
    }


def write(path: Path, seed: int) -> None:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous().numpy() for k, v in state(seed).items()}, path)
    else:
        torch.save(state(seed), path)


def values(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        return load_file(path)
    return {k: v.contiguous().numpy() for k, v in load(path).items()}


# --- replaced during an edit (deterministic: replaced between header read and data copy)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("in_place", [True, False])
def test_input_replaced_during_edit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, in_place: bool
) -> None:
    model, other = tmp_path / f"m{suffix}", tmp_path / f"other{suffix}"
    write(model, 1)
    write(other, 2)
    replacement = other.read_bytes()
    writer: Any = safetensors_write if suffix == ".safetensors" else torch_write
    real = writer.write

    def replaced_first(*args: Any) -> Any:
        os.replace(other, model)  # the header was read; no tensor byte yet
        return real(*args)

    monkeypatch.setattr(writer, "write", replaced_first)
    output = ["--in-place"] if in_place else ["-o", tmp_path / f"out{suffix}"]
    result = run_cli("rename", model, "a=z", *output)
    assert (result.code, result.out) == (2, "")
    assert result.err == f"paraminspect: error: {model}: {CHANGED}\n"
    assert model.read_bytes() == replacement  # the other writer's file is untouched
    assert sorted(os.listdir(tmp_path)) == [model.name]  # nothing written, no temp file


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_library_reads_the_opened_file_after_a_replace(tmp_path: Path, suffix: str) -> None:
    model, other = tmp_path / f"m{suffix}", tmp_path / f"other{suffix}"
    write(model, 1)
    want = values(model)
    write(other, 2)
    ckpt = open_checkpoint(model)
    os.replace(other, model)
    for name, ref in ckpt.tensors.items():
        np.testing.assert_array_equal(read_array(ref), want[name])
        np.testing.assert_array_equal(np.concatenate(list(iter_chunks(ref, 1000))), want[name].reshape(-1))
    assert any(s.changed() for s in ckpt.sources)


def test_stats_of_a_file_replaced_meanwhile_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paraminspect.data import arrays as tensors
    from paraminspect.inspect import stats

    model, other = tmp_path / "m.pt", tmp_path / "other.pt"
    write(model, 1)
    write(other, 2)
    real = tensors.iter_chunks_into

    def replaced_first(*args: Any) -> Any:
        # stats reads two tensors at a time: whichever thread comes first replaces the file.
        with contextlib.suppress(FileNotFoundError):
            os.replace(other, model)
        return real(*args)

    monkeypatch.setattr(stats, "iter_chunks_into", replaced_first)
    result = run_cli("stats", model)
    assert (result.code, result.out) == (2, "")
    assert (
        result.err
        == f"paraminspect: error: {model}: the file changed while it was being read; its values were not trusted\n"
    )


# --- truncated while being read (subprocess: a SIGBUS would kill it)

TRUNCATE_DURING = """
import os, sys
target, where = sys.argv[1], sys.argv[2]
if where == "stats":
    from paraminspect.inspect import stats
    real = stats.iter_chunks_into
    def hooked(ref, *args, **kwargs):
        chunks = real(ref, *args, **kwargs)
        if ref.numel > 1 << 20:  # the big strided one, whichever thread reads it
            yield next(chunks)  # reading has begun (before: a memory map of its span exists)
            os.truncate(target, 4096)
        yield from chunks
    stats.iter_chunks_into = hooked
elif where == "stats-before":
    from paraminspect.inspect import stats
    real = stats.iter_chunks_into
    def hooked(*args, **kwargs):
        os.truncate(target, 4096)
        return real(*args, **kwargs)
    stats.iter_chunks_into = hooked
else:
    import torch
    real = torch.save
    def hooked(*args, **kwargs):
        os.truncate(target, 4096)  # the storages are ready to be streamed
        return real(*args, **kwargs)
    torch.save = hooked
from paraminspect.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("where", ["stats", "stats-before", "pt-output"])
def test_truncated_input_is_one_line_exit_2_not_sigbus(tmp_path: Path, where: str) -> None:
    model = tmp_path / "big.pt"
    # Strided and bigger than one stats chunk (1M elements), so reading spans several chunks.
    # "a" is read first (stats sorts names; it is the first storage); the .pt output keeps it unchanged.
    torch.save({"a": torch.randn(1024, 2048).t(), "z": torch.randn(3000)}, model)
    args = ["stats", str(model)] if where.startswith("stats") else ["set", str(model), "z", "0"]
    args += [] if where.startswith("stats") else ["-o", str(tmp_path / "out.pt")]
    proc = subprocess.run(
        [sys.executable, "-c", TRUNCATE_DURING, str(model), where, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)  # not -7 (SIGBUS) nor 135
    assert proc.stdout == ""
    line = f"paraminspect: error: {model}: the file was truncated while it was being read"
    assert proc.stderr.startswith(line) and proc.stderr.count("\n") == 1, proc.stderr  # one line, no traceback
    if where == "pt-output":
        assert proc.stderr == line + "; nothing was written\n"
    assert sorted(os.listdir(tmp_path)) == ["big.pt"]


# --- two --in-place edits of one file

HOOKED_EDIT = """
import os, sys, time
flag, point = sys.argv[1], sys.argv[2]
from paraminspect.edit import save
real = getattr(save, point)
def hooked(*args, **kwargs):
    print("opened", flush=True)  # the header is read; wait for the test's go
    while not os.path.exists(flag):
        time.sleep(0.01)
    return real(*args, **kwargs)
setattr(save, point, hooked)
from paraminspect.cli import main
sys.exit(main(sys.argv[3:]))
"""


def hooked_edit(flag: Path, point: str, *args: str | Path) -> subprocess.Popen[str]:
    """An edit that pauses at ``point`` in edit/save.py: ``_inputs`` (before it locks) or ``_write`` (locked)."""
    command = [sys.executable, "-c", HOOKED_EDIT, str(flag), point, *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def paraminspect(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "paraminspect", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_second_in_place_edit_while_first_writes_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    write(model, 1)
    before = load(model)
    first = hooked_edit(tmp_path / "go", "_write", "set", model, "b", "1", "--in-place")
    assert first.stdout is not None and first.stdout.readline() == "opened\n"
    # The first holds the lock while it writes; the second cannot take it.
    second = paraminspect("set", model, "a", "2", "--in-place")
    (tmp_path / "go").touch()
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0 and err.startswith(f"set: wrote {model} ") and "verified" in err
    assert second.returncode == 2
    assert second.stderr == (
        f"paraminspect: error: {model}: is being edited by another process (it holds the file's lock); "
        "nothing was written\n"
    )
    after = load(model)
    assert torch.equal(after["b"], torch.ones(128))
    assert torch.equal(after["a"], before["a"]) and torch.equal(after["t"], before["t"])


def test_edit_that_read_the_file_before_another_replaced_it_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    write(model, 1)
    before = load(model)
    late = hooked_edit(tmp_path / "go", "_inputs", "set", model, "a", "2", "--in-place")
    assert late.stdout is not None and late.stdout.readline() == "opened\n"
    first = paraminspect("set", model, "b", "1", "--in-place")
    assert first.returncode == 0 and "verified" in first.stderr
    (tmp_path / "go").touch()
    _, err = late.communicate(timeout=60)
    assert late.returncode == 2
    assert err == f"paraminspect: error: {model}: {CHANGED}\n"
    after = load(model)
    assert torch.equal(after["b"], torch.ones(128))
    assert torch.equal(after["a"], before["a"])


def test_concurrent_in_place_edits_never_lose_work(tmp_path: Path) -> None:
    """Unhooked: whatever the timing, each edit that says it succeeded is in the file."""
    model = tmp_path / "m.pt"
    torch.save({"a": torch.zeros(512, 1024), "b": torch.zeros(512, 1024)}, model)
    command = [sys.executable, "-m", "paraminspect", "set", str(model)]
    edits = {name: [*command, name, "1", "--in-place"] for name in ("a", "b")}
    procs = {
        n: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n, c in edits.items()
    }
    codes = {name: p.wait(timeout=60) for name, p in procs.items()}
    after = load(model)
    assert set(after) == {"a", "b"}
    for name, code in codes.items():
        err = procs[name].communicate()[1]
        assert code in (0, 2) and ("verified" in err) == (code == 0), err
        assert torch.equal(after[name], torch.ones(512, 1024) if code == 0 else torch.zeros(512, 1024)), codes
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_header_rewritten_in_place_keeping_size_and_mtime_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same inode, size and mtime: only reading the header again shows the change."""
    model = tmp_path / "m.safetensors"
    write(model, 1)
    real = safetensors_write.write

    def rewritten_first(*args: Any) -> Any:
        st = model.stat()
        raw = model.read_bytes()
        with open(model, "r+b") as fh:  # rename tensor "b" to "c" in the JSON header, same length
            fh.write(raw.replace(b'"b":', b'"c":', 1))
        os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
        return real(*args)

    monkeypatch.setattr(safetensors_write, "write", rewritten_first)
    result = run_cli("rename", model, "a=z", "--in-place")
    assert (result.code, result.err) == (2, f"paraminspect: error: {model}: {CHANGED}\n")
    assert sorted(load_file(model)) == ["a", "c", "t"]  # the rewrite is what the file holds
