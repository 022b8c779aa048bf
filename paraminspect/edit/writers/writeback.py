"""Start writing freshly written bytes to disk while the copy goes on.

Every edit fsyncs its output before replacing anything. Left alone, the kernel
holds the whole new file dirty in memory and the fsync then waits for all of
it; asking for writeback of each finished range (``sync_file_range`` with
``SYNC_FILE_RANGE_WRITE``, which only starts I/O) lets the disk work while the
rest is copied, so the fsync finds little left to do (measured on the 1 GiB
benchmark file: fsync 0.25 s -> 0.01 s, copy time unchanged). It is only a
hint: durability still comes from the fsync, and where the call is missing
(not Linux, no libc) nothing happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from paraminspect import interrupts

SYNC_FILE_RANGE_WRITE = 2
# Hint in steps of this size: bounded syscall count, and writeback starts soon.
STEP_BYTES = 32 << 20

_call: dict[str, Callable[[int, int, int, int], int] | None] = {}


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if "fn" not in _call:
        _call["fn"] = None
        with contextlib.suppress(OSError, AttributeError, ImportError):
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _call["fn"] = fn
    return _call["fn"]


class Writeback:
    """Hand written ranges of ``fd`` to the kernel's writeback, from any thread.

    The calls run on a helper thread: submitting the I/O can block on a full
    device queue, which measured 0.15 s slower copies when done inline. Each
    writer tracks its own run of bytes with :meth:`stream`. Use as a context
    manager or call :meth:`close`.
    """

    def __init__(self, fd: int, step: int = STEP_BYTES) -> None:
        self.fd = fd
        self.step = step
        self._fn = _sync_file_range()
        # Threads start on the first hint; submit() is thread-safe.
        self._pool = ThreadPoolExecutor(max_workers=1) if self._fn is not None else None

    def __enter__(self) -> Writeback:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(cancel=exc_type is not None)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the submitted hints; with ``cancel`` (an error, Ctrl-C) drop those not started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def stream(self, pos: int) -> Stream:
        """A tracker for bytes one writer writes in order from ``pos``."""
        return Stream(self, pos)

    def start(self, begin: int, nbytes: int) -> None:
        """Start writeback of ``[begin, begin + nbytes)`` (no waiting)."""
        if nbytes > 0 and self._pool is not None and self._fn is not None:
            # The result is not awaited: a failure only means the fsync does all the work.
            interrupts.calm(self._pool.submit, self._fn, self.fd, begin, nbytes, SYNC_FILE_RANGE_WRITE)


class Stream:
    """One writer's run of bytes: hints every ``step`` bytes, and the rest at :meth:`flush`."""

    def __init__(self, writeback: Writeback, pos: int) -> None:
        self.writeback = writeback
        self._begin = pos  # first byte not yet handed to writeback
        self._end = pos

    def wrote(self, nbytes: int) -> None:
        """Record the next ``nbytes`` bytes as written."""
        self._end += nbytes
        if self._end - self._begin >= self.writeback.step:
            self.flush()

    def flush(self) -> None:
        """Start writeback of everything recorded so far."""
        self.writeback.start(self._begin, self._end - self._begin)
        self._begin = self._end
