"""Prefix maps for dotted names: ``--strip-prefix module.`` and ``--rename OLD=NEW``.

Checkpoints of the same model often differ only in a prefix (DataParallel's
``module.``, a wrapper's ``model.``, a renamed submodule). Mapping names before
a command works on them lets ``diff``/``check`` (and the edit commands) line the
two up. Prefixes match whole name components: ``enc`` matches ``enc.weight``
but not ``encoder.weight``; a trailing dot is optional (``module.`` = ``module``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from paraminspect.errors import UsageError


@dataclass(frozen=True)
class PrefixRule:
    """Replace the leading components ``old`` of a name by ``new``.

    An empty ``old`` matches every name (so ``=wrapper`` adds a prefix); an
    empty ``new`` removes the prefix. A name that would become empty is kept.
    """

    old: str
    new: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "old", self.old.removesuffix("."))
        object.__setattr__(self, "new", self.new.removesuffix("."))

    def apply(self, name: str) -> str:
        if self.old:
            if name == self.old:
                rest = ""
            elif name.startswith(self.old + "."):
                rest = name[len(self.old) + 1 :]
            else:
                return name
        else:
            rest = name
        if not self.new:
            return rest or name
        return f"{self.new}.{rest}" if rest else self.new


def strip_rule(prefix: str) -> PrefixRule:
    """The rule for ``--strip-prefix PREFIX``."""
    if not prefix.removesuffix("."):
        raise UsageError("--strip-prefix needs a non-empty prefix")
    return PrefixRule(prefix, "")


def parse_rename(spec: str) -> PrefixRule:
    """Parse ``OLD=NEW`` (split at the first ``=``); either side may be empty, not both."""
    old, sep, new = spec.partition("=")
    if not sep:
        raise UsageError(f"--rename expects OLD=NEW, got {spec!r}")
    if not old.removesuffix(".") and not new.removesuffix("."):
        raise UsageError(f"--rename {spec!r} renames nothing")
    return PrefixRule(old, new)


class NameMap:
    """An ordered list of prefix rules; each rule sees the result of the previous one."""

    def __init__(self, rules: Sequence[PrefixRule] = ()) -> None:
        self.rules = list(rules)

    @classmethod
    def from_options(cls, strip: Sequence[str] = (), rename: Sequence[str] = ()) -> NameMap:
        """All ``--strip-prefix`` rules first, then the ``--rename`` rules in the order given."""
        return cls([*(strip_rule(p) for p in strip), *(parse_rename(r) for r in rename)])

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __add__(self, other: NameMap) -> NameMap:
        return NameMap([*self.rules, *other.rules])

    def __call__(self, name: str) -> str:
        for rule in self.rules:
            name = rule.apply(name)
        return name

    def apply(self, names: Iterable[str], source: str | None = None) -> dict[str, str]:
        """Map every name; return ``{new name: original name}`` in the given order.

        Two names landing on one new name would silently hide one of them, so
        that is an error naming both.
        """
        mapped: dict[str, str] = {}
        for name in names:
            new = self(name)
            if new in mapped:
                raise UsageError(f"names {mapped[new]!r} and {name!r} both map to {new!r}", source)
            mapped[new] = name
        return mapped
