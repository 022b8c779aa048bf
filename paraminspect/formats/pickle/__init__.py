"""Pickles from strangers, never executed: the allow-list unpickler (``unpickler``)
that turns a torch pickle into the model's objects, the opcode guard that bounds
its cost (``guard``), and the static scanner ``scan`` uses (``scanner``), which
lists every global a pickle names without building anything.

May use: the core only.
"""
