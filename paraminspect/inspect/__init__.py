"""The inspect commands: ``tree``, ``shapes``, ``sizes``, ``tree --modules``,
``get``, ``stats`` and ``scan`` (with ``ggufscan``: what it flags in a GGUF). Each
module turns an opened checkpoint into a report (:mod:`paraminspect.output.report`); the CLI hands it to the renderer.

May use: formats, data, naming, output, io and the core. Never: the other
command families (compare, edit) or the CLI.
"""
