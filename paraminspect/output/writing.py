"""Where output goes: data to stdout, messages to stderr."""

from __future__ import annotations

import sys
from typing import TextIO

from paraminspect.output.text import message_text


def write(text: str, stream: TextIO | None = None) -> None:
    """Send rendered output to stdout (or ``stream``)."""
    (stream or sys.stdout).write(text)


def write_message(text: str) -> None:
    """Messages and warnings go to stderr, never mixed with data."""
    sys.stderr.write(message_text(text) + "\n")
