"""``diff --by-prefix N``: the change measures per subtree, from summed sums.

Each group adds up the float64 sums (:class:`paraminspect.compare.metrics.Sums`)
of the tensors under one prefix of N dotted components and divides once, so a
group's relative L2 change is that of the group's tensors laid end to end, not
an average of per-tensor ratios. A name (row) counts once: a tied alias that
both files hold is a row of its own, as it is a tensor of the state dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from paraminspect.compare.accumulate import ValueStats
from paraminspect.compare.metrics import METRICS, Sums, measures, moved_key


@dataclass
class Group:
    """One subtree: its prefix, the sums of its compared tensors, and how many of
    its names were not compared (only in one file, shape changed, not decodable...)."""

    prefix: str
    tensors: int = 0
    not_compared: int = 0
    sums: Sums = field(default_factory=Sums)

    def measures(self) -> dict[str, float | None]:
        if self.tensors == 0 or (not self.sums.complete and self.sums.abs_d != 0):
            return dict.fromkeys(METRICS)  # no compared tensor, or norms skipped
        return dict(measures(self.sums))

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "tensors": self.tensors,
            "not_compared": self.not_compared,
            "elements": self.sums.elements,
            "differing": self.sums.differing,
            **self.measures(),
            **self.sums.to_json(),
        }


def prefix_of(name: str, depth: int) -> str:
    """The first ``depth`` dotted components (the whole name if it has fewer)."""
    return ".".join(name.split(".")[:depth])


def group(items: Iterable[tuple[str, ValueStats | None]], key: Callable[[str], str]) -> list[Group]:
    """(name, stats) pairs into groups by ``key(name)``, in order of first appearance."""
    groups: dict[str, Group] = {}
    for name, stats in items:
        g = groups.setdefault(key(name), Group(key(name)))
        if stats is None or stats.sums is None:
            g.not_compared += 1
        else:
            g.tensors += 1
            g.sums.add(stats.sums)
    return list(groups.values())


def by_prefix(items: Iterable[tuple[str, ValueStats | None]], depth: int) -> list[Group]:
    return group(items, lambda name: prefix_of(name, depth))


def sort_groups(groups: list[Group], metric: str) -> list[Group]:
    return sorted(groups, key=lambda g: moved_key(metric, g.measures()[metric]))
