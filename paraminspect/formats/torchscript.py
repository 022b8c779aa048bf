"""Reader for TorchScript archives (``torch.jit.save``): parameters and buffers, never the code.

A TorchScript archive is a torch zip whose ``data.pkl`` pickles the module
objects themselves: each is a global ``__torch__.<module path>.<class>`` built by
NEWOBJ and given its attributes (parameters, buffers, submodules, flags) by
BUILD. The allow-list unpickler turns every ``__torch__`` class into an inert
placeholder whose state is that attribute dict, and the tensors in it are read
from the archive's ``data/`` records as in a torch.save file. Names are the
state-dict names ``torch.jit.load(f).state_dict()`` gives (``features.0.weight``):
a module's tensors, then its submodules' in attribute order. Its ``code/``
(TorchScript source) is never run: it is counted in the metadata, and ``scan``
lists it. Left out: ``constants.pkl`` (constants of the code) and tensor
attributes that are neither parameters nor buffers (the archive's code says
which are; it is not read here), so such an attribute would be listed too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.filemeta import as_file_metadata
from paraminspect.formats.torchzip import ZipRecords, load_pickle
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint, Entry, Opaque, TensorRef

SCRIPT_PREFIX = "__torch__."


def code_files(records: ZipRecords) -> list[str]:
    """The archive's TorchScript source files (``code/...py``), without their debug pickles."""
    return [n for n in records.names_under("code/") if not n.endswith(".debug_pkl")]


def read_torchscript(path: Path, records: ZipRecords, limits: Limits) -> Checkpoint:
    if "data.pkl" not in records:
        raise CheckpointError(f"TorchScript archive has no {records.top}/data.pkl (an old model.json archive?)")
    root = load_pickle(path, records, "data.pkl", limits)
    if not _is_script_module(root):
        raise CheckpointError("TorchScript data.pkl does not hold a scripted module")
    entries: dict[str, Entry] = {}
    for name, ref in _tensors(root, "", 0, limits):
        if len(entries) >= limits.max_entries:
            raise LimitExceeded(f"more than {limits.max_entries:,} tensors (use --max-entries to raise the limit)")
        entries.setdefault(name, ref)
    code = code_files(records)
    metadata = {"torchscript_code_files": str(len(code)), "note": "holds TorchScript code (never run)"}
    return Checkpoint(path, "torchscript", entries, metadata, ordered=True, file_metadata=as_file_metadata(metadata))


def _is_script_module(obj: Any) -> bool:
    return isinstance(obj, Opaque) and obj.qualname.startswith(SCRIPT_PREFIX) and isinstance(obj.state, dict)


def _tensors(module: Opaque, prefix: str, depth: int, limits: Limits) -> Iterator[tuple[str, TensorRef]]:
    """The module's own tensors, then each submodule's, as ``Module.state_dict()`` orders them."""
    if depth > limits.max_depth:
        raise CheckpointError(f"TorchScript modules nest deeper than {limits.max_depth} levels")
    state: dict[Any, Any] = module.state
    children = []
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, TensorRef):
            yield prefix + key, value
        elif _is_script_module(value):
            children.append((key, value))
    for key, child in children:
        yield from _tensors(child, f"{prefix}{key}.", depth + 1, limits)
