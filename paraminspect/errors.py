"""Exceptions, each carrying the exit code the CLI reports for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXIT_OK = 0
EXIT_DIFFERENT = 1  # diff found differences, check failed, scan found unsafe globals
EXIT_ERROR = 2  # usage error or unreadable input
EXIT_INTERNAL = 3  # a bug in paraminspect (an unexpected exception), reported in one line
# 128 + N: stopped by signal N (130 Ctrl-C, 143 SIGTERM); see interrupts.py


class ParamInspectError(Exception):
    """Base of every error paraminspect raises on purpose.

    ``source`` is the file (or name) the problem is about; the CLI prints
    ``paraminspect: error: <source>: <message>`` and exits with ``exit_code``.
    """

    exit_code = EXIT_ERROR

    def __init__(self, message: str, source: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = None if source is None else str(source)

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class CheckpointError(ParamInspectError):
    """The file is missing, unreadable, or not a checkpoint we can read safely."""


class LimitExceeded(CheckpointError):
    """The file asks for more than a configured resource limit allows."""


class AmbiguousArchive(CheckpointError):
    """The zip could show different records to different readers (torch's miniz, Python's zipfile).

    ``scan`` reports it as a finding (exit 1), not as an unreadable file: the
    file may well load in torch, and load something other than what we saw.
    """

    def __init__(self, message: str, source: str | Path | None = None) -> None:
        super().__init__(f"ambiguous archive: {message}", source)


class SelectionError(ParamInspectError):
    """A name or pattern selected nothing, or is malformed."""


class UsageError(ParamInspectError):
    """The command line asks for something that cannot be done."""


@contextmanager
def reading(path: str | Path, kind: str = "checkpoint file") -> Iterator[None]:
    """Turn the OS errors of opening and reading ``path`` into one-line errors."""
    try:
        yield
    except FileNotFoundError:
        raise CheckpointError("no such file", path) from None
    except IsADirectoryError:
        raise CheckpointError(f"is a directory, not a {kind}", path) from None
    except PermissionError:
        raise CheckpointError("permission denied", path) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read ({exc.strerror or exc})", path) from None
