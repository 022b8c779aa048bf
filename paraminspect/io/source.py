"""Where a checkpoint's bytes come from: one handle per input file, opened once.

Every read of a file's bytes (headers, tensor data, copies, checksums) goes
through the :class:`Source` opened when the checkpoint was opened, never
through the path again. So a file replaced under a command (``os.replace``, a
concurrent ``--in-place`` edit) keeps being read as the file that was opened,
and :meth:`Source.changed` notices: the path no longer names the opened inode,
or its size or mtime moved, or the header bytes read at open differ when read
again. Reads are positional (``pread``) into buffers, never memory maps: a file
truncated underneath gives a short read and a one-line error, not the SIGBUS a
mapped page past the end raises. A remote source (HTTP ranges,
:mod:`~paraminspect.io.http`) is another kind of Source, opened for a
:class:`~paraminspect.io.url.UrlPath`; :data:`COST` counts what it fetched.

Sources live as long as the :class:`~paraminspect.model.Checkpoint` holding them
(plus the last :data:`RECENT` opened; the registry otherwise keeps only weak
references), so a library caller opening many files does not run out of file
descriptors. A path re-opened after it changed gets a new Source, and reads of
that path go through the new one from then on.

One Source serves every checkpoint of an unchanged file (two ``safe_open`` of
it, a sharded model and one of its shards), so closing is by ownership: each
checkpoint holds its sources (:func:`hold`), and :func:`release` closes one only
when no other live holder is left. Closing one reader never closes the handle
another reads through (which would make its next read reopen the path and read
whatever file is there now, unchecked).
"""

from __future__ import annotations

import collections
import io
import os
import threading
import weakref
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paraminspect.errors import CheckpointError
from paraminspect.io import progress
from paraminspect.io.files import regular_fd

CHANGED = "the file changed while it was being read"
TRUNCATED = "the file was truncated while it was being read"


@dataclass(frozen=True)
class Snapshot:
    """What identifies a file's content cheaply: which inode, how big, when last written."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Snapshot:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class Cost:
    """What remote reads cost this process: requests made and bytes fetched."""

    requests: int = 0
    bytes: int = 0

    def add(self, requests: int, nbytes: int) -> None:
        with _cost_lock:
            self.requests += requests
            self.bytes += nbytes

    def reset(self) -> None:
        with _cost_lock:
            self.requests = self.bytes = 0

    def as_dict(self) -> dict[str, int]:
        with _cost_lock:
            return {"requests": self.requests, "bytes": self.bytes}


_cost_lock = threading.Lock()
COST = Cost()
# Remote sources: whether a server without range support may send the whole file.
ALLOW_FULL_DOWNLOAD = False


class Source:
    """One opened input file: a descriptor, the snapshot taken when it was opened, and
    the byte ranges the header readers read from it (checked again by :meth:`changed`)."""

    remote = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = regular_fd(path)  # a FIFO or device is refused, never waited on
        try:
            self.snapshot = Snapshot.of(os.fstat(self.fd))
        except BaseException:
            os.close(self.fd)
            raise
        self.size = self.snapshot.size
        self.data_read = False  # tensor bytes were read (read-only commands check these at the end)
        self.replaced = False  # this process replaced the file (--in-place): the path names the new one
        self._header: list[tuple[int, int, int]] = []  # (offset, length, crc32) read while opening
        self._lock = threading.Lock()
        self._closer: weakref.finalize[Any, Any] = weakref.finalize(self, os.close, self.fd)

    @property
    def closed(self) -> bool:
        return not self._closer.alive

    def close(self) -> None:
        self._closer()

    def readinto(self, view: memoryview, offset: int) -> None:
        """Fill ``view`` with the bytes at ``offset``; a short read means the file shrank."""
        self.data_read = True
        done = 0
        while done < len(view):
            n = _pread_into(self.fd, view[done:], offset + done)
            if n == 0:
                raise CheckpointError(TRUNCATED, self.path)
            done += n
        progress.advance(done)

    def pread(self, offset: int, n: int) -> bytearray:
        """Exactly ``n`` bytes at ``offset`` (or a one-line error if the file shrank)."""
        buffer = bytearray(n)
        self.readinto(memoryview(buffer), offset)
        return buffer

    def reader(self, start: int = 0, length: int | None = None) -> io.BufferedReader:
        """A seekable binary stream for the format readers, recording what it reads as the
        header: of the whole file, or of bytes [start, start+length) (a DCP item's zip)."""
        return io.BufferedReader(_HeaderReader(self, start, self.size - start if length is None else length))

    def read_header(self, view: memoryview, offset: int) -> int:
        """Up to ``len(view)`` bytes at ``offset`` for the header readers (noted for :meth:`changed`)."""
        n = _pread_into(self.fd, view, offset) if len(view) else 0
        if n:
            self.note_header(offset, view[:n])
        return n

    def current_size(self) -> int:
        """The file's size now (a shrunk file is reported by the readers)."""
        return os.fstat(self.fd).st_size

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """A hint that these (offset, length) ranges are read next: a local file needs none."""

    def note_header(self, offset: int, data: bytes | memoryview) -> None:
        with self._lock:
            self._header.append((offset, len(data), zlib.crc32(data)))

    def changed(self) -> str | None:
        """Why the file is no longer the one opened, or None when it still is."""
        if self.closed:
            return None
        now = Snapshot.of(os.fstat(self.fd))
        if now.size < self.snapshot.size:
            return TRUNCATED
        if now != self.snapshot:
            return CHANGED
        if not self.replaced:
            try:
                named = Snapshot.of(os.stat(self.path))
            except OSError:
                return CHANGED  # removed or renamed away
            if named != self.snapshot:
                return CHANGED
        with self._lock:
            header = list(self._header)
        for offset, length, crc in header:
            data = os.pread(self.fd, length, offset)
            if len(data) != length or zlib.crc32(data) != crc:
                return CHANGED
        return None


def _pread_into(fd: int, view: memoryview, pos: int) -> int:
    """Positional read into ``view`` (thread-safe on a shared fd); preadv where the OS has it."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], pos)
    data = os.pread(fd, len(view), pos)
    view[: len(data)] = data
    return len(data)


class _HeaderReader(io.RawIOBase):
    """A file object over bytes [start, start+length) of a Source (its own position,
    positional reads, so many may share one descriptor) that notes every read."""

    def __init__(self, source: Source, start: int, length: int) -> None:
        super().__init__()
        self._source, self._start, self._length, self._pos = source, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        view = view[: max(0, min(len(view), self._length - self._pos))]
        n = self._source.read_header(view, self._start + self._pos)
        self._pos += n
        return n

    def fileno(self) -> int:
        if self._source.remote:
            raise io.UnsupportedOperation("a remote source has no file descriptor")
        return self._source.fd


def prefetch(fh: Any, ranges: list[tuple[int, int]]) -> None:
    """Tell the Source behind a reader (from :meth:`Source.reader`) which ranges come next,
    so a remote one fetches them concurrently; offsets are the reader's own."""
    raw = getattr(fh, "raw", None)
    if isinstance(raw, _HeaderReader) and raw._source.remote:
        raw._source.prefetch([(raw._start + offset, length) for offset, length in ranges])


_registry: weakref.WeakValueDictionary[Path, Source] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()
_collecting: list[list[Source]] = []
# The last few sources opened stay open even with no checkpoint holding them, so a
# library caller keeping only TensorRefs (``open_checkpoint(p).tensors``) still reads
# the file that was opened, checked against the snapshot taken with its header.
RECENT = 64
_recent: collections.OrderedDict[Path, Source] = collections.OrderedDict()


def open_source(path: Path) -> Source:
    """The Source for ``path``: the one already open if the file is still that file,
    else a fresh one (snapshot now). Called by the format readers when they open a file.
    A URL (:class:`~paraminspect.io.url.UrlPath`) gets a remote Source, reused while open."""
    if getattr(path, "remote", False):
        with _registry_lock:
            ahead = _adopted.pop(path, None)  # opened ahead, concurrently (a remote index's shards)
        fresh: Source = ahead or path.open_remote()  # type: ignore[attr-defined]
    else:
        fresh = Source(path)
    with _registry_lock:
        known = _registry.get(path)
        if known is fresh:
            pass
        elif known is not None and not known.closed and not fresh.remote and known.snapshot == fresh.snapshot:
            fresh.close()
            fresh = known
        else:
            _registry[path] = fresh
        _recent[path] = fresh
        _recent.move_to_end(path)
        while len(_recent) > RECENT:
            _recent.popitem(last=False)
        for opened in _collecting:
            opened.append(fresh)
    return fresh


_adopted: weakref.WeakValueDictionary[Path, Source] = weakref.WeakValueDictionary()


def adopt(opened: Source) -> None:
    """A Source opened ahead (remote shards, opened concurrently): the next
    :func:`open_source` of its path takes it instead of opening the path again."""
    with _registry_lock:
        _adopted[opened.path] = opened


def get(path: Path) -> Source:
    """The Source reads of ``path`` go through: the one opened with its checkpoint, or
    (a reference whose checkpoint is gone) one opened now."""
    with _registry_lock:
        known = _registry.get(path)
    if known is not None and not known.closed:
        return known
    try:
        return open_source(path)
    except FileNotFoundError:
        raise CheckpointError(CHANGED + " (it is gone)", path) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read ({exc.strerror or exc})", path) from None


@contextmanager
def collecting() -> Iterator[list[Source]]:
    """Collect every Source opened inside the block (the files one checkpoint is made of)."""
    opened: list[Source] = []
    with _registry_lock:
        _collecting.append(opened)
    try:
        yield opened
    finally:
        with _registry_lock:  # by identity: two collections of the same files compare equal
            _collecting[:] = [c for c in _collecting if c is not opened]


# Each source's live holders (the checkpoints reading through it), by id: a dataclass
# Checkpoint is unhashable. Kept here, not on the Source, so every kind of Source has them.
_holders: weakref.WeakKeyDictionary[Source, weakref.WeakValueDictionary[int, Any]] = weakref.WeakKeyDictionary()


def hold(sources: Iterable[Source], owner: object) -> None:
    """``owner`` (a checkpoint) reads through ``sources``: they stay open until it releases
    them or is garbage-collected."""
    with _registry_lock:
        for opened in sources:
            _holders.setdefault(opened, weakref.WeakValueDictionary())[id(owner)] = owner


def release(sources: Iterable[Source], owner: object) -> None:
    """``owner`` is done with ``sources``: each is closed unless another live owner holds it."""
    with _registry_lock:
        for opened in sources:
            holders = _holders.get(opened)
            if holders is not None and holders.get(id(owner)) is owner:
                del holders[id(owner)]
            if not holders:
                opened.close()


def check(sources: Iterable[Source], consequence: str) -> None:
    """Raise a one-line error if any source changed since it was opened."""
    for source in sources:
        why = source.changed()
        if why is not None:
            raise CheckpointError(f"{why}; {consequence}", source.path)


def check_read(sources: Iterable[Source], consequence: str = "its values were not trusted") -> None:
    """Check the sources whose tensor bytes were read: read-only commands do this
    before they print, and the CLI once more at the end."""
    check([s for s in sources if s.data_read], consequence)


def size(path: Path) -> tuple[int, bool]:
    """The opened file's size now, and whether it shrank since it was opened."""
    opened = get(path)
    now = opened.current_size()
    return now, now < opened.size
