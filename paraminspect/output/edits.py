"""What an edit reports: a short summary on stderr, or its JSON document on stdout."""

from __future__ import annotations

import sys
from typing import Any

from paraminspect.output.jsondoc import json_document
from paraminspect.output.outputformat import OutputFormat, refuse_sarif
from paraminspect.output.report import plural
from paraminspect.output.text import human_bytes, safe_text
from paraminspect.output.writing import write

EDIT_SUMMARY_LINES = 20


def format_edit_summary(doc: dict[str, Any]) -> str:
    """The short human summary an edit prints on stderr (``doc``: an edit's JSON document)."""
    lines = []
    for change in doc["changes"][:EDIT_SUMMARY_LINES]:
        text = f"  {change['action']:<9} {safe_text(change['name'])}"
        if change.get("new_name"):
            text += f" -> {safe_text(change['new_name'])}"
        if change.get("detail"):
            text += f"  ({safe_text(change['detail'])})"
        lines.append(text)
    if len(doc["changes"]) > EDIT_SUMMARY_LINES:
        lines.append(f"  ... and {len(doc['changes']) - EDIT_SUMMARY_LINES} more (see --format json)")
    if not doc["changes"]:
        lines.append("  (no tensor changed)")
    lines.extend(f"  note: {safe_text(note)}" for note in doc["notes"])
    what = (
        f"{doc['format']}, {plural(doc['tensors'], 'tensor')}"
        + (f" ({doc['stored_tensors']} stored)" if doc["stored_tensors"] != doc["tensors"] else "")
        + f", {human_bytes(doc['file_bytes'] if doc['file_bytes'] is not None else doc['tensor_bytes'])}"
    )
    if doc["dry_run"]:
        head = f"{doc['command']}: dry run, nothing written; would write {safe_text(doc['output'])} ({what})"
    else:
        head = f"{doc['command']}: wrote {safe_text(doc['output'])} ({what}), verified"
    return "\n".join([head, *lines]) + "\n"


def write_edit(doc: dict[str, Any], fmt: OutputFormat) -> None:
    """JSON goes to stdout for pipelines; every other format gets the summary on stderr."""
    refuse_sarif(fmt)
    if fmt is OutputFormat.json:
        write(json_document(doc))
    else:
        sys.stderr.write(format_edit_summary(doc))
