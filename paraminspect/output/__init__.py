"""Output: the report types commands return, and the one renderer that prints them.

Owns: :mod:`~paraminspect.output.report` (tables, trees, verdicts, value
reports: plain data, no printing), :mod:`~paraminspect.output.render` (table,
JSON, CSV and markdown; safe names; NaN in JSON; broken pipes),
:mod:`~paraminspect.output.printing` (torch-style number formatting) and
:mod:`~paraminspect.output.fulltext` (a whole tensor's text, streamed).
Nothing else in the package writes to stdout. May use: the core only.
"""
