"""Small files given as URLs or found beside a remote checkpoint: a lockfile, a spec, a
quantization config. Read whole in one request, at most a cap (a larger one is refused,
by its announced length when there is one, before its body is read), counted in the
cost like every remote read. The transports are imported only when one is read.
"""

from __future__ import annotations

from paraminspect.io.url import UrlPath


def read_small(path: UrlPath, limit: int) -> bytes:
    """The whole of the small file at ``path``, at most ``limit`` bytes; one-line errors as
    for a checkpoint (``not found (HTTP 404)``, access denied, ...)."""
    if path.scheme == "s3":
        from paraminspect.io import s3

        return s3.get_small(path, limit)
    if path.scheme == "hf":
        from paraminspect.io import hub

        return hub.read_small(str(path)[len("hf://") :], limit)
    from paraminspect.io import http

    return http.get_small(path, limit)
