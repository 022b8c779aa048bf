"""The one door to output: tables, trees, JSON, CSV, markdown, charts.

Commands hand over :mod:`paraminspect.output.report` objects holding exact data;
the renderer picks human units for tables, exact numbers for JSON and CSV,
escapes control characters in names, and colours only a TTY without NO_COLOR.
The work is split by job (``text``: escaping and units; ``tables``; ``trees``;
``values``: ``get``; ``charts``: histograms; ``edits``; ``writing``: stdout and
stderr); commands use the names gathered here.
"""

from __future__ import annotations

from paraminspect.lazy import attributes
from paraminspect.output.colours import Colours
from paraminspect.output.outputformat import FINDING_COMMANDS, NO_SARIF, OutputFormat, refuse_sarif
from paraminspect.output.tables import (
    format_findings,
    format_lines,
    format_table,
    format_verdict,
    spreadsheet_safe,
    summary_line,
)
from paraminspect.output.text import (
    human_bytes,
    human_count,
    message_text,
    meta_text,
    safe_text,
    shape_text,
    value_text,
)
from paraminspect.output.writing import write, write_message

TYPE_CHECKING = False  # not typing's: under mypy the lazy names below are plain imports
if TYPE_CHECKING:
    from paraminspect.output.charts import format_hist
    from paraminspect.output.edits import format_edit_summary, write_edit
    from paraminspect.output.trees import format_modules, format_tree
    from paraminspect.output.values import format_values

# The renderers of trees, values, histograms and edits are imported when first used
# (PEP 562), so a table command does not load them, nor the report types they take.
_LAZY = {
    "format_hist": "charts",
    "format_edit_summary": "edits",
    "write_edit": "edits",
    "format_modules": "trees",
    "format_tree": "trees",
    "format_values": "values",
}

__all__ = [
    "FINDING_COMMANDS",
    "NO_SARIF",
    "Colours",
    "OutputFormat",
    "format_edit_summary",
    "format_findings",
    "format_hist",
    "format_lines",
    "format_modules",
    "format_table",
    "format_tree",
    "format_values",
    "format_verdict",
    "human_bytes",
    "human_count",
    "message_text",
    "meta_text",
    "refuse_sarif",
    "safe_text",
    "shape_text",
    "spreadsheet_safe",
    "summary_line",
    "value_text",
    "write",
    "write_edit",
    "write_message",
]


if not TYPE_CHECKING:  # mypy sees the imports above; an unknown name stays an error to it
    __getattr__ = attributes(globals(), {name: f"paraminspect.output.{home}" for name, home in _LAZY.items()})
