"""Lockfiles (``hash --format json``) read back: recognised, validated, and diffed.

``check --expect lock.json`` reads a lockfile as a spec whose items carry a
``sha256`` (check.py); ``diff`` takes one on either side (:func:`compare`), so
"did these weights change" needs the lockfile, not the old checkpoint. Against
a lockfile, values are compared by hash: exactly, bit for bit of the canonical
bytes (``-0.0`` differs from ``0.0``, as do two NaN payloads), with no
tolerance, and only tensors (non-tensor leaves are not in a lockfile).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paraminspect.compare.diff import mapped_names
from paraminspect.compare.rows import Row, Side, Status
from paraminspect.data.hashing import LOCK_SCHEMA, LOCK_VERSION, hash_tensors
from paraminspect.errors import CheckpointError, SelectionError, reading
from paraminspect.io.url import UrlPath
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.naming.prefixes import NameMap
from paraminspect.naming.select import Selector

MAX_LOCK_BYTES = 256 << 20
SNIFF_BYTES = 64 << 10  # ``hash -f json`` writes the schema first; a hand-made lockfile should too
_HEX = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Locked:
    """One tensor of a lockfile."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    sha256: str


@dataclass(frozen=True)
class Lock:
    """A lockfile, shaped like what diff's report needs to know about a side."""

    path: Path
    source: str  # the checkpoint it was written from
    tensors: dict[str, Locked]
    format: str = "lockfile"
    selected: str = ""


def read_document(path: Path, what: str) -> Any:
    """The JSON document in ``path`` or at a URL (at most :data:`MAX_LOCK_BYTES`); one-line errors."""
    if isinstance(path, UrlPath):
        from paraminspect.io import fetch

        return _decode(fetch.read_small(path, MAX_LOCK_BYTES), path, what)
    with reading(path, what), open(path, "rb") as fh:
        raw = fh.read(MAX_LOCK_BYTES + 1)
    if len(raw) > MAX_LOCK_BYTES:
        raise CheckpointError(f"{what} is larger than {MAX_LOCK_BYTES >> 20} MiB", path)
    return _decode(raw, path, what)


def _decode(raw: bytes, path: Path, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{what} is not valid JSON ({exc})", path) from None
    except RecursionError:
        raise CheckpointError(f"{what} JSON is nested too deeply", path) from None


def is_lock_document(document: Any) -> bool:
    return isinstance(document, dict) and document.get("schema") == LOCK_SCHEMA


def check_version(document: dict[str, Any], path: Path) -> None:
    version = document.get("version")
    if type(version) is not int or version != LOCK_VERSION:
        raise CheckpointError(f"lockfile version {version!r} is not supported (this paraminspect reads 1)", path)


def sha256_of(item: dict[str, Any], name: str, path: Path) -> str:
    digest = item.get("sha256")
    if not isinstance(digest, str) or not _HEX.match(digest):
        raise CheckpointError(f"lockfile tensor {name!r}: 'sha256' must be 64 lowercase hex digits", path)
    return digest


def parse(document: dict[str, Any], path: Path) -> Lock:
    """A validated :class:`Lock` from a lockfile document."""
    check_version(document, path)
    items = document.get("tensors")
    if not isinstance(items, list):
        raise CheckpointError("lockfile has no 'tensors' list", path)
    tensors: dict[str, Locked] = {}
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise CheckpointError(f"lockfile tensors[{position}] has no string 'name'", path)
        name, dtype, shape = item["name"], item.get("dtype"), item.get("shape")
        if not isinstance(dtype, str):
            raise CheckpointError(f"lockfile tensor {name!r}: 'dtype' must be a string", path)
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise CheckpointError(f"lockfile tensor {name!r}: 'shape' must be a list of non-negative integers", path)
        if name in tensors:
            raise CheckpointError(f"lockfile lists {name!r} twice", path)
        tensors[name] = Locked(name, dtype, tuple(shape), sha256_of(item, name, path))
    source = document.get("file")
    return Lock(path, source if isinstance(source, str) else "", tensors)


def read_if_lockfile(path: Path) -> Lock | None:
    """The lockfile at ``path``, or None if ``path`` is not one (a checkpoint, a directory).

    Sniffed by content: a regular file starting with ``{`` that names the schema
    in its first :data:`SNIFF_BYTES` and whose JSON has ``"schema":
    "paraminspect-lockfile"`` (a sharded index is JSON too, and is not parsed here).
    """
    if isinstance(path, UrlPath):  # only a URL of a .json file (else a checkpoint: no request to sniff it)
        if not path.name.endswith(".json") or path.name.endswith(".index.json"):
            return None
        from paraminspect.io import fetch

        raw = fetch.read_small(path, MAX_LOCK_BYTES)
        if not raw.lstrip().startswith(b"{") or LOCK_SCHEMA.encode() not in raw[:SNIFF_BYTES]:
            return None
        document = _decode(raw, path, "lockfile")
        return parse(document, path) if is_lock_document(document) else None
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    if not head.lstrip().startswith(b"{") or LOCK_SCHEMA.encode() not in head:
        return None
    document = read_document(path, "lockfile")
    return parse(document, path) if is_lock_document(document) else None


@dataclass(frozen=True)
class _Side:
    """One side's tensors by mapped name: (dtype, shape, hash or the tensor to hash)."""

    names: dict[str, str]  # mapped name -> own name
    items: dict[str, tuple[str, tuple[int, ...], str | TensorRef]]


def _side(side: Checkpoint | Lock, name_map: NameMap) -> _Side:
    if isinstance(side, Lock):
        names = name_map.apply(list(side.tensors), str(side.path))
        return _Side(
            names, {n: (side.tensors[o].dtype, side.tensors[o].shape, side.tensors[o].sha256) for n, o in names.items()}
        )
    tensors = side.tensors
    names = {n: o for n, o in mapped_names(side, name_map).items() if o in tensors}
    return _Side(names, {n: (tensors[o].dtype.name, tensors[o].shape, tensors[o]) for n, o in names.items()})


def compare(
    a: Checkpoint | Lock,
    b: Checkpoint | Lock,
    *,
    selector: Selector | None = None,
    map_a: NameMap | None = None,
    map_b: NameMap | None = None,
    structure: bool = False,
) -> list[Row]:
    """Rows like :func:`paraminspect.compare.diff.compare`, values compared by hash."""
    side_a, side_b = _side(a, map_a or NameMap()), _side(b, map_b or NameMap())
    order = [*side_a.names, *(n for n in side_b.names if n not in side_a.names)]
    if selector:
        own = [*side_a.names.values(), *side_b.names.values()]
        missing = selector.unmatched([*side_a.names, *side_b.names, *own])
        if missing:
            raise SelectionError(f"no tensor in either side matches {missing[0]!r}")
        order = [
            n
            for n in order
            if selector.matches(n) or any(selector.matches(s.names[n]) for s in (side_a, side_b) if n in s.names)
        ]
    rows: list[Row] = []
    to_hash: list[tuple[Row, str | TensorRef, str | TensorRef]] = []
    for name in order:
        ea, eb = side_a.items.get(name), side_b.items.get(name)
        sa = Side(ea[0], ea[1]) if ea else None
        sb = Side(eb[0], eb[1]) if eb else None
        row = Row(name, Status.EQUAL, side_a.names.get(name), side_b.names.get(name), sa, sb)
        rows.append(row)
        if ea is None or eb is None:
            row.status = Status.ONLY_B if ea is None else Status.ONLY_A
        elif ea[0] != eb[0]:
            row.status = Status.DTYPE
        elif ea[1] != eb[1]:
            row.status = Status.SHAPE
        elif not structure:
            to_hash.append((row, ea[2], eb[2]))
    refs = list({id(x): x for _, *pair in to_hash for x in pair if isinstance(x, TensorRef)}.values())
    digests = dict(zip(map(id, refs), hash_tensors(refs), strict=True))
    for row, x, y in to_hash:
        hx = digests[id(x)] if isinstance(x, TensorRef) else x
        hy = digests[id(y)] if isinstance(y, TensorRef) else y
        if hx != hy:
            row.status = Status.VALUES
    return rows
