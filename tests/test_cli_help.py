"""Every command's --help renders (typer prints help through rich markup, where a
stray ``[/x]`` in a help string is a crash, not text)."""

from __future__ import annotations

import pytest
import typer

import paraminspect.cli.dispatch  # noqa: F401  (registers every command on the app)
from paraminspect.cli.app import app
from tests.conftest import run_cli

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_the_command_list_is_complete() -> None:
    assert {"tree", "shapes", "meta", "get", "stats", "hash", "diff", "check", "lora", "scan"} <= set(COMMANDS)
    assert {"set", "init", "rename", "drop", "extract", "cast", "convert", "set-meta", "rm-meta"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_renders(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.code == 0, result.err
    assert "Usage: paraminspect " + command in " ".join(result.out.split())


def test_top_level_help_renders() -> None:
    result = run_cli("--help")
    assert result.code == 0, result.err
    assert all(command in result.out for command in COMMANDS)
