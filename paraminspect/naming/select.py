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
    # isdecimal, not isdigit: exactly the characters \d splits out and int() reads; a
    # superscript "²" is a digit to isdigit but not to int() (it crashed the sort).
    return tuple((0, int(part)) if part.isdecimal() else (1, part) for part in _DIGITS.split(name) if part)


def natural_sorted(names: Iterable[str]) -> list[str]:
    """``sorted(names, key=natural_key)``, about twice as fast on many names: the pieces
    repeat (``model.layers.``, ``.mlp.experts.``), so each one's key is built once, and
    comparing two keys then meets the same piece objects (equal by identity, no string
    compare). The memo lives for one call: bounded by the names given."""
    memo: dict[str, tuple[int, int | str]] = {}
    split = _DIGITS.split

    def key(name: str) -> tuple[tuple[int, int | str], ...]:
        out = []
        for part in split(name):
            if part:
                piece = memo.get(part)
                if piece is None:
                    piece = memo[part] = (0, int(part)) if part.isdecimal() else (1, part)
                out.append(piece)
        return tuple(out)

    return sorted(names, key=key)


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


# ``[2]`` steps of the index form: a signed integer in brackets. Glob classes
# such as ``[0-9]`` never look like this, so the two forms do not collide.
_INDEX_STEP = re.compile(r"\[(-?\d+)\]")


def is_index_form(pattern: str) -> bool:
    """True for ``[0][1][0].bias``-style paths (nn.Sequential indexing)."""
    return bool(_INDEX_STEP.search(pattern))


def _children_in_order(names: Sequence[str]) -> dict[str, list[str]]:
    """Each node's child keys in first-seen order (root is ``""``)."""
    children: dict[str, dict[str, None]] = {}
    for name in names:
        parent = ""
        for part in name.split("."):
            children.setdefault(parent, {})[part] = None
            parent = f"{parent}.{part}" if parent else part
    return {node: list(keys) for node, keys in children.items()}


def resolve_index_form(pattern: str, names: Sequence[str]) -> str:
    """Turn ``[0][1][0].bias`` into the dotted name it denotes (``0.block 1.0.bias``).

    ``[k]`` picks a child of the current node the way indexing the module
    would: when every child is numbered (nn.Sequential, nn.ModuleList) it is the
    child *named* ``k``, so parameterless layers (ReLU) keep their index;
    otherwise (named blocks, dicts) it is the ``k``-th child in ``names``' order.
    Negative ``k`` counts from the last child. ``names`` must be in file order.
    """
    tree = _children_in_order(names)
    node = ""
    rest = pattern
    while rest:
        step = _INDEX_STEP.match(rest)
        if step:
            kids = tree.get(node, [])
            where = f"{node!r}" if node else "the top level"
            index = int(step.group(1))
            if kids and all(k.isdigit() for k in kids) and index >= 0:
                if str(index) not in kids:
                    raise SelectionError(
                        f"no name matches {pattern!r}: {where} has no child {index} (it has {_few(kids)})"
                    )
                key = str(index)
            elif -len(kids) <= index < len(kids):
                key = kids[index]
            else:
                raise SelectionError(
                    f"no name matches {pattern!r}: index {index} is out of range, {where} has "
                    f"{len(kids)} children ({_few(kids)})"
                )
            rest = rest[step.end() :]
        else:
            dotted = rest.removeprefix(".")
            cut = _INDEX_STEP.search(dotted)
            key = dotted[: cut.start()] if cut else dotted
            rest = dotted[len(key) :]
        node = f"{node}.{key}" if node else key
    return node


def _few(keys: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (", ..." if len(keys) > limit else "")


def suggestions(pattern: str, names: Iterable[str], limit: int = 3) -> list[str]:
    """The names (or subtree prefixes) closest to a pattern that matched nothing.

    A dotted name is corrected part by part down the tree (``2.bais`` looks
    for ``bais`` among the children of ``2``), which is fast on checkpoints
    with tens of thousands of names and keeps the parts the user got right.
    When that finds nothing, and for globs, the whole string is compared: a
    glob with the names' shapes (digit runs as ``*``), so ``layer.*.weight``
    suggests ``layers.*.weight`` rather than one layer.
    """
    import difflib

    pool = list(names)
    if not _GLOB_CHARS.search(pattern):
        found = _walk(_children_in_order(pool), "", pattern.split("."), limit)
        if found:
            return found[:limit]
    candidates: set[str] = set()
    for name in pool:
        parts = name.split(".")
        candidates.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    if _GLOB_CHARS.search(pattern):
        candidates = {_DIGITS.sub("*", c) for c in candidates}
    close = difflib.get_close_matches(pattern, natural_sorted(candidates), n=limit * 4, cutoff=0.6)
    # A better-scoring '0.block 1' already leads to '0.block 1.0': skip the latter.
    kept: list[str] = []
    for candidate in close:
        if not any(candidate.startswith(better + ".") for better in kept):
            kept.append(candidate)
    return kept[:limit]


def _walk(tree: dict[str, list[str]], node: str, parts: list[str], limit: int) -> list[str]:
    """Existing names reached by following ``parts`` from ``node``, replacing each
    part that is not a child by its closest children (best first)."""
    import difflib

    if not parts:
        return [node] if node else []
    head, rest = parts[0], parts[1:]
    kids = tree.get(node, [])
    choices = [head] if head in kids else difflib.get_close_matches(head, kids, n=limit, cutoff=0.6)
    found: list[str] = []
    for choice in choices:
        found += _walk(tree, f"{node}.{choice}" if node else choice, rest, limit)
        if len(found) >= limit:
            break
    return found
