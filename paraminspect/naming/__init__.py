"""Names: which entries a command acts on, and in what order it shows them.

Owns: :mod:`~paraminspect.naming.select` (globs, regexes, exact names, the
``0.weight`` index form, natural sort, "did you mean"),
:mod:`~paraminspect.naming.order` (display order), :mod:`~paraminspect.naming.prefixes`
(prefix rules of ``rename`` and ``diff --map``) and :mod:`~paraminspect.naming.roots`
(``--root``: the state dict inside a trainer checkpoint). May use: the core only.
"""
