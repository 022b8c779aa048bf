"""Resource limits applied while reading untrusted files.

The limits in force live in a context variable, not in every call signature:
the CLI sets them once (global ``--max-...`` options) and every reader reached
from any command, including readers that open further files (shards), sees
them without each command having to pass them along. Library callers pass
``limits=`` to :func:`~paraminspect.formats.opening.open_checkpoint` or use
:func:`using`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paraminspect.model import Checkpoint


@dataclass(frozen=True)
class Limits:
    """Ceilings that turn hostile inputs into clear errors instead of exhausted machines."""

    # safetensors' own loader refuses headers over 100 MB, so raising this buys nothing.
    max_header_bytes: int = 100_000_000
    # data.pkl holds structure, not tensor bytes: ~100 bytes a tensor, estimated
    # at ~1.5 KB of objects (a 50k-tensor state dict: ~75 MB). 128 MiB read, or
    # estimated to be built, keeps a hostile pickle near 256 MiB of memory.
    max_pickle_bytes: int = 1 << 27
    # Nesting of the decoded object (dicts in lists in objects...); real files: < 20.
    max_depth: int = 1000
    # Names after flattening (tensors and other leaves), counted before walking,
    # so shared references cannot multiply them unseen. The largest released
    # models have ~10^5 tensors (DeepSeek-V3: 91k); every entry costs ~1-2 KB
    # and ~20-50 us on its way to a table or tree, so 200k keeps that bounded.
    max_entries: int = 200_000
    # Total elements over all distinct tensors: 2^48 (~281 trillion) is far past
    # any real model yet stops zero-stride "views" claiming 2^80 elements.
    max_numel: int = 1 << 48
    # Distinct globals a pickle may name: each non-allow-listed one becomes a
    # placeholder class (~1 KB). Real files name tens, Lightning ones hundreds.
    max_globals: int = 10_000
    # Opcodes in one pickle: every pass over them is Python (the guard ~0.5 us
    # an opcode, scan's analysis ~1.5 us). A state dict takes ~30 a tensor,
    # optimizer state ~45: 1M is ~30k tensors in one torch.save pickle.
    max_pickle_opcodes: int = 1_000_000
    # Elements one statistic or comparison may walk beyond 4x what the view's
    # stored bytes hold. Broadcast dims (stride 0) are not walked at all (see
    # broadcast.py), so only overlapping strides meet this: 2^26 is ~2 s.
    max_elements: int = 1 << 26


DEFAULT_LIMITS = Limits()

_CURRENT: ContextVar[Limits] = ContextVar("paraminspect_limits", default=DEFAULT_LIMITS)


def current() -> Limits:
    """The limits in force for this context (the CLI's options, or the defaults)."""
    return _CURRENT.get()


def set_current(limits: Limits) -> None:
    """Make ``limits`` the ones in force for the rest of this context."""
    _CURRENT.set(limits)


@contextmanager
def using(limits: Limits) -> Iterator[Limits]:
    """Apply ``limits`` inside a ``with`` block, restoring the previous ones after."""
    token = _CURRENT.set(limits)
    try:
        yield limits
    finally:
        _CURRENT.reset(token)


def enforce(ckpt: Checkpoint, limits: Limits) -> None:
    """Check a freshly read checkpoint's totals (every format, after its reader ran)."""
    from paraminspect.errors import LimitExceeded

    if len(ckpt.entries) > limits.max_entries:
        raise LimitExceeded(
            f"{len(ckpt.entries):,} entries, over the {limits.max_entries:,} limit (use --max-entries to raise it)"
        )
    seen: set[tuple[object, ...]] = set()
    total = 0
    for ref in ckpt.tensors.values():
        before = len(seen)
        seen.add(ref.identity)  # hashed once: an identity's hash calls DType.__hash__ (Python)
        if len(seen) != before:
            total += ref.numel
    if total > limits.max_numel:
        raise LimitExceeded(
            f"tensors claim {_amount(total)} elements in total, over the {limits.max_numel:,} limit"
            " (use --max-numel to raise it)"
        )


def _amount(n: int) -> str:
    return f"{n:,}" if n < 10**30 else f"about 2^{n.bit_length() - 1}"
