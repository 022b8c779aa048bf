"""Every command's --help renders (typer prints help through rich markup, where a
stray ``[/x]`` in a help string is a crash, not text)."""

from __future__ import annotations

import pytest
import typer

from paraminspect.cli.app import app
from paraminspect.cli.dispatch import COMMAND_MODULES, register_commands
from tests.conftest import run_cli

register_commands([])  # no command named: every command module registers its commands
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_each_command_is_registered_by_the_module_dispatch_imports_for_it() -> None:
    assert set(COMMAND_MODULES) == set(COMMANDS)
    for info in app.registered_commands:
        assert info.callback is not None and info.name is not None
        assert info.callback.__module__ == f"paraminspect.cli.{COMMAND_MODULES[info.name]}", info.name


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
