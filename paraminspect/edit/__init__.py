"""The edit commands: ``set``, ``init``, ``rename``, ``drop``, ``cast``, ``extract``
and ``convert``, and the write they all end in.

Owns: :mod:`~paraminspect.edit.plan` (what the output will hold, name by name),
:mod:`~paraminspect.edit.fill` and :mod:`~paraminspect.edit.initializers` (new
values), :mod:`~paraminspect.edit.unknown` (``--drop-unknown``),
:mod:`~paraminspect.edit.save` (write, verify, replace: the one way an edit
reaches disk), :mod:`~paraminspect.edit.verify`, :mod:`~paraminspect.edit.atomic`
(temporary file, fsync, rename, lock) and ``writers/`` (one per output format).

May use: formats (to read back what was written), data, naming, output, io and
the core. Never: inspect, compare or the CLI.
"""
