"""Where a checkpoint's bytes come from: one handle per input file, opened once.

Owns: :mod:`~paraminspect.io.source` (the :class:`~paraminspect.io.source.Source`
every read goes through, positional reads, noticing a file changed underneath)
and :mod:`~paraminspect.io.files` (regular-file checks: no FIFOs, devices or
symlink loops). This is the one seam below the format readers: a remote source
(HTTP ranges, an object store) is another kind of Source here, and no reader
changes for it. May use: the core only.
"""
