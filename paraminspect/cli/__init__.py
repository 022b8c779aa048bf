"""The command line: parse arguments, call the core, hand the result to render.

No format logic and no output formatting lives here; this package is the only
place that imports typer. The commands live in ``inspecting``, ``comparing``
and ``editing``.
"""

import contextvars
import os
import sys

import typer

from paraminspect import render
from paraminspect import source as input_files
from paraminspect.cli import comparing, editing, inspecting  # noqa: F401  (importing registers the commands)
from paraminspect.cli.app import app
from paraminspect.errors import EXIT_ERROR, EXIT_OK, ParamInspectError

__all__ = ["app", "main", "run"]

# Help lists commands in the order a user meets them: look, compare, scan, edit.
_ORDER = ["tree", "shapes", "get", "stats", "diff", "check", "scan"]
_ORDER += ["set", "init", "rename", "drop", "extract", "cast", "convert"]
app.registered_commands.sort(key=lambda info: _ORDER.index(info.name or ""))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map every expected failure to one stderr line and an exit code."""
    command = typer.main.get_command(app)
    try:
        # A fresh context: limits set by the global options do not outlive this call.
        context = contextvars.copy_context()
        with input_files.collecting() as opened:  # held open until checked
            result = context.run(command.main, args=argv, prog_name="paraminspect", standalone_mode=False)
            sys.stdout.flush()
            input_files.check_read(opened)  # a file that changed under a command: its output is not to be trusted
        return result if isinstance(result, int) else EXIT_OK
    except ParamInspectError as exc:
        render.write_message(f"paraminspect: error: {exc}")
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except (BrokenPipeError, SystemExit) as exc:
        # typer turns a pipe closed while a command writes (streamed output:
        # get --full, JSON/CSV) into exit 1; here it is success like any other.
        if isinstance(exc, SystemExit) and not isinstance(exc.__context__, BrokenPipeError):
            raise
        # The reader went away (| head): that is success. Point stdout at devnull
        # so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # Usage errors from the argument parser (click's, or the copy typer
        # vendors in newer releases) carry these two attributes.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        render.write_message(f"paraminspect: error: {exc.format_message()} (see 'paraminspect --help')")
        return EXIT_ERROR


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
