"""The library's read API: :func:`~paraminspect.api.reading.safe_open` (the
``safetensors.safe_open`` interface over every format paraminspect reads) and
the value reads a library user needs (``read_tensor``, ``read_slice``,
``iter_chunks``, ``to_torch``), all exported from the package face.

A sibling of ``cli/`` at the top: it may use formats, data, naming, io and the
core; nothing in the package imports it but the face. It may import torch
(lazily, for ``framework="pt"``); see docs/library.md.
"""
