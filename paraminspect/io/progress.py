"""Progress of long work, counted in bytes where bytes are read; drawn elsewhere.

A command that knows how much it will read opens a :func:`task` with that many
bytes; every read of data bytes (``Source.readinto``, and remote bytes as they
arrive in :mod:`paraminspect.io.http`) calls :func:`advance`. With no task open
(header-only work, the library) ``advance`` is one global read and a return.
Threads share the open task (``diff`` and ``stats`` read on two): counts are
taken under a lock. This layer never prints: the CLI sets :data:`SHOW`, a
function that draws a task while it runs (``output/progress.py``), or leaves it
None (stderr not a terminal, ``--quiet``, ``--no-progress``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager


class Task:
    """Bytes done of bytes to do (``total`` is an estimate: reads may pass it)."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self._lock = threading.Lock()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes


# Draws a task while the ``with`` block runs; None: nothing is drawn.
SHOW: Callable[[Task], AbstractContextManager[None]] | None = None


class _Open:
    task: Task | None = None  # the task reads count towards (one per process)


_OPEN = _Open()


def advance(nbytes: int) -> None:
    """Count ``nbytes`` read towards the open task, if any."""
    task = _OPEN.task
    if task is not None:
        task.advance(nbytes)


@contextmanager
def task(total: int, label: str) -> Iterator[Task | None]:
    """Count the reads inside the block towards ``total`` bytes and show them (if
    :data:`SHOW` is set). A task inside another adds nothing: the outer one counts."""
    show = SHOW
    if _OPEN.task is not None or show is None or total <= 0:
        yield None
        return
    opened = _OPEN.task = Task(total, label)
    try:
        with show(opened):
            yield opened
    finally:
        _OPEN.task = None
