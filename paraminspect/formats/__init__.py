"""Formats: one reader per on-disk format, and sniffing that picks the reader.

Owns: :mod:`~paraminspect.formats.opening` (``open_checkpoint``: sniff the content,
never the suffix, and dispatch), :mod:`~paraminspect.formats.magic` (what first
bytes mean), a reader per format (``safetensors``, ``torchzip`` with the strict
zip parser ``zipstrict``, ``legacy``, ``sharded``, ``dcp``, ``gguf`` with its split
models in ``ggufsplit``) and ``pickle/`` (the
allow-list unpickler, its opcode guard and the static scanner).

Readers are header-only: they produce a :class:`~paraminspect.model.Checkpoint`
of names, dtypes, shapes and byte positions, and read no tensor data, so numpy
and torch are never imported here. May use: the core, ``io`` (where bytes come
from). Never: the tensor-data layer, commands, output or the CLI. Writers live
with the edits that use them (``paraminspect.edit.writers``).
"""
