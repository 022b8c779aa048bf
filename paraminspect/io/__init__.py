"""Where a checkpoint's bytes come from: one handle per input file, opened once.

Owns: :mod:`~paraminspect.io.source` (the :class:`~paraminspect.io.source.Source`
every read goes through, positional reads, noticing a file changed underneath)
and :mod:`~paraminspect.io.files` (regular-file checks: no FIFOs, devices or
symlink loops). This is the one seam below the format readers: a remote file is
another kind of Source here, and no reader changes for it: :mod:`~paraminspect.io.url`
(URLs as paths), :mod:`~paraminspect.io.ranged` (a file read by byte ranges, over
:mod:`~paraminspect.io.rangecache`), its transports :mod:`~paraminspect.io.http`
(standard library) and :mod:`~paraminspect.io.s3` (botocore, the ``s3`` extra),
:mod:`~paraminspect.io.fetch` (small files: configs, lockfiles), and
:mod:`~paraminspect.io.hub` (the Hugging Face Hub and its local cache).
May use: the core only.
"""
