"""Checkpoints on the Hugging Face Hub (``hf://org/repo[@rev][/path]``) and in its local cache.

The Hub is reached at ``HF_ENDPOINT`` (default https://huggingface.co) with
``HF_TOKEN`` as a bearer token (sent to that origin only, never to the CDN it
redirects to). A file is read at ``<endpoint>/<repo>/resolve/<rev>/<path>``. A
whole repo is listed once through ``<endpoint>/api/models/<repo>/revision/<rev>``
(one small request: its file names and the commit they belong to), and every
file is then read at that commit, so a sharded model's index and shards cannot
come from different pushes. ``HF_HUB_OFFLINE=1`` uses the local cache only.

The local cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``) holds ``models--org--repo/snapshots/<commit>/``,
with ``refs/<rev>`` naming the commit of a branch or tag; a bare ``org/repo[@rev]``
that is not a local path is looked up there, without network.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from pathlib import Path

from paraminspect.errors import CheckpointError
from paraminspect.io import http, url

DEFAULT_ENDPOINT = "https://huggingface.co"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", re.ASCII)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
LIST_LIMIT = 16 << 20  # the API's answer for a repo of many files is well under this


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def split(spec: str) -> tuple[str, str, str]:
    """``org/repo[@rev][/path]`` -> (repo, rev, path); a revision with ``/`` is written ``%2F``."""
    parts = spec.strip("/").split("/")
    if len(parts) < 2:
        raise CheckpointError("is not a Hub repo (expected org/repo[@revision][/path])", f"hf://{spec}")
    name, _, rev = parts[1].partition("@")
    repo = f"{parts[0]}/{name}"
    if not _REPO.match(repo):
        raise CheckpointError("is not a Hub repo name (expected org/repo[@revision][/path])", f"hf://{spec}")
    return repo, urllib.parse.unquote(rev) or "main", "/".join(parts[2:])


def looks_like_repo(text: str) -> bool:
    """A bare ``org/repo[@rev]`` (what the local cache is searched for)."""
    return bool(_REPO.match(text.partition("@")[0])) and "\\" not in text


def cache_root() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def cached(repo: str, rev: str, path: str = "") -> Path | None:
    """The local snapshot (or a file in it) of ``repo`` at ``rev``, or None if not cached."""
    folder = cache_root() / ("models--" + repo.replace("/", "--"))
    commit = rev if _COMMIT.match(rev) else None
    if commit is None:
        try:
            commit = (folder / "refs" / rev).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        if not _COMMIT.match(commit):
            return None
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    target = snapshot / path if path else snapshot
    return target if target.exists() else None


def local(spec: str) -> Path:
    """A bare ``org/repo[@rev]`` from the local cache, or a one-line error."""
    repo, _, rev = spec.partition("@")
    found = cached(repo, urllib.parse.unquote(rev) or "main")
    if found is None:
        raise CheckpointError(
            f"no such file, and not in the local Hugging Face cache ({cache_root()});"
            f" 'hf://{spec}' reads it from the Hub",
            spec,
        )
    return found


def _token_origin() -> None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        url.set_auth(url.parse(endpoint() + "/").origin, f"Bearer {token.strip()}")


def file_url(repo: str, rev: str, path: str) -> url.UrlPath:
    _token_origin()
    quoted = urllib.parse.quote(rev, safe="")
    return url.parse(f"{endpoint()}/{repo}/resolve/{quoted}/{urllib.parse.quote(path)}")


def repo_files(repo: str, rev: str) -> tuple[str, list[str]]:
    """The commit ``rev`` names and the repo's file names at it (one API request)."""
    _token_origin()
    api = url.parse(f"{endpoint()}/api/models/{repo}/revision/{urllib.parse.quote(rev, safe='')}")
    raw = http.get_small(api, LIST_LIMIT)
    try:
        doc = json.loads(raw)
        commit = doc.get("sha") or rev
        names = [s["rfilename"] for s in doc.get("siblings", [])]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CheckpointError("the Hub's file listing is not the JSON expected", str(api)) from None
    if not isinstance(commit, str) or not all(isinstance(n, str) for n in names):
        raise CheckpointError("the Hub's file listing is not the JSON expected", str(api))
    return commit, names


def read_small(spec: str, limit: int) -> bytes:
    """A small file of a repo (``org/repo[@rev]/path``: a lockfile, a config), at most
    ``limit`` bytes: from the local cache when offline, else one request."""
    repo, rev, inner = split(spec)
    if not inner:
        raise CheckpointError("names a repo, not a file in it (hf://org/repo/path)", f"hf://{spec}")
    if offline():
        found = cached(repo, rev, inner)
        if found is None:
            raise CheckpointError("is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set", f"hf://{spec}")
        try:
            with open(found, "rb") as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            raise CheckpointError(f"cannot read ({exc.strerror or exc})", found) from None
        if len(data) > limit:
            raise CheckpointError(f"is larger than {limit:,} bytes; refused", found)
        return data
    return http.get_small(file_url(repo, rev, inner), limit)
