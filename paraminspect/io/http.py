"""A checkpoint on an HTTP(S) server: the request layer under a :class:`~paraminspect.io.ranged.RangedSource`.

Standard library only (``http.client``), so ``shapes https://...`` starts as fast
as ``shapes FILE``. Connections are kept alive in a pool per origin (a shard's
request reuses the connection an earlier one left idle); redirects are followed
and the final target is reused for every later range (the Hub redirects to its
CDN). Statuses become one-line errors here; what a range reply means (sizes,
validators, the cache) is :mod:`~paraminspect.io.ranged`'s.
"""

from __future__ import annotations

import http.client
import os
import threading
import urllib.parse
from pathlib import Path

from paraminspect.errors import CheckpointError
from paraminspect.io import source
from paraminspect.io.ranged import FIRST_READ, BrokenOff, RangedSource

MAX_REDIRECTS = 10
TIMEOUT_VARIABLE = "PARAMINSPECT_HTTP_TIMEOUT"
_REDIRECTS = (301, 302, 303, 307, 308)


def timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_VARIABLE, "30")))
    except ValueError:
        return 30.0


class _Pool:
    """Idle keep-alive connections by origin."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int | None], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(scheme: str, netloc: str) -> tuple[str, str, int | None]:
        parts = urllib.parse.urlsplit(f"{scheme}://{netloc}")
        return scheme, parts.hostname or "", parts.port

    def take(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """A connection to the origin, and whether it was reused (a stale one may fail once)."""
        key = self._key(scheme, netloc)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        if scheme == "https":
            return http.client.HTTPSConnection(key[1], key[2], timeout=timeout()), False
        return http.client.HTTPConnection(key[1], key[2], timeout=timeout()), False

    def give_back(self, scheme: str, netloc: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(self._key(scheme, netloc), []).append(conn)


POOL = _Pool()


class HttpReply:
    """An ``http.client`` response as a :class:`~paraminspect.io.ranged.Reply`."""

    def __init__(self, response: http.client.HTTPResponse, conn: http.client.HTTPConnection, origin: tuple[str, str]):
        self.response, self.status = response, response.status
        self._conn, self._origin = conn, origin

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def readinto(self, view: memoryview) -> int:
        try:
            return self.response.readinto(view)
        except http.client.IncompleteRead as exc:
            view[: len(exc.partial)] = exc.partial
            return len(exc.partial)
        except (OSError, http.client.HTTPException) as exc:
            raise BrokenOff(_why(exc)) from None

    def read(self, limit: int) -> bytes:
        try:
            return self.response.read(limit)
        except (OSError, http.client.HTTPException) as exc:
            raise BrokenOff(_why(exc)) from None

    def release(self, reusable: bool) -> None:
        if reusable and not self.response.will_close and self.response.isclosed():
            POOL.give_back(*self._origin, self._conn)
        else:
            self._conn.close()


class HttpSource(RangedSource):
    """One file on an HTTP(S) server read by ranges."""

    def __init__(self, path: Path, first: int = FIRST_READ) -> None:
        self._target: str = path.request_url()  # type: ignore[attr-defined]  # becomes the redirect target
        super().__init__(path, first)

    def _get(self, range_value: str) -> HttpReply:
        """A GET of ``range_value`` at the current target, following redirects (the last target
        is kept for later requests)."""
        reply, self._target = request(self.path, self._target, range_value, (200, 206, 416))
        return reply


def request(path: Path, url: str, range_value: str, accepted: tuple[int, ...]) -> tuple[HttpReply, str]:
    """A GET of ``url`` (a ``Range`` header when ``range_value``), redirects followed: the
    reply (body unread) and the URL that answered; a status not ``accepted`` is a one-line
    error about ``path``."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        reply = _send(path, parts, range_value)
        if reply.status in _REDIRECTS:
            location = reply.header("Location")
            reply.response.read()
            reply.release(True)
            if not location:
                raise CheckpointError(f"the server redirected (HTTP {reply.status}) to nowhere", path)
            url = urllib.parse.urljoin(url, location)
            continue
        if reply.status in accepted:
            return reply, url
        reply.release(False)
        raise CheckpointError(_status_message(reply.response, parts.hostname or ""), path)
    raise CheckpointError(f"more than {MAX_REDIRECTS} redirects", path)


def _send(path: Path, parts: urllib.parse.SplitResult, range_value: str) -> HttpReply:
    target = parts.path or "/"
    target += f"?{parts.query}" if parts.query else ""
    headers = {"Accept-Encoding": "identity", "User-Agent": "paraminspect"}
    if range_value:
        headers["Range"] = range_value
    auth = path.auth_for(f"{parts.scheme}://{parts.netloc}")  # type: ignore[attr-defined]
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
                path,
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if reused and attempt == 1:
                continue  # a kept-alive connection the server had closed: once more on a new one
            raise CheckpointError(f"cannot fetch from {parts.hostname} ({_why(exc)})", path) from None
        source.COST.add(1, 0)
        return HttpReply(response, conn, (parts.scheme, parts.netloc))
    raise AssertionError("unreachable")


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
    """The whole body of a small resource (the Hub's file listing, a config, a lockfile),
    at most ``limit`` bytes (a larger one is a one-line error)."""
    reply, _ = request(path, path.request_url(), "", (200,))  # type: ignore[attr-defined]
    announced = reply.header("Content-Length")
    if announced and announced.isdigit() and int(announced) > limit:
        reply.release(False)  # refused before its body is read
        raise CheckpointError(f"is larger than {limit:,} bytes; refused", path)
    try:
        data = reply.read(limit + 1)
    except BrokenOff as exc:
        reply.release(False)
        raise CheckpointError(f"the download broke off ({exc})", path) from None
    reply.release(len(data) <= limit)
    source.COST.add(0, len(data))
    if len(data) > limit:
        raise CheckpointError(f"is larger than {limit:,} bytes; refused", path)
    return data
