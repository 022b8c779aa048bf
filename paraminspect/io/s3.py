"""A checkpoint in an S3 bucket (or any S3-compatible store): ranged GETs through botocore.

botocore (the ``s3`` extra: boto3's core, without boto3's transfer manager, which
would add ~0.4 s of imports) is imported only when an ``s3://`` URL is given. It is
used for what it alone does well, talking to S3: credentials and region found
the usual AWS way (environment, ``~/.aws``, a profile, an instance role),
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for another store, request
signing. Every read is one ``GetObject`` of exactly the range asked for, under
the same :class:`~paraminspect.io.ranged.RangedSource` (first read, cache,
read-ahead, change detection) as HTTP: no block cache of its own, so an 8-byte
read never becomes megabytes. Requests are counted as they are sent (retries
included); bytes as the bodies arrive.

A folder is a prefix: listed once (``ListObjectsV2`` with a ``/`` delimiter,
at most :data:`LIST_LIMIT` names), and what the listing showed is remembered by
:mod:`~paraminspect.io.url` (which asks for it), so a sharded index or a DCP directory under a
prefix reads as it does in a local folder.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from paraminspect.errors import CheckpointError
from paraminspect.io import source
from paraminspect.io.http import TIMEOUT_VARIABLE, timeout
from paraminspect.io.ranged import FIRST_READ, WORKERS, BrokenOff, RangedSource

EXTRA = "pip install 'paraminspect[s3]'"
LIST_LIMIT = 10_000
CREDENTIALS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
_lock = threading.Lock()
_clients: dict[tuple[str | None, ...], Any] = {}  # by the settings it was made with
_SETTINGS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", TIMEOUT_VARIABLE)
_listings: dict[str, list[tuple[str, bool]]] = {}


def split(path: Path) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    bucket, _, key = str(path)[len("s3://") :].partition("/")
    return bucket, key


def client(path: Path) -> Any:
    """The S3 client (thread-safe, pooled), made on first use (again if the settings changed)."""
    key = tuple(os.environ.get(name) for name in _SETTINGS)
    with _lock:
        if key in _clients:
            return _clients[key]
        try:
            import botocore.session
            from botocore.config import Config
        except ImportError:
            raise CheckpointError(f"reading s3:// needs botocore, which is not installed ({EXTRA})", path) from None
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        config = Config(
            max_pool_connections=WORKERS,
            connect_timeout=timeout(),
            read_timeout=timeout(),
            retries={"max_attempts": 2, "mode": "standard"},
            user_agent_extra="paraminspect",
            s3={"addressing_style": "path"} if endpoint else {},
        )
        made = botocore.session.get_session().create_client("s3", endpoint_url=endpoint, config=config)
        made.meta.events.register("before-send.s3", _count)
        _clients[key] = made
        return made


def _count(**kwargs: Any) -> None:
    source.COST.add(1, 0)


def _call(path: Path, operation: str, **params: Any) -> Any:
    """One S3 call; every failure a one-line error about ``path``."""
    s3 = client(path)  # first: without botocore, the one-line error that says what to install
    import botocore.exceptions as bce

    try:
        return getattr(s3, operation)(**params)
    except bce.ClientError as exc:
        raise _client_error(exc, path) from None
    except bce.NoCredentialsError:
        raise CheckpointError(f"no AWS credentials found (set {CREDENTIALS})", path) from None
    except (bce.ConnectTimeoutError, bce.ReadTimeoutError):
        host = s3.meta.endpoint_url.split("://", 1)[-1]
        raise CheckpointError(
            f"timed out after {timeout():g} s waiting for {host} ({TIMEOUT_VARIABLE} sets the limit)", path
        ) from None
    except bce.EndpointConnectionError as exc:
        host = s3.meta.endpoint_url.split("://", 1)[-1]
        raise CheckpointError(f"cannot fetch from {host} ({exc.kwargs.get('error') or exc})", path) from None
    except bce.BotoCoreError as exc:
        raise CheckpointError(f"cannot fetch from S3 ({exc})", path) from None


class _InvalidRange(Exception):
    pass


def _client_error(exc: Any, path: Path) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "InvalidRange" or status == 416:
        return _InvalidRange()
    if code == "NoSuchBucket":
        return CheckpointError(f"not found (HTTP 404): there is no bucket {split(path)[0]!r}", path)
    if code in ("NoSuchKey", "404", "NotFound") or status == 404:
        return CheckpointError("not found (HTTP 404)", path)
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status in (401, 403):
        denied = f"access denied (HTTP {status or 403}, {code}); S3 wants credentials that may read it"
        return CheckpointError(f"{denied} ({CREDENTIALS})", path)
    return CheckpointError(f"S3 answered HTTP {status} {code}".rstrip(), path)


class S3Reply:
    """A ``GetObject`` answer as a :class:`~paraminspect.io.ranged.Reply`."""

    def __init__(self, answer: dict[str, Any] | None) -> None:
        meta = (answer or {}).get("ResponseMetadata", {})
        self.status: int = meta.get("HTTPStatusCode", 416) if answer else 416
        self._headers: dict[str, str] = meta.get("HTTPHeaders", {})
        self._body = (answer or {}).get("Body")
        self._done = self._body is None

    def header(self, name: str) -> str | None:
        return self._headers.get(name.lower())

    def readinto(self, view: memoryview) -> int:
        if self._done:
            return 0
        try:
            data = self._body.read(min(len(view), 1 << 20))  # type: ignore[union-attr]
        except Exception as exc:  # botocore's and urllib3's read errors share no base but Exception
            raise BrokenOff(str(exc) or type(exc).__name__) from None
        if not data:
            self._done = True
        view[: len(data)] = data
        return len(data)

    def release(self, reusable: bool) -> None:
        if self._body is not None:
            self._body.close()


class S3Source(RangedSource):
    """One S3 object read by ranges."""

    def __init__(self, path: Path, first: int = FIRST_READ) -> None:
        self._bucket, self._key = split(path)
        super().__init__(path, first)

    def _get(self, range_value: str) -> S3Reply:
        try:
            return S3Reply(_call(self.path, "get_object", Bucket=self._bucket, Key=self._key, Range=range_value))
        except _InvalidRange:
            return S3Reply(None)  # an empty object: "bytes */0"


def get_small(path: Path, limit: int) -> bytes:
    """The whole of a small object, at most ``limit`` bytes (larger: a one-line error)."""
    bucket, key = split(path)
    try:
        answer = _call(path, "get_object", Bucket=bucket, Key=key)
    except _InvalidRange:
        return b""
    body = answer["Body"]
    try:
        if int(answer.get("ContentLength") or 0) > limit:
            raise CheckpointError(f"is larger than {limit:,} bytes; refused", path)
        try:
            data: bytes = body.read(limit + 1)
        except Exception as exc:  # as in S3Reply.readinto
            raise CheckpointError(f"the download broke off ({exc})", path) from None
    finally:
        body.close()
    source.COST.add(0, len(data))
    if len(data) > limit:
        raise CheckpointError(f"is larger than {limit:,} bytes; refused", path)
    return data


def listing(path: Path) -> list[tuple[str, bool]]:
    """The names directly under the prefix ``path``, each with whether it is a sub-prefix
    (a folder); listed once per process."""
    with _lock:
        known = _listings.get(str(path))
    if known is not None:
        return known
    bucket, key = split(path)
    prefix = f"{key}/" if key else ""
    names: list[tuple[str, bool]] = []
    token: dict[str, str] = {}
    while True:
        page = _call(path, "list_objects_v2", Bucket=bucket, Prefix=prefix, Delimiter="/", **token)
        length = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("content-length", "0")
        source.COST.add(0, int(length) if str(length).isdigit() else 0)
        for entry in page.get("CommonPrefixes", []):
            name = entry["Prefix"][len(prefix) :].rstrip("/")
            if name:
                names.append((name, True))
        for entry in page.get("Contents", []):
            name = entry["Key"][len(prefix) :]
            if name and "/" not in name:
                names.append((name, False))
        if len(names) > LIST_LIMIT:
            raise CheckpointError(f"the prefix holds more than {LIST_LIMIT:,} names; name a file in it", path)
        if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    with _lock:
        _listings[str(path)] = names
    return names
