"""``--format sarif`` for scan, check and diff, validated against the SARIF 2.1.0
JSON schema (tests/data/sarif, with its provenance); other commands refuse it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from jsonschema import Draft4Validator

from paraminspect.output.sarif import RULES
from tests.conftest import ROOT, SAMPLES, run_cli, run_script

SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif" / "sarif-2.1.0.json").read_text())


def _sarif(*args: str | Path) -> tuple[int, dict[str, Any]]:
    result = run_cli(*args, "--format", "sarif")
    log = json.loads(result.out)
    Draft4Validator(SCHEMA).validate(log)  # raises with the path of the first violation
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert (log["version"], driver["name"]) == ("2.1.0", "paraminspect")
    for item in run["results"]:  # each result points at its rule by id and by index
        assert driver["rules"][item["ruleIndex"]]["id"] == item["ruleId"]
    return result.code, run


def _uri(path: Path) -> str:
    return "file://" + str(path)  # absolute paths become file URIs (these need no escaping)


def _results(run: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    out = []
    for item in run["results"]:
        (location,) = item["locations"]
        logical = location.get("logicalLocations", [{}])[0].get("fullyQualifiedName")
        out.append((item["ruleId"], location["physicalLocation"]["artifactLocation"]["uri"], logical))
    return out


def test_schema_rejects_a_broken_log() -> None:
    """The validator really checks: a log without a tool driver is refused."""
    with pytest.raises(Exception, match="driver"):
        Draft4Validator(SCHEMA).validate({"version": "2.1.0", "runs": [{"tool": {}, "results": []}]})


def test_scan_unsafe_global_and_unfinished_scan(tmp_path: Path) -> None:
    code, run = _sarif("scan", SAMPLES / "trainer_checkpoint.pt", SAMPLES / "mlp.safetensors")
    assert code == 1 and run["invocations"] == [{"executionSuccessful": True}]
    assert _results(run) == [("PI001", _uri(SAMPLES / "trainer_checkpoint.pt"), "trainer_checkpoint/data.pkl")]
    assert "argparse.Namespace" in run["results"][0]["message"]["text"]
    (tmp_path / "cut.pt").write_bytes((SAMPLES / "mlp.pt").read_bytes()[:300])
    code, run = _sarif("scan", tmp_path / "cut.pt")
    assert code == 2 and run["invocations"] == [{"executionSuccessful": False}]
    assert [r[0] for r in _results(run)] == ["PI003"] and run["results"][0]["level"] == "error"


def test_check_drift_and_policy_violations(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(run_cli("shapes", SAMPLES / "mlp.pt", "-f", "json").out)
    state = torch.load(SAMPLES / "mlp.pt", weights_only=True)
    state["0.weight"] = state["0.weight"].half()
    state["0.bias"] = torch.full((8,), float("nan"))
    del state["2.bias"]
    torch.save(state, tmp_path / "bad.pt")
    code, run = _sarif("check", tmp_path / "bad.pt", "--expect", spec, "--finite", "--max-params", "10")
    file = tmp_path / "bad.pt"
    assert code == 1
    assert sorted(_results(run)) == sorted(
        [
            ("PI103", _uri(file), "0.weight"),
            ("PI101", _uri(file), "2.bias"),
            ("PI111", _uri(file), "0.bias"),
            ("PI106", _uri(file), None),
        ]
    )
    code, run = _sarif("check", SAMPLES / "mlp.pt", "--expect", spec)
    assert (code, run["results"]) == (0, [])


def test_diff_findings_point_at_the_file_holding_the_name(tmp_path: Path) -> None:
    code, run = _sarif("diff", SAMPLES / "mlp.pt", SAMPLES / "tied.pt")
    assert code == 1
    found = _results(run)
    assert ("PI205", _uri(SAMPLES / "tied.pt"), "0.weight") in found
    assert ("PI204", _uri(SAMPLES / "tied.pt"), "2.weight") in found
    assert ("PI202", _uri(SAMPLES / "tied.pt"), "6.bias") in found
    assert {item["level"] for item in run["results"]} == {"warning"}
    code, run = _sarif("diff", SAMPLES / "tied.pt", SAMPLES / "mlp.pt")
    assert ("PI201", _uri(SAMPLES / "tied.pt"), "6.bias") in _results(run)
    code, run = _sarif("diff", SAMPLES / "mlp.pt", SAMPLES / "mlp.safetensors")
    assert (code, run["results"]) == (0, [])


@pytest.mark.parametrize(
    "args",
    [
        ("tree", SAMPLES / "mlp.pt"),
        ("shapes", SAMPLES / "mlp.pt"),
        ("get", SAMPLES / "mlp.pt", "0.bias"),
        ("stats", SAMPLES / "mlp.pt"),
        ("hash", SAMPLES / "mlp.pt"),
        ("cast", SAMPLES / "mlp.pt", "--dtype", "float16", "-o", "/nonexistent/x.pt"),
    ],
)
def test_commands_without_findings_refuse_sarif(args: tuple[str | Path, ...]) -> None:
    result = run_cli(*args, "--format", "sarif")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "paraminspect: error: --format sarif is for commands that report findings (scan, check, diff)\n"
    )


def test_rule_ids_are_stable() -> None:
    """Code scanning tracks findings by rule id: an id never changes meaning."""
    assert {rule.id: rule.name for rule in RULES.values()} == {
        "PI001": "unsafe-global",
        "PI002": "ambiguous-archive",
        "PI003": "scan-inconclusive",
        "PI004": "setitem-on-non-dict",
        "PI005": "storage-size-mismatch",
        "PI006": "legacy-protocol-pickle",
        "PI101": "tensor-missing",
        "PI102": "tensor-unexpected",
        "PI103": "dtype-changed",
        "PI104": "shape-changed",
        "PI105": "content-changed",
        "PI106": "params-over-budget",
        "PI107": "inconsistent-index",
        "PI111": "not-finite",
        "PI112": "over-max-abs",
        "PI113": "all-zero",
        "PI114": "constant",
        "PI115": "dtype-rule",
        "PI201": "only-in-a",
        "PI202": "only-in-b",
        "PI203": "dtype-changed",
        "PI204": "shape-changed",
        "PI205": "values-changed",
    }
    assert run_script("scan", SAMPLES / "mlp.pt", "-f", "sarif").returncode == 0


def test_artifact_uris_escape_what_a_uri_cannot_hold() -> None:
    from paraminspect.output.sarif import artifact_uri

    assert artifact_uri("dir with space/a%b#1.pt") == "dir%20with%20space/a%25b%231.pt"
    assert artifact_uri("/abs/m.pt") == "file:///abs/m.pt"
