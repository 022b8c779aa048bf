"""URLs standing where paths stand: ``https://``, ``http://`` and ``hf://`` inputs.

A :class:`UrlPath` is a :class:`~pathlib.Path` so every reader, model type and
message keeps taking a path (``parent``, ``/`` and ``name`` work as on a file
system: a sharded index's shards are its siblings), yet it never touches the
local file system: ``os.fspath`` refuses it with a one-line error, so a command
that can only work on local files (``scan``, an ``--in-place`` edit) says so
instead of reading a local name that happens to look alike.

What it prints is the URL without credentials: user info (``user:pass@``) and
the query string (a presigned URL's signature) are kept aside, by origin and by
URL, and added only to the requests (:func:`request_url`, :func:`auth_header`).
This module imports nothing heavy; the HTTP code is imported when a source is opened.
"""

from __future__ import annotations

import base64
import threading
import urllib.parse
from pathlib import Path, PosixPath
from typing import Any

from paraminspect.errors import CheckpointError

SCHEMES = ("http://", "https://", "hf://")
_lock = threading.Lock()
_queries: dict[str, str] = {}  # display URL -> its query string
_auth: dict[str, str] = {}  # origin (scheme://host:port) -> Authorization header value


def is_url(text: str) -> bool:
    """Whether a command-line argument names a remote checkpoint (by its scheme)."""
    return text[:8].lower().startswith(SCHEMES)


class UrlPath(PosixPath):
    """A URL that behaves as a path (see the module docstring); ``str`` is the display URL."""

    remote = True

    def __str__(self) -> str:
        text = super().__str__()
        scheme, sep, rest = text.partition(":/")
        return f"{scheme}://{rest}" if sep else text

    def __repr__(self) -> str:
        return f"UrlPath({str(self)!r})"

    def __fspath__(self) -> str:
        raise CheckpointError("is a URL; this works on local files only (download it first)", str(self))

    @property
    def scheme(self) -> str:
        return str(self).split("://", 1)[0].lower()

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``: what a connection is made to."""
        parts = urllib.parse.urlsplit(str(self))
        return f"{parts.scheme}://{parts.netloc}"

    # A URL is always "a file" to the readers: whether it exists is the server's answer.
    def exists(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def is_file(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def is_dir(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def is_symlink(self) -> bool:
        return False

    def resolve(self, strict: bool = False) -> UrlPath:
        return self

    def request_url(self) -> str:
        return request_url(self)

    def auth_for(self, origin: str) -> str | None:
        return auth_header(origin)

    def open_remote(self, first: int | None = None) -> Any:
        """A new Source reading this URL (the HTTP code is imported only now);
        ``first``: the opening read's size, if not the default."""
        from paraminspect.io import http

        return http.HttpSource(self) if first is None else http.HttpSource(self, first)


def parse(text: str) -> UrlPath:
    """The UrlPath for a URL as typed: credentials and query moved aside, never shown."""
    if text[:5].lower() == "hf://":
        if "?" in text or not text[5:].strip("/"):
            raise CheckpointError(
                "is not a valid hf:// URL (expected hf://org/repo[@revision][/path])", _redacted(text)
            )
        return UrlPath("hf://" + text[5:].strip("/"))
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise CheckpointError(f"is not a valid URL ({exc})", _redacted(text)) from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host:
        raise CheckpointError("is not a valid URL (no host)", _redacted(text))
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{port}" if port is not None else ""
    path = UrlPath(f"{scheme}://{netloc}{parts.path or '/'}")
    with _lock:
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            _auth[f"{scheme}://{netloc}"] = f"Basic {token}"
        if parts.query:
            _queries[str(path)] = parts.query
    return path


def _redacted(text: str) -> str:
    """A URL fit to print: no user info, no query."""
    head, sep, rest = text.partition("://")
    if not sep:
        return text.split("?", 1)[0]
    netloc, slash, tail = rest.partition("/")
    return f"{head}://{netloc.rpartition('@')[2]}{slash}{tail.split('?', 1)[0]}"


def set_auth(origin: str, header: str) -> None:
    """Send ``Authorization: header`` to this origin (the Hub's token, for one)."""
    with _lock:
        _auth.setdefault(origin, header)


def auth_header(origin: str) -> str | None:
    with _lock:
        return _auth.get(origin)


def request_url(path: UrlPath) -> str:
    """The URL a request goes to: the display URL plus the query kept aside."""
    text = str(path)
    with _lock:
        query = _queries.get(text)
    return f"{text}?{query}" if query else text


def to_path(text: str) -> Path:
    """A command-line argument as a path: a UrlPath for a URL, else a plain Path."""
    return parse(text) if is_url(text) else Path(text)
