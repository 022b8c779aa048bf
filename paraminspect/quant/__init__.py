"""Quantized weights as what they mean: one logical weight (int4 [4096, 4096],
``gptq g128``, 4.25 bits per weight) recognised from the storage tensors a
quantizer wrote (``qweight``, ``qzeros``, ``scales``, ``g_idx``...).

Owns: :mod:`~paraminspect.quant.logical` (the :class:`Logical` weight and the
:class:`Recognition` of a checkpoint), :mod:`~paraminspect.quant.config` (the
quantization config beside the weights), :mod:`~paraminspect.quant.recognise`
and the per-family recognisers (``packed``: GPTQ, AWQ, compressed-tensors,
MLX; ``others``: FP8, bitsandbytes, torch quantized tensors), and
:mod:`~paraminspect.quant.dequant` (logical values, numpy imported inside it).

Recognition is header-only: names, dtypes, shapes, the config file, and at most
a few bytes of tiny descriptor tensors (compressed-tensors' ``weight_shape``,
bitsandbytes' ``quant_state`` JSON), so it never imports numpy. A layer above
formats, data, naming and output, below the command families. May use those
and the core. Never: the commands or the CLI.
"""
