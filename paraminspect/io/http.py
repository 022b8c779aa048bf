"""A checkpoint on an HTTP(S) server, read by byte ranges: another kind of Source.

Standard library only (``http.client``), so ``shapes https://...`` starts as fast
as ``shapes FILE``. Cost is kept to what a listing needs:

- Opening fetches the first :data:`FIRST_READ` bytes in one ranged GET (a
  safetensors header that fits needs no other request); for a name that may be a
  zip (not ``.safetensors``/``.json``) the tail (a zip's central directory) is
  fetched at the same time, by a suffix range, in a second connection.
- Reads go through a cache of the ranges fetched (bounded by :data:`CACHE_BYTES`),
  so the readers' small reads do not each become a request; a read the cache
  misses fetches at least :data:`MIN_FETCH` bytes, and one of :data:`DIRECT_READ`
  bytes or more (tensor data) goes straight into the caller's buffer, uncached.
- Connections are kept alive in a small pool per origin; redirects are followed
  and the final target is reused for every later range (the Hub redirects to its CDN).
- The first response's ETag / Last-Modified (and size) are recorded; any later
  response that differs is a changed file, refused in one line.
- A server that ignores ``Range`` (answers 200 with the whole file) is refused,
  unless :data:`~paraminspect.io.source.ALLOW_FULL_DOWNLOAD` is set: then the
  body is spooled to a temporary file once and read from there.
"""

from __future__ import annotations

import bisect
import collections
import functools
import http.client
import os
import re
import tempfile
import threading
import urllib.parse
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from paraminspect.errors import CheckpointError
from paraminspect.io import progress, source
from paraminspect.io.source import CHANGED, TRUNCATED, Source

FIRST_READ = 256 << 10  # a safetensors header up to 256 KiB - 8 costs one request
TAIL_READ = 256 << 10  # a zip's end records and a central directory of ~2,000 records
MIN_FETCH = 64 << 10
DIRECT_READ = 1 << 20
CACHE_BYTES = 64 << 20
WORKERS = 32  # concurrent requests at most (shard headers, zip local headers)
MAX_REDIRECTS = 10
TIMEOUT_VARIABLE = "PARAMINSPECT_HTTP_TIMEOUT"
_NOT_ZIP = (".safetensors", ".json")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.ASCII)
_UNSATISFIABLE = re.compile(r"bytes\s+\*/(\d+)", re.ASCII)
T = TypeVar("T")


def timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_VARIABLE, "30")))
    except ValueError:
        return 30.0


def concurrently(jobs: list[Callable[[], T]], workers: int = WORKERS) -> list[T]:
    """Run ``jobs`` on at most ``workers`` threads; results in order, the first error raised."""
    if len(jobs) <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="paraminspect-http") as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]


class _Pool:
    """Idle keep-alive connections by origin."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int | None], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def take(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """A connection to the origin, and whether it was reused (a stale one may fail once)."""
        parts = urllib.parse.urlsplit(f"{scheme}://{netloc}")
        key = (scheme, parts.hostname or "", parts.port)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        if scheme == "https":
            return http.client.HTTPSConnection(key[1], key[2], timeout=timeout()), False
        return http.client.HTTPConnection(key[1], key[2], timeout=timeout()), False

    def give_back(self, scheme: str, netloc: str, conn: http.client.HTTPConnection) -> None:
        parts = urllib.parse.urlsplit(f"{scheme}://{netloc}")
        with self._lock:
            self._idle.setdefault((scheme, parts.hostname or "", parts.port), []).append(conn)


POOL = _Pool()


class HttpSource(Source):
    """One remote file read by ranges (see the module docstring)."""

    remote = True

    def __init__(self, path: Path, first: int = FIRST_READ) -> None:
        self.path = path
        self.data_read = False
        self.replaced = False
        self._header: list[tuple[int, int, int]] = []
        self._lock = threading.Lock()
        self._target: str = path.request_url()  # type: ignore[attr-defined]  # becomes the redirect target
        self._validators: tuple[str | None, str | None] | None = None  # (ETag, Last-Modified)
        self._changed: str | None = None
        self._starts: list[int] = []
        self._segments: dict[int, bytes] = {}
        self._order: collections.deque[int] = collections.deque()
        self._cached = 0
        self._spool: Any = None
        self.size = -1
        self._closer = weakref.finalize(self, _nothing)  # what holds resources is the spool (closed by GC too)
        jobs: list[Callable[[], None]] = [lambda: self._first(f"bytes=0-{first - 1}", 0)]
        if not path.name.lower().endswith(_NOT_ZIP):
            jobs.append(lambda: self._first(f"bytes=-{TAIL_READ}", None))
        concurrently(jobs)

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
            for a, b in self._gaps(offset, min(self.size, offset + length)):
                if wanted and a - wanted[-1][1] < MIN_FETCH:
                    wanted[-1] = (wanted[-1][0], max(b, wanted[-1][1]))
                else:
                    wanted.append((a, b))
        concurrently([functools.partial(self._fetch_and_store, a, b) for a, b in wanted])

    # -- the cache ---------------------------------------------------------------

    def _gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) no cached segment holds."""
        gaps = []
        with self._lock:
            i = max(0, bisect.bisect_right(self._starts, start) - 1)
            cursor = start
            while cursor < end and i < len(self._starts):
                s = self._starts[i]
                e = s + len(self._segments[s])
                if e <= cursor:
                    i += 1
                    continue
                if s > cursor:
                    gaps.append((cursor, min(s, end)))
                cursor = max(cursor, e)
                i += 1
            if cursor < end:
                gaps.append((cursor, end))
        return gaps

    def _copy_cached(self, view: memoryview, offset: int) -> None:
        end = offset + len(view)
        with self._lock:
            i = max(0, bisect.bisect_right(self._starts, offset) - 1)
            while i < len(self._starts) and self._starts[i] < end:
                s = self._starts[i]
                data = self._segments[s]
                a, b = max(s, offset), min(s + len(data), end)
                if a < b:
                    view[a - offset : b - offset] = data[a - s : b - s]
                i += 1

    def _store(self, start: int, data: bytes) -> None:
        for a, b in self._gaps(start, start + len(data)):
            with self._lock:
                if a in self._segments:
                    continue
                bisect.insort(self._starts, a)
                self._segments[a] = data[a - start : b - start]
                self._order.append(a)
                self._cached += b - a
                while self._cached > CACHE_BYTES and len(self._order) > 1:
                    old = self._order.popleft()
                    self._cached -= len(self._segments.pop(old))
                    self._starts.remove(old)

    def _fill(self, view: memoryview, offset: int) -> None:
        if self._spool is not None:
            _pread_exactly(self._spool.fileno(), view, offset, self.path)
            return
        end = offset + len(view)
        gaps = self._gaps(offset, end)
        self._copy_cached(view, offset)
        for a, b in gaps:
            if b - a >= DIRECT_READ:
                self._fetch_into(view[a - offset : b - offset], a)
                continue
            # Read ahead (the readers' next small read is usually just after), not over the cache.
            ahead = self._gaps(a, min(self.size, b + MIN_FETCH))
            stop = ahead[0][1] if ahead and ahead[0][0] == a else b
            data = self._fetch_and_store(a, max(stop, b))
            view[a - offset : b - offset] = data[: b - a]

    def _fetch_and_store(self, start: int, end: int) -> bytes:
        buffer = bytearray(end - start)
        self._fetch_into(memoryview(buffer), start)
        data = bytes(buffer)
        self._store(start, data)
        return data

    # -- requests ----------------------------------------------------------------

    def _fetch_into(self, view: memoryview, start: int) -> None:
        end = start + len(view)
        response, release = self._request(f"bytes={start}-{end - 1}")
        try:
            if response.status != 206:
                raise CheckpointError(f"the server stopped answering ranges (HTTP {response.status})", self.path)
            got = _content_range(response, self.path)
            if got[0] != start or got[1] != end - 1:
                raise CheckpointError(
                    f"the server sent bytes [{got[0]}, {got[1] + 1}) when [{start}, {end}) was asked for", self.path
                )
            self._check_same(response, got[2])
            self._read_body(response, view)
        except BaseException:
            release(False)
            raise
        release(True)

    def _first(self, range_value: str, start: int | None) -> None:
        """One of the opening requests: learn the size and validators, cache what came."""
        response, release = self._request(range_value)
        try:
            if response.status == 416:
                match = _UNSATISFIABLE.match(response.getheader("Content-Range") or "")
                self._set_size(int(match.group(1)) if match else 0, response)
                response.read()
            elif response.status == 200:
                if start is None:  # the tail request: the head request deals with a whole file
                    release(False)
                    return
                self._whole(response)
            else:
                a, b, total = _content_range(response, self.path)
                self._set_size(total, response)
                buffer = bytearray(b - a + 1)
                self._read_body(response, memoryview(buffer))
                self._store(a, bytes(buffer))
        except BaseException:
            release(False)
            raise
        release(response.status != 200)

    def _whole(self, response: http.client.HTTPResponse) -> None:
        """A 200 to a ranged GET: the server sends the whole file."""
        length = response.getheader("Content-Length")
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
            while n := response.readinto(chunk):
                spool.write(memoryview(chunk)[:n])
                total += n
        except (OSError, http.client.HTTPException) as exc:
            spool.close()
            raise CheckpointError(f"the download broke off ({_why(exc)})", self.path) from None
        source.COST.add(0, total)
        if length and length.isdigit() and total != int(length):
            spool.close()
            raise CheckpointError(f"the server sent {total:,} of the {int(length):,} bytes it announced", self.path)
        spool.flush()
        with self._lock:
            self._spool = spool
            self.size = total
            self._validators = _validators(response)
            self._starts, self._segments, self._cached = [], {}, 0  # a tail fetched meanwhile: not needed

    def _set_size(self, total: int, response: http.client.HTTPResponse) -> None:
        with self._lock:
            if self.size < 0:
                self.size, self._validators = total, _validators(response)
                return
        self._check_same(response, total)

    def _check_same(self, response: http.client.HTTPResponse, total: int) -> None:
        """Refuse a response from a file other than the one first answered."""
        etag, modified = _validators(response)
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

    def _read_body(self, response: http.client.HTTPResponse, view: memoryview) -> None:
        got = 0
        try:
            while got < len(view):
                n = response.readinto(view[got:])
                if not n:
                    break
                got += n
                progress.advance(n)
        except http.client.IncompleteRead as exc:
            got += len(exc.partial)
        except (OSError, http.client.HTTPException) as exc:
            source.COST.add(0, got)
            raise CheckpointError(f"the download broke off ({_why(exc)})", self.path) from None
        source.COST.add(0, got)
        if got != len(view):
            raise CheckpointError(f"the server sent {got:,} of the {len(view):,} bytes asked for", self.path)

    def _request(self, range_value: str) -> tuple[http.client.HTTPResponse, Callable[[bool], None]]:
        """A GET of ``range_value`` at the current target, following redirects (the last target
        is kept for later requests). Returns the response (body unread) and its connection's release."""
        url = self._target
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            response, release = self._send(parts, range_value)
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                response.read()
                release(True)
                if not location:
                    raise CheckpointError(f"the server redirected (HTTP {response.status}) to nowhere", self.path)
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status in (200, 206, 416):
                self._target = url
                return response, release
            release(False)
            raise CheckpointError(_status_message(response, parts.hostname or ""), self.path)
        raise CheckpointError(f"more than {MAX_REDIRECTS} redirects", self.path)

    def _send(
        self, parts: urllib.parse.SplitResult, range_value: str
    ) -> tuple[http.client.HTTPResponse, Callable[[bool], None]]:
        target = parts.path or "/"
        target += f"?{parts.query}" if parts.query else ""
        headers = {"Accept-Encoding": "identity", "User-Agent": "paraminspect"}
        if range_value:
            headers["Range"] = range_value
        auth = self.path.auth_for(f"{parts.scheme}://{parts.netloc}")  # type: ignore[attr-defined]
        if auth:
            headers["Authorization"] = auth
        for attempt in (1, 2):
            conn, reused = POOL.take(parts.scheme, parts.netloc)
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
            except TimeoutError:
                conn.close()
                raise CheckpointError(
                    f"timed out after {timeout():g} s waiting for {parts.hostname} ({TIMEOUT_VARIABLE} sets the limit)",
                    self.path,
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and attempt == 1:
                    continue  # a kept-alive connection the server had closed: once more on a new one
                raise CheckpointError(f"cannot fetch from {parts.hostname} ({_why(exc)})", self.path) from None
            source.COST.add(1, 0)

            def release(reusable: bool, conn: http.client.HTTPConnection = conn, resp: Any = response) -> None:
                if reusable and not resp.will_close and resp.isclosed():
                    POOL.give_back(parts.scheme, parts.netloc, conn)
                else:
                    conn.close()

            return response, release
        raise AssertionError("unreachable")


def _nothing() -> None:
    pass


def _pread_exactly(fd: int, view: memoryview, offset: int, path: Path) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise CheckpointError(TRUNCATED, path)
        done += n


def _validators(response: http.client.HTTPResponse) -> tuple[str | None, str | None]:
    etag = response.getheader("ETag")
    return (etag.removeprefix("W/") if etag else None), response.getheader("Last-Modified")


def _content_range(response: http.client.HTTPResponse, path: Path) -> tuple[int, int, int]:
    match = _CONTENT_RANGE.match(response.getheader("Content-Range") or "")
    if not match or match.group(3) == "*":
        raise CheckpointError("the server answered a range request without a usable Content-Range", path)
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _status_message(response: http.client.HTTPResponse, host: str) -> str:
    status = response.status
    if status in (401, 403):
        hub = "huggingface" in host or host == urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT", "")).hostname
        hint = "; a gated or private Hugging Face repo needs HF_TOKEN set" if hub else "; the server wants credentials"
        return f"access denied (HTTP {status}){hint}"
    if status == 404:
        return "not found (HTTP 404)"
    return f"the server answered HTTP {status} {response.reason}".rstrip()


def get_small(path: Path, limit: int) -> bytes:
    """The whole body of a small resource (the Hub's file listing), at most ``limit`` bytes."""
    probe = HttpSource.__new__(HttpSource)
    probe.path, probe._target = path, path.request_url()  # type: ignore[attr-defined]
    parts = urllib.parse.urlsplit(probe._target)
    for _ in range(MAX_REDIRECTS + 1):
        response, release = probe._send(parts, "")
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            response.read()
            release(True)
            parts = urllib.parse.urlsplit(urllib.parse.urljoin(parts.geturl(), response.getheader("Location", "")))
            continue
        if response.status != 200:
            release(False)
            raise CheckpointError(_status_message(response, parts.hostname or ""), path)
        try:
            data = response.read(limit + 1)
        except (OSError, http.client.HTTPException) as exc:
            release(False)
            raise CheckpointError(f"the download broke off ({_why(exc)})", path) from None
        release(True)
        source.COST.add(0, len(data))
        if len(data) > limit:
            raise CheckpointError(f"answer larger than {limit:,} bytes", path)
        return data
    raise CheckpointError(f"more than {MAX_REDIRECTS} redirects", path)


def open_many(paths: list[tuple[Path, int]]) -> list[Source]:
    """Open these URLs concurrently (each with its first-read size) and register them,
    so the readers' ``open_source`` finds them open: a sharded model's shard headers.
    The caller holds the list while the readers run (the registry's references are weak)."""
    opened: list[Source] = list(concurrently([functools.partial(HttpSource, p, n) for p, n in paths]))
    for src in opened:
        source.adopt(src)
    return opened
