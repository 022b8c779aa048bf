"""Names in the order every command shows them: the file's own order where it means
something (a torch state dict keeps module order), else natural order."""

from __future__ import annotations

from paraminspect.model import Checkpoint
from paraminspect.naming.select import Selector, natural_sorted


def ordered_names(ckpt: Checkpoint, *, sort: bool = False) -> list[str]:
    """Names in file order where that order means something, else natural order."""
    names = list(ckpt.entries)
    return natural_sorted(names) if sort or not ckpt.ordered else names


def tensor_names(ckpt: Checkpoint, selector: Selector | None = None, *, sort: bool = False) -> list[str]:
    """The tensors' names in display order, narrowed to ``selector``'s matches when given."""
    tensors = ckpt.tensors
    names = [n for n in ordered_names(ckpt, sort=sort) if n in tensors]
    return selector.filter(names) if selector else names
