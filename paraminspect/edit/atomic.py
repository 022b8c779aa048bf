"""Write a file so that readers see either the old file or the complete new one.

On Linux the data goes into an anonymous ``O_TMPFILE`` inode in the target's
directory: it has no name while it is being written, so even ``kill -9`` mid-way
leaves nothing behind. Only after write, flush, fsync and verification is it
given a temporary name and ``os.replace``d over the target, and the directory
is fsynced. Where ``O_TMPFILE`` is unavailable a ``mkstemp`` file is used and
deleted on any exception, KeyboardInterrupt included, and on SIGTERM/SIGHUP,
which the console script turns into an exception (interrupts.py); creating,
naming and removing it are never cut in two by a signal.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from paraminspect import interrupts
from paraminspect.errors import UsageError
from paraminspect.parallel import wait

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

# Room to leave on the filesystem beyond the file itself (journal, metadata).
FREE_SPACE_MARGIN = 16 << 20


def resolve_target(path: Path) -> Path:
    """Follow symlinks so an edit replaces the file a link points to, not the link.

    A symlink loop (``a -> b -> a``) points at no file: refused, never replaced.
    """
    try:
        os.path.realpath(path, strict=True)
    except FileNotFoundError:
        pass  # a new file, or a link to one: written where the link points
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError("symlink loop: the path points at no file", path) from None
    return Path(os.path.realpath(path))


def check_output(output: Path, *, source: Path, in_place: bool, force: bool) -> Path:
    """Refuse writes that could lose data; return the resolved path to write."""
    target = resolve_target(output)
    if target.is_dir():
        raise UsageError("output is a directory", output)
    same = not getattr(source, "remote", False) and target == resolve_target(source)  # a URL is never the output
    if same and not in_place:
        raise UsageError("output is the input file; use --in-place to overwrite it", output)
    if target.exists() and not same and not force:
        raise UsageError("output exists; use --force to overwrite it", output)
    if not target.parent.is_dir():
        raise UsageError(f"directory {target.parent} does not exist", output)
    return target


@contextlib.contextmanager
def edit_lock(fd: int, label: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on the file an ``--in-place`` edit replaces.

    Two in-place edits of one file must not both read the old file and each
    replace it with their own result (the first one's work silently lost): the
    second finds the lock taken and stops. One that starts after the first has
    finished still holds the old file open, and the caller's pre-replace check
    finds the path now names another file. Both end in a one-line error, exit 2.
    """
    if fcntl is None:  # no flock here (Windows): the pre-replace check still runs
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(
            "is being edited by another process (it holds the file's lock); nothing was written", label
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """Context manager: ``with AtomicFile(target) as out: write(out.file); out.commit(verify)``.

    Leaving the block without :meth:`commit` (an exception, Ctrl-C) discards the
    new data and leaves ``target`` untouched.
    """

    def __init__(
        self,
        target: Path,
        *,
        need_bytes: int = 0,
        mode_from: Path | None = None,
        before_replace: Callable[[], None] | None = None,
    ) -> None:
        self.target = resolve_target(target)
        self.need_bytes = need_bytes
        self.mode_from = mode_from
        # Last check before the target is replaced (the input is still the file that was read).
        self.before_replace = before_replace
        self._fd = -1
        self._temp_name: Path | None = None  # set when the data has a name on disk
        self._anonymous = False
        self.file: BinaryIO
        self.committed = False

    @property
    def path(self) -> Path:
        """A path that opens the data written so far (for verification before commit)."""
        if self._anonymous:
            return Path(f"/proc/self/fd/{self._fd}")
        assert self._temp_name is not None
        return self._temp_name

    def __enter__(self) -> AtomicFile:
        directory = self.target.parent
        free = shutil.disk_usage(directory).free
        if self.need_bytes and free < self.need_bytes + FREE_SPACE_MARGIN:
            raise UsageError(
                f"not enough free space in {directory}: need {self.need_bytes:,} bytes, {free:,} available",
                self.target,
            )
        with interrupts.deferred():  # a signal must not fall between creating the file and naming it here
            self._fd = self._open_anonymous(directory)
            self._anonymous = self._fd >= 0
            if self._fd < 0:
                fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=directory)
                self._fd, self._temp_name = fd, Path(name)
        self.file = os.fdopen(self._fd, "w+b", closefd=False)
        return self

    @staticmethod
    def _open_anonymous(directory: Path) -> int:
        flag = getattr(os, "O_TMPFILE", 0)
        if not flag or not Path("/proc/self/fd").is_dir():
            return -1
        try:
            return os.open(directory, flag | os.O_RDWR, 0o600)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                return -1
            raise

    def _mode(self) -> int:
        """The replaced file keeps its mode; a new file gets the source's, less the umask (like cp)."""
        if self.target.exists():
            return stat.S_IMODE(self.target.stat().st_mode)
        if self.mode_from is not None and not getattr(self.mode_from, "remote", False) and self.mode_from.exists():
            return stat.S_IMODE(self.mode_from.stat().st_mode) & ~_umask()
        return 0o666 & ~_umask()

    def _keep_owner(self) -> None:
        """Best effort: a replaced file keeps its owner and group (works as root or for the group)."""
        if not self.target.exists():
            return
        st = self.target.stat()
        with contextlib.suppress(PermissionError, AttributeError):
            os.fchown(self._fd, st.st_uid, st.st_gid)

    def commit(self, verify: Callable[[Path], None] | None = None) -> None:
        """Flush, fsync, verify, then atomically put the data in place and fsync the directory."""
        self.file.flush()
        if verify is None:
            os.fsync(self._fd)
        else:
            # fsync (waiting on the disk) and verification (reading the page cache) overlap.
            with ThreadPoolExecutor(max_workers=1) as pool:
                synced = interrupts.calm(pool.submit, os.fsync, self._fd)
                verify(self.path)
                wait(synced)
        os.fchmod(self._fd, self._mode())
        self._keep_owner()
        with interrupts.deferred():
            if self._anonymous:
                self._temp_name = self._give_name()
                self._anonymous = False
            assert self._temp_name is not None
            if self.before_replace is not None:
                self.before_replace()
            os.replace(self._temp_name, self.target)
            self._temp_name = None
            self.committed = True
        dir_fd = os.open(self.target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _give_name(self) -> Path:
        # linkat() through /proc gives the anonymous inode a name; it fails
        # rather than overwrite, so retry on the (unlikely) clash.
        # A directory fd makes CPython call linkat(AT_SYMLINK_FOLLOW); plain
        # link() would try to hard-link the /proc symlink itself (EXDEV).
        proc_fd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(100):
                name = Path(tempfile.mktemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent))
                try:
                    os.link(str(self._fd), name, src_dir_fd=proc_fd, follow_symlinks=True)
                except FileExistsError:
                    continue
                return name
        finally:
            os.close(proc_fd)
        raise OSError(errno.EEXIST, "could not name the temporary file", str(self.target.parent))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with interrupts.deferred():  # a signal arriving now must not cut the cleanup short
            with contextlib.suppress(OSError):
                self.file.close()
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
            if self._temp_name is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._temp_name)
                self._temp_name = None
