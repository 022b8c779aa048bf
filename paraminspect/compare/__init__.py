"""The compare commands: ``diff`` (:mod:`~paraminspect.compare.diff`) and ``check``
(:mod:`~paraminspect.compare.check`, a checkpoint against a spec or another file),
with the element-wise comparison both stand on (:mod:`~paraminspect.compare.elementwise`,
:mod:`~paraminspect.compare.differing` for the few elements that differ, and
:mod:`~paraminspect.compare.tolerance`).

May use: formats, data, naming, output, io and the core. Never: inspect, edit or the CLI.
"""
