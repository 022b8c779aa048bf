"""ANSI colour for terminals: on only for a TTY with NO_COLOR unset."""

from __future__ import annotations

import os
from typing import TextIO


class Colours:
    """ANSI styling, switched off unless writing to a TTY with NO_COLOR unset."""

    def __init__(self, stream: TextIO) -> None:
        self.enabled = stream.isatty() and not os.environ.get("NO_COLOR")

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled and text else text

    def wrap(self, code: str, text: str) -> str:
        """``text`` in the SGR style ``code`` (``"31"``: red), when colour is on."""
        return self._wrap(code, text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)
