"""Resource limits applied while reading untrusted files."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Ceilings that turn hostile inputs into clear errors instead of exhausted machines."""

    max_header_bytes: int = 100_000_000  # safetensors' own limit on its JSON header
    max_pickle_bytes: int = 1 << 30
    max_depth: int = 1000
    max_entries: int = 10_000_000


DEFAULT_LIMITS = Limits()
