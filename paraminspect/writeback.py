"""Start writing freshly written bytes to disk while the copy goes on.

Every edit fsyncs its output before replacing anything. Left alone, the kernel
holds the whole new file dirty in memory and the fsync then waits for all of
it; asking for writeback of each finished range (``sync_file_range`` with
``SYNC_FILE_RANGE_WRITE``, which only starts I/O) lets the disk work while the
rest is copied, so the fsync finds little left to do (measured on the 1 GiB
benchmark file: fsync 0.25 s -> 0.02 s, copy time unchanged). It is only a
hint: durability still comes from the fsync, and where the call is missing
(not Linux, no libc) nothing happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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
    """Track bytes written to ``fd`` and start their writeback every ``step`` bytes.

    The calls run on a helper thread: submitting the I/O can block on a full
    device queue, which measured 0.15 s slower copies when done inline. Use as
    a context manager or call :meth:`close`.
    """

    def __init__(self, fd: int, step: int = STEP_BYTES) -> None:
        self.fd = fd
        self.step = step
        self._begin: int | None = None  # first byte not yet handed to writeback
        self._end = 0
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Writeback:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(cancel=exc_type is not None)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the submitted hints; with ``cancel`` (an error, Ctrl-C) drop those not started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def wrote(self, pos: int, nbytes: int) -> None:
        """Record that ``[pos, pos + nbytes)`` was written; writes are expected in order."""
        if self._begin is None or pos != self._end:
            self.flush()
            self._begin = pos
        self._end = pos + nbytes
        if self._end - self._begin >= self.step:
            self.flush()

    def flush(self) -> None:
        """Start writeback of everything recorded so far (no waiting)."""
        if self._begin is not None and self._end > self._begin:
            fn = _sync_file_range()
            if fn is not None:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1)
                # The result is not awaited: a failure only means the fsync does all the work.
                self._pool.submit(fn, self.fd, self._begin, self._end - self._begin, SYNC_FILE_RANGE_WRITE)
        self._begin = None
