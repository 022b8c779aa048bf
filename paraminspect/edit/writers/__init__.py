"""Writers, one per output format: :mod:`~paraminspect.edit.writers.safetensors`
(streams tensor bytes, two threads), :mod:`~paraminspect.edit.writers.gguf`
(metadata edits: a new header, the tensor bytes copied) and
:mod:`~paraminspect.edit.writers.torchsave` (rebuilds the object graph and calls
``torch.save``: the one module that imports torch), with
:mod:`~paraminspect.edit.writers.copying` (the copy threads, ``CopyPool``, and a
tensor's bytes in chunks, for both streaming writers and verification),
:mod:`~paraminspect.edit.writers.writeback` (bounded dirty pages) and
:mod:`~paraminspect.edit.writers.prealloc` (blocks reserved before a copy, on ext4).

They consume an :class:`~paraminspect.edit.plan.Plan` and write to an open file;
the temporary file, verification and rename are :mod:`paraminspect.edit.save`'s.
May use: the plan, data, formats (their constants), io and the core.
"""
