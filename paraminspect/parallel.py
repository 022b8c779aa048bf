"""Run independent per-tensor work on a few threads, results in order.

Reading (``preadv``), zlib and numpy's loops release the GIL, so two threads
nearly halve commands that are bound by reading and reducing tensor data
(diff, stats) on the 2-core machines this is measured on. Each task runs in a
copy of the caller's context: the ``--max-*`` limits live in a context variable.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

THREADS = 2

Item = TypeVar("Item")
Result = TypeVar("Result")


def ordered_map(fn: Callable[[Item], Result], items: Sequence[Item], threads: int | None = None) -> list[Result]:
    """``[fn(item) for item in items]`` on ``threads`` threads (default ``THREADS``).

    The first exception is raised as soon as its turn comes; tasks not yet
    started are then dropped (so Ctrl-C waits for at most one task per thread).
    """
    threads = THREADS if threads is None else threads
    if len(items) <= 1 or threads <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="paraminspect")
    try:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
