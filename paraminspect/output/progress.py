"""The progress bar on stderr (rich), for a task of :mod:`paraminspect.io.progress`.

Shown only when stderr is a terminal, without ``NO_COLOR`` (the design's rule
for colour and progress alike: whoever asks for a plain terminal gets no
animation either), not in CI (``CI`` set) nor on a dumb terminal, and only once
the work has lasted :data:`DELAY` seconds: quick commands never draw it and
never import rich. The bar is transient: it is wiped before the command prints,
so stdout and any saved log hold no trace of it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from paraminspect.io.progress import Task

DELAY = 0.5  # seconds of work before a bar appears (PARAMINSPECT_PROGRESS_DELAY overrides it)
DELAY_VARIABLE = "PARAMINSPECT_PROGRESS_DELAY"
REFRESH = 0.1  # seconds between redraws


def allowed(stream: TextIO) -> bool:
    """A bar may be drawn on ``stream``: a terminal, NO_COLOR unset, outside CI, not TERM=dumb."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    environ = os.environ
    return tty and not environ.get("NO_COLOR") and not environ.get("CI") and environ.get("TERM") != "dumb"


@contextmanager
def show(task: Task) -> Iterator[None]:
    """Draw ``task`` on stderr while the block runs (from a thread of its own)."""
    stream = sys.stderr
    if not allowed(stream):
        yield
        return
    stop = threading.Event()
    # A plain thread, not a daemon: shutdown waits for it, never finalising under its
    # import of rich (a daemon thread inside an import at exit can crash the interpreter).
    drawer = threading.Thread(target=_draw, args=(task, stream, stop), name="paraminspect-progress")
    drawer.start()
    try:
        yield
    finally:
        stop.set()
        drawer.join(timeout=2)


def delay() -> float:
    """Seconds before a bar appears: :data:`DELAY`, or the variable's value if it is a number."""
    try:
        return max(0.0, float(os.environ.get(DELAY_VARIABLE, DELAY)))
    except ValueError:
        return DELAY


def _draw(task: Task, stream: TextIO, stop: threading.Event) -> None:
    if stop.wait(delay()):
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(file=stream, highlight=False)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
    ) as bar:
        shown = bar.add_task(task.label, total=task.total)
        while True:
            done = task.done
            bar.update(shown, completed=done, total=max(task.total, done))
            bar.refresh()
            if stop.wait(REFRESH):
                return
