"""Tensor data: bytes to numpy arrays, and the machinery long reads run on.

Owns: :mod:`~paraminspect.data.arrays` (a tensor's bytes as an array, in
chunks, views and DCP pieces included), :mod:`~paraminspect.data.ggml` (GGUF's
block-quantized types dequantized, whole blocks at a time), :mod:`~paraminspect.data.peek` (a few
elements decoded without numpy), :mod:`~paraminspect.data.casting` (dtype
conversion with torch's rounding), :mod:`~paraminspect.data.broadcast`
(stride-0 views read once), :mod:`~paraminspect.data.sums` (the float64
sums stats and diff's measures take, one way), and what long reads
stand on from the core: :mod:`paraminspect.parallel` (the two-thread helper)
and :mod:`paraminspect.interrupts` (Ctrl-C and signals checked between chunks).

numpy and ml_dtypes are imported inside functions only, so a header-only
command that imports this layer never pays for them. May use: the core and
``io``. Never: formats, naming, output, commands or the CLI.
"""
