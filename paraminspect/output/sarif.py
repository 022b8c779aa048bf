"""``--format sarif``: findings of scan, check and diff as a SARIF 2.1.0 log.

Code-scanning viewers (GitHub's among them) group results by rule, so every
kind of finding has a stable rule id here (never renumbered; retired ids are
not reused) with a one-line description and advice. The checkpoint is the
artifact location; the tensor name or pickle record is a logical location.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from paraminspect import __version__
from paraminspect.output.report import Finding

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    level: str  # the default: "error", "warning" or "note"
    description: str
    help: str


_RULES = [
    # scan
    Rule(
        "PI001",
        "unsafe-global",
        "error",
        "A pickle references a global outside the allow-list.",
        "Loading with torch.load(weights_only=False) or pickle would import and may call it. Do not load the file"
        " with pickle; convert a trusted copy to safetensors, or load with torch.load(weights_only=True).",
    ),
    Rule(
        "PI002",
        "ambiguous-archive",
        "error",
        "The zip archive can be read differently by different readers.",
        "torch could load records other than the ones scanned. Rebuild the file from a trusted source.",
    ),
    Rule(
        "PI003",
        "scan-inconclusive",
        "error",
        "The file could not be scanned to the end.",
        "A corrupt record or a limit stopped the scan: the file is not known to be clean. Do not load it.",
    ),
    Rule(
        "PI004",
        "setitem-on-non-dict",
        "error",
        "A pickle writes with SETITEM/SETITEMS into an object that is not a dict.",
        "torch.save never writes this; torch before 2.10 loaded it with weights_only=True (CVE-2026-24747)."
        " Do not load it with torch older than 2.10.",
    ),
    Rule(
        "PI005",
        "storage-size-mismatch",
        "error",
        "A storage's declared size disagrees with the size of its record.",
        "torch.save never writes this; torch before 2.10 did not check it under weights_only=True"
        " (CVE-2026-24747). Do not load it with torch older than 2.10.",
    ),
    Rule(
        "PI006",
        "legacy-protocol-pickle",
        "warning",
        "A pickle in protocol 0 or 1: no PROTO opcode in front.",
        "Scanners that find pickles by their leading PROTO byte (0x80) miss it; torch.save writes protocol 2"
        " unless asked."
        " Treat the file as crafted unless it was saved with pickle_protocol=0 or 1.",
    ),
    # check
    Rule(
        "PI101",
        "tensor-missing",
        "error",
        "A tensor the contract lists is missing.",
        "The checkpoint lacks a tensor the spec or lockfile expects.",
    ),
    Rule(
        "PI102",
        "tensor-unexpected",
        "error",
        "The checkpoint holds a tensor the contract does not list.",
        "Add it to the spec, or pass --allow-extra.",
    ),
    Rule(
        "PI103",
        "dtype-changed",
        "error",
        "A tensor's dtype differs from the contract.",
        "The tensor was cast; re-export it in the expected dtype or update the spec.",
    ),
    Rule(
        "PI104",
        "shape-changed",
        "error",
        "A tensor's shape differs from the contract.",
        "The architecture changed; update the spec if that is intended.",
    ),
    Rule(
        "PI105",
        "content-changed",
        "error",
        "A tensor's content hash differs from the lockfile.",
        "The weights changed since the lockfile was written ('paraminspect hash -f json').",
    ),
    Rule(
        "PI106",
        "params-over-budget",
        "error",
        "The unique parameter count exceeds --max-params.",
        "The model grew past its budget.",
    ),
    Rule(
        "PI107",
        "inconsistent-index",
        "error",
        "A sharded index disagrees with its shards (a listed tensor missing, an unlisted one, its totals).",
        "The index was edited by hand or the shards were replaced; write it again with save_pretrained.",
    ),
    Rule("PI111", "not-finite", "error", "A tensor holds NaN or Inf.", "Training diverged or the file is corrupt."),
    Rule(
        "PI112",
        "over-max-abs",
        "error",
        "A tensor holds a value larger than --max-abs.",
        "Overflow or corruption; real weights rarely exceed 1e3.",
    ),
    Rule(
        "PI113",
        "all-zero",
        "error",
        "A tensor is zero everywhere.",
        "A layer training never touched, or a shard lost on saving.",
    ),
    Rule(
        "PI114", "constant", "error", "Every element of a tensor is equal.", "A tensor left at its initial fill value."
    ),
    Rule("PI115", "dtype-rule", "error", "A tensor's dtype breaks a --dtype rule.", "Cast it, or fix the rule."),
    # diff
    Rule("PI201", "only-in-a", "warning", "A name is only in the first file.", "It was removed or renamed."),
    Rule("PI202", "only-in-b", "warning", "A name is only in the second file.", "It was added or renamed."),
    Rule("PI203", "dtype-changed", "warning", "A name's dtype differs between the files.", "It was cast."),
    Rule("PI204", "shape-changed", "warning", "A name's shape differs between the files.", "The layer changed."),
    Rule(
        "PI205",
        "values-changed",
        "warning",
        "A tensor's values differ beyond the tolerance.",
        "The weights changed (see max abs diff).",
    ),
]
RULES = {rule.id: rule for rule in _RULES}
_INDEX = {rule.id: position for position, rule in enumerate(_RULES)}


def artifact_uri(path: str) -> str:
    """A relative or absolute path as a URI reference (``%`` and spaces escaped)."""
    posix = PurePath(path).as_posix()
    uri = quote(posix, safe="/:@!$&'()*+,;=-._~")
    return "file://" + uri if posix.startswith("/") else uri


def _result(finding: Finding) -> dict[str, Any]:
    rule = RULES[finding.rule]
    location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": artifact_uri(finding.file)}}}
    if finding.name is not None:
        location["logicalLocations"] = [{"fullyQualifiedName": finding.name, "kind": "member"}]
    return {
        "ruleId": rule.id,
        "ruleIndex": _INDEX[rule.id],
        "level": finding.level or rule.level,
        "message": {"text": finding.message},
        "locations": [location],
    }


def _descriptor(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.description},
        "help": {"text": rule.help},
        "defaultConfiguration": {"level": rule.level},
    }


def log(findings: list[Finding], *, complete: bool = True) -> dict[str, Any]:
    """The SARIF log: one run of paraminspect, every rule described, one result per finding.

    ``complete=False`` (a scan that could not finish) marks the invocation unsuccessful.
    """
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "paraminspect",
                        "version": __version__,
                        "rules": [_descriptor(rule) for rule in _RULES],
                    }
                },
                "invocations": [{"executionSuccessful": complete}],
                "results": [_result(f) for f in findings],
            }
        ],
    }
