"""``hash``: a content hash per tensor and one for the state dict; its JSON is a lockfile.

The lockfile (``--format json``) has a fixed schema, version 1::

    {"schema": "paraminspect-lockfile", "version": 1, "algorithm": "sha256",
     "file": ..., "format": ..., "root": ...,
     "state_dict_sha256": <hex>,            # data/hashing.state_dict_sha256 of the tensors below
     "tensors": [{"name", "dtype", "shape", "sha256"}, ...]}   # in display order

Its ``tensors`` items carry ``name``/``dtype``/``shape`` like the spec
``shapes`` writes, so ``check --expect`` reads it as a structure contract too,
and ``sha256`` on top (compare/lockfile.py). Non-tensor leaves are not hashed.
"""

from __future__ import annotations

from typing import Any

from paraminspect.data.hashing import ALGORITHM, LOCK_SCHEMA, LOCK_VERSION, hash_tensors, state_dict_sha256
from paraminspect.io import progress
from paraminspect.model import Checkpoint
from paraminspect.naming.order import tensor_names
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Kind, Table, plural

COLUMNS = [
    Column("name", "name", Kind.NAME),
    Column("dtype", "dtype"),
    Column("shape", "shape", Kind.SHAPE),
    Column("sha256", "sha256"),
    Column("tied_to", "tied to", Kind.NAME, optional=True),
]


def report(ckpt: Checkpoint, selector: Selector | None = None, *, sort: bool = False) -> Table:
    """One row per selected tensor with its hash; the total row holds the state-dict hash."""
    tensors = ckpt.tensors
    names = tensor_names(ckpt, selector, sort=sort)
    with progress.task(sum(tensors[n].nbytes for n in names), "hash"):
        digests = hash_tensors([tensors[n] for n in names])
    tied = ckpt.tied_groups()
    records = [(n, tensors[n].dtype.name, list(tensors[n].shape), d) for n, d in zip(names, digests, strict=True)]
    whole = state_dict_sha256(records)
    items: list[dict[str, Any]] = [{"name": n, "dtype": t, "shape": s, "sha256": d} for n, t, s, d in records]
    rows = [item | {"tied_to": tied.get(item["name"])} for item in items]
    document = {
        "schema": LOCK_SCHEMA,
        "version": LOCK_VERSION,
        "algorithm": ALGORITHM,
        "file": str(ckpt.path),
        "format": ckpt.format,
        "root": ckpt.selected,
        "state_dict_sha256": whole,
        "tensors": items,
    }
    total = {"name": f"state dict ({plural(len(rows), 'tensor')})", "sha256": whole}
    return Table(COLUMNS, rows, total, document)
