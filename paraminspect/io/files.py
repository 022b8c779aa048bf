"""Opening checkpoint files by name: regular files only.

A name in a model directory can be a FIFO (``open`` then waits forever for a
writer), a character device (``/dev/zero``: endless bytes) or a socket. Every
reader opens files through :func:`open_regular`, which opens without blocking
and checks the opened file itself (no window between a check and the open).
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from paraminspect.errors import CheckpointError

_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """``open(path, "rb")`` for a regular file; anything else is refused at once.

    OS errors propagate as ``OSError`` (callers turn them into their own message;
    a directory raises ``IsADirectoryError`` as ``open`` would).
    """
    return os.fdopen(regular_fd(path), "rb")


def regular_fd(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of a regular file (:func:`open_regular`'s checks)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a FIFO opened for writing): not a file
            raise CheckpointError("is not a regular file (a socket or device)", Path(path)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode))
            what = f"is {kind}, not a regular file" if kind else "is not a regular file"
            raise CheckpointError(f"{what}; refused", Path(path))
        return fd
    except BaseException:
        os.close(fd)
        raise


def require_regular(path: Path) -> None:
    """Refuse a name that is not a regular file, for readers that open it later (mmap, pathlib)."""
    open_regular(path).close()


def hub_blobs(directory: Path) -> Path | None:
    """The blob store of the Hugging Face cache snapshot ``directory`` is in, if it is in one:
    a snapshot's files are symlinks to ``models--org--repo/blobs/<hash>``."""
    here = directory.absolute()
    for folder in (here, *here.parents):
        if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
            return (folder.parent.parent / "blobs").resolve()
    return None
