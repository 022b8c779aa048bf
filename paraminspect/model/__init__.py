"""The core: the one in-memory model every format reader produces and every command uses.

A checkpoint is an ordered mapping from dotted name to an entry: either a
:class:`TensorRef` (metadata and where its bytes live) or a :class:`Value`
(a non-tensor leaf: epoch, hyper-parameter, inert placeholder object).

Owns: the entry types (``entries``), the walk that names an object graph
(``graph``, ``nnmodule``) and :class:`Checkpoint` (``checkpoint``). May use only
the other core modules (``dtypes``, ``errors``, ``inttext``). The names below are
the model's vocabulary, imported from here by every layer.
"""

from paraminspect.model.checkpoint import Checkpoint
from paraminspect.model.entries import (
    DEFLATE,
    VARINT,
    Chunk,
    Entry,
    Opaque,
    Packing,
    Sealed,
    StorageRef,
    TensorRef,
    Value,
    contiguous_strides,
    opaque_class,
)
from paraminspect.model.graph import (
    COLLISION_MARK,
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_VALUE_NESTING,
    GraphPath,
    check_value,
    distinct_names,
    flatten,
    leaf_names,
    measure,
)

__all__ = [
    "COLLISION_MARK",
    "DEFLATE",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_VALUE_NESTING",
    "VARINT",
    "Checkpoint",
    "Chunk",
    "Entry",
    "GraphPath",
    "Opaque",
    "Packing",
    "Sealed",
    "StorageRef",
    "TensorRef",
    "Value",
    "check_value",
    "contiguous_strides",
    "distinct_names",
    "flatten",
    "leaf_names",
    "measure",
    "opaque_class",
]
