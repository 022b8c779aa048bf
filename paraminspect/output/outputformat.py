"""The output formats a command may be asked for, and which commands can write SARIF."""

from __future__ import annotations

from enum import Enum

from paraminspect.errors import UsageError


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    sarif = "sarif"  # findings only: scan, check and diff (FINDING_COMMANDS)


# The commands whose output is findings, the only ones that can write SARIF.
FINDING_COMMANDS = ("scan", "check", "diff")
NO_SARIF = "--format sarif is for commands that report findings (scan, check, diff)"


def refuse_sarif(fmt: OutputFormat) -> None:
    """Fail clearly when a command without findings is asked for SARIF."""
    if fmt is OutputFormat.sarif:
        raise UsageError(NO_SARIF)
