"""CopyPool (edit/writers/copying.py) on its own: what it copies lands byte for byte where it
was asked to, a failed copy fails the pool, and once the ``with`` block is left no copy
thread is alive or writing, whether the copies finished, failed or were stopped."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paraminspect.edit.writers import copying
from paraminspect.io import source as input_files

SIZE = 3 * (1 << 20) + 12345  # more than one chunk, not a whole number of them


@pytest.fixture
def source(tmp_path: Path) -> Iterator[input_files.Source]:
    path = tmp_path / "in.bin"
    path.write_bytes(os.urandom(SIZE))
    opened = input_files.Source(path)
    yield opened
    opened.close()


@pytest.fixture
def output(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    yield path, fd
    os.close(fd)


def copy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("copy") and t.is_alive()]


# Ranges of the input: whole chunks and not, empty, one byte, the last byte.
RANGES = [(5, 1 << 20), (0, 0), (SIZE - 1, SIZE), (1 << 20, SIZE), (17, 4113)]


def placed(gap: int) -> list[tuple[int, int, int]]:
    """(begin, end, pos): the ranges laid out back to front in the output, ``gap`` bytes apart."""
    jobs, pos = [], gap
    for begin, end in reversed(RANGES):
        jobs.append((begin, end, pos))
        pos += end - begin + gap
    return jobs


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "loop"])
def test_copies_land_byte_exact(
    source: input_files.Source,
    output: tuple[Path, int],
    monkeypatch: pytest.MonkeyPatch,
    threads: int,
    kernel: bool,
) -> None:
    if kernel:
        monkeypatch.setattr(copying, "KERNEL_STEP", 65537)  # many kernel calls per range
    else:

        def refusing(*args: Any) -> int:
            raise OSError(errno.EXDEV, "cross-device")

        monkeypatch.setattr(os, "copy_file_range", refusing)
        monkeypatch.setattr(copying, "CHUNK_BYTES", 65537)  # many loop chunks per range
    path, fd = output
    jobs = placed(gap=3)
    with copying.CopyPool(fd, threads) as pool:
        futures = [pool.submit(source, begin, end, pos) for begin, end, pos in jobs]
        pool.wait()
    assert all(f.done() and f.exception() is None for f in futures)
    assert copy_threads() == []
    data = source.path.read_bytes()  # read again, not through the pool's source
    expected = bytearray(max(pos + end - begin for begin, end, pos in jobs))  # the gaps: zeros
    for begin, end, pos in jobs:
        expected[pos : pos + end - begin] = data[begin:end]
    assert path.read_bytes() == expected


def test_a_failed_copy_raises_and_no_copy_outlives_the_block(
    source: input_files.Source, output: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first failure is raised by ``wait``; the copies still running stop at their next
    chunk, those queued never start, and none writes once the block is left."""
    _, fd = output
    real = os.copy_file_range
    calls: list[tuple[float, int]] = []  # (when, destination offset) of every kernel call
    started = threading.Event()

    def slow(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        calls.append((time.monotonic(), offset_dst))
        started.set()
        time.sleep(0.02)
        return real(src, dst, count, offset_src, offset_dst)

    real_copy = copying.copy_range

    def failing(src: Any, begin: int, end: int, dst: int, pos: int, *args: Any, **kwargs: Any) -> None:
        if pos == 0:
            assert started.wait(10)  # the other thread is mid-copy
            raise OSError(errno.ENOSPC, "No space left on device")
        real_copy(src, begin, end, dst, pos, *args, **kwargs)

    monkeypatch.setattr(copying, "KERNEL_STEP", 4096)  # ~800 calls (16 s) for a whole range
    monkeypatch.setattr(os, "copy_file_range", slow)
    monkeypatch.setattr(copying, "copy_range", failing)
    with pytest.raises(OSError, match="No space left") as raised, copying.CopyPool(fd, 2) as pool:
        futures = [pool.submit(source, 0, SIZE, pos) for pos in (0, SIZE, 2 * SIZE, 3 * SIZE)]
        pool.wait()
    left = time.monotonic()
    assert raised.value.errno == errno.ENOSPC
    assert copy_threads() == []
    assert isinstance(futures[1].exception(), copying.Abandoned)  # running when the pool was left
    # The failed copy's thread may take the next job before the pool is left; it stops too.
    assert futures[2].cancelled() or isinstance(futures[2].exception(), copying.Abandoned)
    assert futures[3].cancelled()  # queued: never started
    assert calls and not [c for c in calls if c[1] >= 3 * SIZE]
    assert len(calls) < SIZE // 4096 // 2
    count = len(calls)
    time.sleep(0.2)
    assert len(calls) == count
    assert all(when <= left for when, _ in calls)


def test_stop_ends_a_copy_at_its_next_chunk(
    source: input_files.Source, output: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stop`` set while a copy runs ends it with Abandoned (by the kernel or by the loop),
    and ``wait`` raises that."""
    path, fd = output
    real = os.copy_file_range
    calls = 0
    pool = copying.CopyPool(fd, 1)

    def stopping(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            pool.stop.set()
        return real(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(copying, "KERNEL_STEP", 4096)
    monkeypatch.setattr(os, "copy_file_range", stopping)
    with pytest.raises(copying.Abandoned), pool:
        future = pool.submit(source, 0, SIZE, 0)
        pool.wait()
    assert isinstance(future.exception(), copying.Abandoned)
    assert calls == 3
    assert os.path.getsize(path) == 3 * 4096
    assert copy_threads() == []


def test_leaving_the_block_on_an_error_stops_the_copies(
    source: input_files.Source, output: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error on the calling thread (an encoded tensor failing, say) leaves the block
    without ``wait``: the copy under way stops, and the block's error is what is raised."""
    path, fd = output
    real = os.copy_file_range
    started = threading.Event()
    calls = 0

    def slow(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        nonlocal calls
        calls += 1
        started.set()
        time.sleep(0.01)
        return real(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(copying, "KERNEL_STEP", 4096)
    monkeypatch.setattr(os, "copy_file_range", slow)
    with pytest.raises(ValueError, match="encoding failed"), copying.CopyPool(fd, 1) as pool:
        future = pool.submit(source, 0, SIZE, 0)
        assert started.wait(10)
        raise ValueError("encoding failed")
    assert isinstance(future.exception(), copying.Abandoned)
    assert copy_threads() == []
    count = calls
    assert 0 < count < SIZE // 4096
    time.sleep(0.1)
    assert calls == count
    assert os.path.getsize(path) == count * 4096


def test_writeback_takes_hints_for_the_copies(
    source: input_files.Source, output: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every copied byte is handed to the pool's Writeback, which the caller's own writes share."""
    _, fd = output
    hinted: list[tuple[int, int]] = []
    with copying.CopyPool(fd, 2) as pool:
        monkeypatch.setattr(pool.writeback, "start", lambda begin, nbytes: hinted.append((begin, nbytes)))
        pool.submit(source, 0, 1000, 0)
        pool.submit(source, 0, 3000, 5000)
        pool.wait()
    assert sorted(hinted) == [(0, 1000), (5000, 3000)]


def test_a_copy_that_starts_after_finish_is_refused() -> None:
    """Running: a job a Ctrl-C kept out of the pool's join finds the count closed and never runs."""
    running = copying.Running()
    assert running.run(lambda x: x + 1, 1) == 2
    running.finish()
    ran: list[int] = []
    with pytest.raises(copying.Abandoned):
        running.run(ran.append, 1)
    assert ran == []
