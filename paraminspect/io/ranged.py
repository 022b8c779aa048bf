"""A remote file read by byte ranges: the Source every remote kind (HTTP, S3) is.

What a transport supplies is one thing, :meth:`RangedSource._get`: a GET of a
``Range`` value that returns a :class:`Reply` (status, headers, body) or raises a
one-line error. Everything else is here and the same for every transport:

- Opening fetches the first :data:`FIRST_READ` bytes in one ranged GET (a
  safetensors header that fits needs no other request); for a name that may be a
  zip (not ``.safetensors``/``.json``) the tail (a zip's central directory) is
  fetched at the same time, by a suffix range.
- Reads go through a :class:`~paraminspect.io.rangecache.RangeCache`, so the
  readers' small reads do not each become a request; a read the cache misses
  fetches at least :data:`MIN_FETCH` bytes, and one of :data:`DIRECT_READ` bytes or
  more (tensor data) goes straight into the caller's buffer, uncached.
- The first reply's ETag / Last-Modified (and size) are recorded; any later reply
  that differs is a changed file, refused in one line.
- A server that ignores ``Range`` (answers 200 with the whole file) is refused,
  unless :data:`~paraminspect.io.source.ALLOW_FULL_DOWNLOAD` is set: then the
  body is spooled to a temporary file once and read from there.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from paraminspect.errors import CheckpointError
from paraminspect.io import progress, source
from paraminspect.io.rangecache import RangeCache
from paraminspect.io.source import CHANGED, TRUNCATED, Source
from paraminspect.parallel import ordered_map

FIRST_READ = 256 << 10  # a safetensors header up to 256 KiB - 8 costs one request
TAIL_READ = 256 << 10  # a zip's end records and a central directory of ~2,000 records
MIN_FETCH = 64 << 10
DIRECT_READ = 1 << 20
WORKERS = 64  # concurrent requests at most (shard headers, zip local headers)
_NOT_ZIP = (".safetensors", ".json")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.ASCII)
_UNSATISFIABLE = re.compile(r"bytes\s+\*/(\d+)", re.ASCII)
T = TypeVar("T")


class BrokenOff(Exception):
    """A body that stopped arriving (the connection broke); the argument says why."""


class Reply(Protocol):
    """One answer to a ranged GET: 200, 206 or 416 (anything else is an error already)."""

    status: int

    def header(self, name: str) -> str | None: ...

    def readinto(self, view: memoryview) -> int:
        """Body bytes into ``view``; 0 at its end; :class:`BrokenOff` if the transfer broke."""
        ...

    def release(self, reusable: bool) -> None:
        """Done with it: its connection goes back to the pool (when whole) or is closed."""
        ...


def concurrently(jobs: list[Callable[[], T]], workers: int = WORKERS) -> list[T]:
    """Run ``jobs`` on at most ``workers`` threads (:func:`paraminspect.parallel.ordered_map`:
    the caller's context, results in order, the first error raised, Ctrl-C honoured at once)."""
    return ordered_map(_call, jobs, threads=min(workers, len(jobs)))


def _call(job: Callable[[], T]) -> T:
    return job()


class RangedSource(Source):
    """One remote file read by ranges (see the module docstring); subclasses supply :meth:`_get`."""

    remote = True

    def __init__(self, path: Path, first: int = FIRST_READ) -> None:
        self.path = path
        self.data_read = False
        self.replaced = False
        self._header: list[tuple[int, int, int]] = []
        self._lock = threading.Lock()
        self._validators: tuple[str | None, str | None] | None = None  # (ETag, Last-Modified)
        self._changed: str | None = None
        self._cache = RangeCache()
        self._spool: Any = None
        self.size = -1
        self._closer = weakref.finalize(self, _nothing)  # what holds resources is the spool (closed by GC too)
        jobs: list[Callable[[], None]] = [lambda: self._first(f"bytes=0-{first - 1}", 0)]
        if not path.name.lower().endswith(_NOT_ZIP):
            jobs.append(lambda: self._first(f"bytes=-{TAIL_READ}", None))
        concurrently(jobs)

    def _get(self, range_value: str) -> Reply:
        """A GET of ``range_value`` (``bytes=a-b`` or ``bytes=-n``); errors as one line."""
        raise NotImplementedError

    # -- the Source interface -------------------------------------------------

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
        self._closer()

    def readinto(self, view: memoryview, offset: int) -> None:
        self.data_read = True
        if offset < 0 or offset + len(view) > self.size:
            raise CheckpointError(f"{TRUNCATED} (bytes [{offset}, {offset + len(view)}) past its end)", self.path)
        self._fill(view, offset)

    def read_header(self, view: memoryview, offset: int) -> int:
        n = max(0, min(len(view), self.size - offset))
        if n:
            self._fill(view[:n], offset)
        return n

    def current_size(self) -> int:
        return self.size

    def changed(self) -> str | None:
        return self._changed

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch the uncached parts of ``ranges`` concurrently (ranges close together in one request)."""
        wanted: list[tuple[int, int]] = []
        for offset, length in sorted(ranges):
            for a, b in self._cache.gaps(offset, min(self.size, offset + length)):
                if wanted and a - wanted[-1][1] < MIN_FETCH:
                    wanted[-1] = (wanted[-1][0], max(b, wanted[-1][1]))
                else:
                    wanted.append((a, b))
        concurrently([functools.partial(self._fetch_and_store, a, b) for a, b in wanted])

    # -- reads through the cache ---------------------------------------------------

    def _fill(self, view: memoryview, offset: int) -> None:
        if self._spool is not None:
            _pread_exactly(self._spool.fileno(), view, offset, self.path)
            return
        end = offset + len(view)
        gaps = self._cache.gaps(offset, end)
        self._cache.copy_into(view, offset)
        for a, b in gaps:
            if b - a >= DIRECT_READ:
                self._fetch_into(view[a - offset : b - offset], a)
                continue
            # Read ahead (the readers' next small read is usually just after), not over the cache.
            ahead = self._cache.gaps(a, min(self.size, b + MIN_FETCH))
            stop = ahead[0][1] if ahead and ahead[0][0] == a else b
            data = self._fetch_and_store(a, max(stop, b))
            view[a - offset : b - offset] = data[: b - a]

    def _fetch_and_store(self, start: int, end: int) -> bytes:
        buffer = bytearray(end - start)
        self._fetch_into(memoryview(buffer), start)
        data = bytes(buffer)
        self._cache.store(start, data)
        return data

    # -- replies -----------------------------------------------------------------

    def _fetch_into(self, view: memoryview, start: int) -> None:
        end = start + len(view)
        reply = self._get(f"bytes={start}-{end - 1}")
        try:
            if reply.status != 206:
                raise CheckpointError(f"the server stopped answering ranges (HTTP {reply.status})", self.path)
            got = _content_range(reply, self.path)
            if got[0] != start or got[1] != end - 1:
                raise CheckpointError(
                    f"the server sent bytes [{got[0]}, {got[1] + 1}) when [{start}, {end}) was asked for", self.path
                )
            self._check_same(reply, got[2])
            self._read_body(reply, view)
        except BaseException:
            reply.release(False)
            raise
        reply.release(True)

    def _first(self, range_value: str, start: int | None) -> None:
        """One of the opening requests: learn the size and validators, cache what came."""
        reply = self._get(range_value)
        try:
            if reply.status == 416:
                match = _UNSATISFIABLE.match(reply.header("Content-Range") or "")
                self._set_size(int(match.group(1)) if match else 0, reply)
                _drain(reply)
            elif reply.status == 200:
                if start is None:  # the tail request: the head request deals with a whole file
                    reply.release(False)
                    return
                self._whole(reply)
            else:
                a, b, total = _content_range(reply, self.path)
                self._set_size(total, reply)
                buffer = bytearray(b - a + 1)
                self._read_body(reply, memoryview(buffer))
                self._cache.store(a, bytes(buffer))
        except BaseException:
            reply.release(False)
            raise
        reply.release(reply.status != 200)

    def _whole(self, reply: Reply) -> None:
        """A 200 to a ranged GET: the server sends the whole file."""
        length = reply.header("Content-Length")
        if not source.ALLOW_FULL_DOWNLOAD:
            size = f" ({int(length):,} bytes)" if length and length.isdigit() else ""
            raise CheckpointError(
                f"the server does not support range requests and would send the whole file{size};"
                " refused (--allow-full-download accepts it)",
                self.path,
            )
        spool = tempfile.TemporaryFile(prefix="paraminspect-")  # noqa: SIM115  (lives as long as the source)
        total = 0
        chunk = bytearray(1 << 20)
        try:
            while n := reply.readinto(memoryview(chunk)):
                spool.write(memoryview(chunk)[:n])
                total += n
                progress.advance(n)
        except BrokenOff as exc:
            spool.close()
            raise CheckpointError(f"the download broke off ({exc})", self.path) from None
        source.COST.add(0, total)
        if length and length.isdigit() and total != int(length):
            spool.close()
            raise CheckpointError(f"the server sent {total:,} of the {int(length):,} bytes it announced", self.path)
        spool.flush()
        with self._lock:
            self._spool = spool
            self.size = total
            self._validators = _validators(reply)
        self._cache.clear()  # a tail fetched meanwhile: not needed

    def _set_size(self, total: int, reply: Reply) -> None:
        with self._lock:
            if self.size < 0:
                self.size, self._validators = total, _validators(reply)
                return
        self._check_same(reply, total)

    def _check_same(self, reply: Reply, total: int) -> None:
        """Refuse a reply from a file other than the one first answered."""
        etag, modified = _validators(reply)
        with self._lock:
            known = self._validators
        if known is None:
            return
        why = None
        if total != self.size:
            why = f"its size went from {self.size:,} to {total:,} bytes"
        elif known[0] and etag and etag != known[0]:
            why = "its ETag changed between requests"
        elif not (known[0] and etag) and known[1] and modified and modified != known[1]:
            why = "its Last-Modified date changed between requests"
        if why:
            self._changed = CHANGED
            raise CheckpointError(f"{CHANGED} ({why})", self.path)

    def _read_body(self, reply: Reply, view: memoryview) -> None:
        got = 0
        try:
            while got < len(view):
                n = reply.readinto(view[got:])
                if not n:
                    break
                got += n
                progress.advance(n)  # remote bytes as they arrive (any transport)
        except BrokenOff as exc:
            source.COST.add(0, got)
            raise CheckpointError(f"the download broke off ({exc})", self.path) from None
        source.COST.add(0, got)
        if got != len(view):
            raise CheckpointError(f"the server sent {got:,} of the {len(view):,} bytes asked for", self.path)


def _nothing() -> None:
    pass


def _drain(reply: Reply) -> None:
    scratch = memoryview(bytearray(64 << 10))
    while reply.readinto(scratch):
        pass


def _pread_exactly(fd: int, view: memoryview, offset: int, path: Path) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise CheckpointError(TRUNCATED, path)
        done += n


def _validators(reply: Reply) -> tuple[str | None, str | None]:
    etag = reply.header("ETag")
    return (etag.removeprefix("W/") if etag else None), reply.header("Last-Modified")


def _content_range(reply: Reply, path: Path) -> tuple[int, int, int]:
    match = _CONTENT_RANGE.match(reply.header("Content-Range") or "")
    if not match or match.group(3) == "*":
        raise CheckpointError("the server answered a range request without a usable Content-Range", path)
    return int(match.group(1)), int(match.group(2)), int(match.group(3))
