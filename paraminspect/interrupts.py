"""Ctrl-C and SIGTERM: stop within a second, clean up, exit 128 + the signal.

Python turns SIGINT into KeyboardInterrupt but dies at once on SIGTERM (what
``timeout``, ``docker stop`` and systemd send), leaving a named temporary file
behind where the filesystem has no ``O_TMPFILE`` (NFS, SMB, FUSE).
:func:`install` (called by the console script, never on import) makes both
raise in the main thread, so every ``with``/``finally`` cleanup runs:
SIGINT as KeyboardInterrupt, SIGTERM and SIGHUP as :class:`Terminated`. Both
are BaseExceptions, so no ``except Exception`` swallows them, and the signal
is also recorded: whatever error an interrupted library turns it into, the
command reports the interruption (:func:`received`).

Only the first signal raises; later ones are ignored so they cannot break off
the cleanup the first one started, and a watchdog ends the process
:data:`WATCHDOG_SECONDS` after the first one should the cleanup itself hang.
Work on helper threads checks :data:`STOP` between bounded chunks
(:func:`check`), and the main thread waits for it with timeouts
(``parallel.wait``) so the signal is handled while it waits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

Result = TypeVar("Result")

WATCHDOG_SECONDS = 10.0

# Set on the first signal: long loops on any thread stop at their next chunk.
STOP = threading.Event()

_NAMES: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}
if hasattr(signal, "SIGHUP"):
    _NAMES[signal.SIGHUP] = "terminated (SIGHUP)"


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like KeyboardInterrupt does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Stopped(BaseException):
    """Raised on a helper thread by :func:`check` once a signal asked the process to stop."""


class _State:
    received: int | None = None  # the first signal's number
    defer_depth = 0  # > 0 inside deferred() on the main thread
    pending = False  # a signal arrived inside deferred(); raise on leaving it
    watchdog: threading.Timer | None = None


def install() -> None:
    """Handle SIGINT, SIGTERM and SIGHUP as described above (main thread only).

    A signal that was ignored when the process started (``nohup``, a
    background job of a non-interactive shell) stays ignored.
    """
    for signum in _NAMES:
        current = signal.getsignal(signum)
        if current in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(signum, _handler)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """:func:`install` for one call of the CLI as a library function (``cli.main``), then
    the previous handlers back; without it a Ctrl-C raises at any bytecode of the main
    thread, inside the thread pools' locks too (see :func:`calm`). A no-op off the main
    thread or when the handlers are already ours (the console script)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is _handler:
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _NAMES}
    install()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if _State.watchdog is not None:
            _State.watchdog.cancel()
        _State.received, _State.pending, _State.watchdog = None, False, None
        STOP.clear()


def calm(fn: Callable[..., Result], /, *args: Any, **kwargs: Any) -> Result:
    """``fn(*args, **kwargs)`` with a signal's exception held until it returns.

    For the main thread's calls into thread pools, locks and conditions
    (``submit``, ``shutdown``, ``wait``): CPython's Semaphore and Condition are
    not safe against an exception raised between their own release and
    re-acquire, and a KeyboardInterrupt landing there broke ``submit`` with
    "release unlocked lock" or left a lock held so that the pool's join hung.
    """
    with deferred():
        return fn(*args, **kwargs)


def _handler(signum: int, frame: FrameType | None) -> None:
    if _State.received is not None:
        return  # already stopping: let the cleanup finish
    _State.received = signum
    STOP.set()
    watchdog = threading.Timer(WATCHDOG_SECONDS, _force_exit, (signum,))
    watchdog.daemon = True
    _State.watchdog = watchdog
    watchdog.start()
    if _State.defer_depth:
        _State.pending = True
        return
    raise _exception(signum)


def _exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _force_exit(signum: int) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"paraminspect: {_NAMES[signum]}; cleanup did not finish in time\n".encode())
    os._exit(exit_code(signum))


def received() -> int | None:
    """The first signal this process received since :func:`install`, or None."""
    return _State.received


def exit_code(signum: int) -> int:
    """128 + the signal number, as a shell reports a process killed by it (130 for Ctrl-C)."""
    return 128 + signum


def describe(signum: int) -> str:
    return _NAMES.get(signum, f"stopped by signal {signum}")


def signal_of(exc: BaseException) -> int | None:
    """The signal an exception stands for (KeyboardInterrupt is SIGINT), or None."""
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(exc, Terminated):
        return exc.signum
    return None


def is_interrupt(exc: BaseException | None) -> bool:
    """True for the exceptions a signal raises (here or, as :class:`Stopped`, on a helper thread)."""
    return isinstance(exc, KeyboardInterrupt | Terminated | Stopped)


def check() -> None:
    """Raise :class:`Stopped` if a signal asked the process to stop (call between chunks of work)."""
    if STOP.is_set():
        raise Stopped


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal's exception until the block ends (steps that must not be cut in two:
    creating a temporary file and recording its name, removing it). Main thread only;
    elsewhere a no-op, as signals are handled on the main thread anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _State.defer_depth += 1
    try:
        yield
    finally:
        _State.defer_depth -= 1
        if not _State.defer_depth and _State.pending:
            _State.pending = False
            if _State.received is not None:
                raise _exception(_State.received)


def leave(code: int) -> None:
    """End the process with ``code``: flush, and if any helper thread is still alive
    (after an interrupt: one inside a long numpy call cannot be stopped) end it with
    ``os._exit``, never finalising the interpreter under it.

    Daemon threads count too: finalisation makes a daemon thread that wakes up
    exit from the middle of whatever native code it is in (CPython gh-87135), and
    one busy importing numpy or safetensors' Rust module then crashed the process
    at exit now and then (SIGSEGV, exit -11 instead of 130). Only the watchdog,
    which is just waiting, is stopped and joined first.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    watchdog = _State.watchdog
    if watchdog is not None:
        watchdog.cancel()
        watchdog.join(timeout=1.0)
    if any(t is not threading.main_thread() and t.is_alive() for t in threading.enumerate()):
        os._exit(code)
    sys.exit(code)
