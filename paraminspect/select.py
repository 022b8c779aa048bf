"""Name selection shared by every command: globs, regexes, exact names, natural sort."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from paraminspect.errors import SelectionError

_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``layers.2`` before ``layers.10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(name) if part)


def natural_sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=natural_key)


class Selector:
    """Matches names against patterns.

    A pattern with glob characters matches with ``fnmatch`` rules (``*`` also
    crosses dots). A plain pattern matches that exact name or the subtree under
    it (``encoder`` selects ``encoder.*``). With ``regex=True`` every pattern is
    a Python regular expression searched anywhere in the name. No patterns
    selects everything.
    """

    def __init__(self, patterns: Sequence[str] = (), *, regex: bool = False) -> None:
        self.patterns = list(patterns)
        self.regex = regex
        self._compiled: list[re.Pattern[str]] = []
        for pattern in self.patterns:
            try:
                if regex:
                    self._compiled.append(re.compile(pattern))
                elif _GLOB_CHARS.search(pattern):
                    self._compiled.append(re.compile(fnmatch.translate(pattern)))
                else:
                    self._compiled.append(re.compile(re.escape(pattern) + r"(?:\..*)?\Z", re.DOTALL))
            except re.error as exc:
                raise SelectionError(f"invalid pattern {pattern!r}: {exc}") from None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, name: str) -> bool:
        if not self._compiled:
            return True
        if self.regex:
            return any(p.search(name) for p in self._compiled)
        return any(p.match(name) for p in self._compiled)

    def filter(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.matches(n)]

    def unmatched(self, names: Iterable[str]) -> list[str]:
        """Patterns that match none of ``names`` (to report a likely typo)."""
        pool = list(names)
        return [
            pattern
            for pattern, compiled in zip(self.patterns, self._compiled, strict=True)
            if not any((compiled.search if self.regex else compiled.match)(n) for n in pool)
        ]
