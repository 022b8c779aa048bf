"""Run independent per-tensor work on a few threads, results in order.

Reading (``preadv``), zlib and numpy's loops release the GIL, so two threads
nearly halve commands that are bound by reading and reducing tensor data
(diff, stats) on the 2-core machines this is measured on. Each task runs in a
copy of the caller's context: the ``--max-*`` limits live in a context variable.

Ctrl-C must stop this within a second (interrupts.py). A signal may be
delivered to a worker thread, and the main thread only runs Python's handler
once it wakes up, so it never blocks without a timeout (:func:`wait`). After an
interrupt the workers are not joined: they stop at their next chunk
(``interrupts.check``), and one stuck in a single long numpy call is left to
the process exit (``interrupts.leave``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from typing import TypeVar

from paraminspect import interrupts

THREADS = 2
# How long the main thread blocks at a time: the delay before it sees a signal.
POLL_SECONDS = 0.1

Item = TypeVar("Item")
Result = TypeVar("Result")


def wait(future: Future[Result]) -> Result:
    """``future.result()``, waking every :data:`POLL_SECONDS` so a signal is handled at once."""
    while not interrupts.calm(wait_all, [future], timeout=POLL_SECONDS).done:
        pass
    return interrupts.calm(future.result)


def shutdown(pool: ThreadPoolExecutor, error: BaseException | None) -> None:
    """End ``pool``: join its threads, except after an interrupt (they may be stuck)."""
    interrupts.calm(pool.shutdown, wait=not interrupts.is_interrupt(error), cancel_futures=True)


def ordered_map(fn: Callable[[Item], Result], items: Sequence[Item], threads: int | None = None) -> list[Result]:
    """``[fn(item) for item in items]`` on ``threads`` threads (default ``THREADS``).

    The first exception is raised as soon as its turn comes; tasks not yet
    started are then dropped (so an error waits for at most one task per thread,
    and an interrupt for none).
    """
    threads = THREADS if threads is None else threads
    if len(items) <= 1 or threads <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="paraminspect")
    error: BaseException | None = None
    try:
        futures = [interrupts.calm(pool.submit, contextvars.copy_context().run, fn, item) for item in items]
        return [wait(future) for future in futures]
    except BaseException as exc:
        error = exc
        raise
    finally:
        shutdown(pool, error)
