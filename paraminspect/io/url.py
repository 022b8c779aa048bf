"""URLs standing where paths stand: ``https://``, ``http://``, ``hf://`` and ``s3://`` inputs.

A :class:`UrlPath` is a :class:`~pathlib.Path` so every reader, model type and
message keeps taking a path (``parent``, ``/`` and ``name`` work as on a file
system: a sharded index's shards are its siblings), yet it never touches the
local file system: ``os.fspath`` refuses it with a one-line error, so a command
that can only work on local files (``scan``, an ``--in-place`` edit) says so
instead of reading a local name that happens to look alike.

What it prints is the URL without credentials: user info (``user:pass@``) and
the query string (a presigned URL's signature) are kept aside, by origin and by
URL, and added only to the requests (:func:`request_url`, :func:`auth_header`).

An ``s3://bucket/prefix/`` is a folder (so is a name without a suffix that a
listing finds objects under): :meth:`UrlPath.iterdir` lists it, and what a
listing found to be a folder or an object is remembered, so the readers'
``is_dir``/``is_file`` cost no request. An HTTP URL is always a file.
This module imports nothing heavy; the HTTP or S3 code is imported when a source is opened.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from pathlib import Path, PosixPath
from typing import Any

from paraminspect.errors import CheckpointError

SCHEMES = ("http://", "https://", "hf://", "s3://")
_lock = threading.Lock()
_queries: dict[str, str] = {}  # display URL -> its query string
_auth: dict[str, str] = {}  # origin (scheme://host:port) -> Authorization header value
_dirs: set[str] = set()  # display URLs known to be folders (s3:// prefixes)
_files: set[str] = set()  # display URLs a listing found to be objects
_listed: set[str] = set()  # folders listed whole: what they did not show is not there


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

    # A URL is "a file" to the readers: whether it exists is the server's answer, unless a
    # listing of its folder (an s3:// prefix) already said.
    def exists(self, *args: Any, **kwargs: Any) -> bool:
        text = str(self)
        with _lock:
            if text in _dirs or text in _files or str(self.parent) not in _listed:
                return True
        return False

    def is_file(self, *args: Any, **kwargs: Any) -> bool:
        return self.exists() and not self.is_dir()

    def is_dir(self, *args: Any, **kwargs: Any) -> bool:
        """An s3:// prefix, by a listing (only for a name with no suffix, once); else False."""
        text = str(self)
        with _lock:
            if text in _dirs:
                return True
            if text in _files or self.scheme != "s3" or self.suffix or self.name.startswith(".") or not self.name:
                return False
            if str(self.parent) in _listed:
                return False  # the listing of its folder did not show it as a folder
        found = bool(self._list())
        remember(self, folder=found)
        return found

    def iterdir(self) -> Any:
        """The names under an s3:// prefix (one listing, remembered): UrlPaths, as pathlib's."""
        if self.scheme != "s3":
            raise NotADirectoryError(20, "an HTTP URL cannot be listed", str(self))
        return iter([self / name for name in self._list()])

    def _list(self) -> list[str]:
        """List this s3:// prefix (once per process) and remember what each name is."""
        from paraminspect.io import s3

        names = s3.listing(self)
        for name, folder in names:
            remember(self / name, folder=folder)
        listed(self)
        return [name for name, _ in names]

    def is_symlink(self) -> bool:
        return False

    def resolve(self, strict: bool = False) -> UrlPath:
        return self

    def request_url(self) -> str:
        return request_url(self)

    def auth_for(self, origin: str) -> str | None:
        return auth_header(origin)

    def open_remote(self, first: int | None = None) -> Any:
        """A new Source reading this URL (the HTTP or S3 code is imported only now);
        ``first``: the opening read's size, if not the default."""
        if self.scheme == "s3":
            from paraminspect.io import s3

            return s3.S3Source(self) if first is None else s3.S3Source(self, first)
        from paraminspect.io import http

        return http.HttpSource(self) if first is None else http.HttpSource(self, first)


def parse(text: str) -> UrlPath:
    """The UrlPath for a URL as typed: credentials and query moved aside, never shown."""
    if text[:5].lower() == "s3://":
        return _parse_s3(text)
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
            import base64  # only for a URL with credentials: not on every command's start-up

            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            _auth[f"{scheme}://{netloc}"] = f"Basic {token}"
        if parts.query:
            _queries[str(path)] = parts.query
    return path


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]\Z", re.ASCII)


def _parse_s3(text: str) -> UrlPath:
    """``s3://bucket[/key]``; a trailing ``/`` (or no key) makes it a folder."""
    rest = text[5:]
    bucket, _, key = rest.partition("/")
    if not _BUCKET.match(bucket) or "?" in rest or "#" in rest:
        raise CheckpointError("is not a valid s3:// URL (expected s3://bucket/key or s3://bucket/prefix/)", text)
    path = UrlPath(f"s3://{bucket}/{key}".rstrip("/"))
    if not key.strip("/") or key.endswith("/"):
        remember(path, folder=True)
    return path


def remember(path: UrlPath, *, folder: bool) -> None:
    """What a listing (or the URL as typed) showed ``path`` to be: a folder or an object."""
    with _lock:
        (_dirs if folder else _files).add(str(path))


def listed(folder: UrlPath) -> None:
    """``folder`` was listed whole: a name under it the listing did not show does not exist."""
    with _lock:
        _listed.add(str(folder))


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
