"""Run one command and turn whatever happens into one stderr line and an exit code.

0 success, 1 differences / check failed / unsafe (the commands return it),
2 usage error or unreadable input (a ParamInspectError), 3 an internal error
(a bug: one line asking for a report; ``PARAMINSPECT_DEBUG=1`` adds the
traceback), 128 + N for signal N (130 Ctrl-C, 143 SIGTERM). A crash is never
exit 1, which scripts read as "differences found".
"""

import contextlib
import contextvars
import copy
import importlib
import os
import sys
import traceback

import typer

from paraminspect import interrupts
from paraminspect.cli.app import VERBOSITY, app, show_progress
from paraminspect.errors import EXIT_ERROR, EXIT_INTERNAL, EXIT_OK, ParamInspectError
from paraminspect.io import progress
from paraminspect.io import source as input_files
from paraminspect.output import render

# Help lists commands in the order a user meets them: look, compare, scan, edit.
_ORDER = ["tree", "shapes", "meta", "get", "stats", "hist", "hash", "diff", "check", "lora", "scan"]
_ORDER += ["set", "init", "rename", "drop", "extract", "cast", "convert", "set-meta", "rm-meta"]
# The module whose import registers each command. A run imports the modules of the command
# names among its arguments, or all of them when it names none (``--help``, a typo): so
# ``shapes`` does not load the diff, check and edit commands' options and their imports.
_INSPECTING = ["tree", "shapes", "meta", "get", "stats", "hist", "hash", "lora", "scan"]
COMMAND_MODULES = dict.fromkeys(_INSPECTING, "inspecting")
COMMAND_MODULES |= {"diff": "comparing", "check": "comparing"}
COMMAND_MODULES |= {name: "editing" for name in _ORDER if name not in COMMAND_MODULES}


def register_commands(argv: list[str]) -> None:
    """Import the command modules ``argv`` may run (each registers its commands with ``app``)."""
    wanted = {COMMAND_MODULES[arg] for arg in argv if arg in COMMAND_MODULES} or set(COMMAND_MODULES.values())
    for module in sorted(wanted):
        importlib.import_module(f"paraminspect.cli.{module}")
    app.registered_commands.sort(key=lambda info: _ORDER.index(info.name or ""))


# The global options (app._root) a command name may follow: those taking a value, and flags.
# Anything else before the command name (-h, a typo, combined short flags) builds the whole app.
GLOBAL_VALUE_OPTIONS = frozenset(
    f"--max-{name}" for name in ("entries", "depth", "pickle-bytes", "numel", "globals", "pickle-opcodes", "elements")
)
GLOBAL_FLAGS = frozenset({"--allow-full-download", "--verbose", "-v", "--no-progress"})


def invoked_command(argv: list[str]) -> str | None:
    """The command ``argv`` runs, when only known global options come before its name
    (none of them --help or --version); else None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in COMMAND_MODULES:
            return arg
        option, has_value, _ = arg.partition("=")
        if option in GLOBAL_VALUE_OPTIONS:
            i += 1 if has_value else 2
        elif arg in GLOBAL_FLAGS:
            i += 1
        else:
            return None
    return None


def app_for(argv: list[str]) -> typer.Typer:
    """The app ``argv`` needs: only the command it runs (the click command of each other
    one, options and all, is never built), or every registered command when that is unclear."""
    name = invoked_command(argv)
    if name is None:
        return app
    view = copy.copy(app)  # shallow: the callback and settings are app's own
    view.registered_commands = [info for info in app.registered_commands if info.name == name]
    return view


DEBUG_VARIABLE = "PARAMINSPECT_DEBUG"
_INTERRUPTED = interrupts.exit_code(2)  # what typer returns for a KeyboardInterrupt inside a command


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map every failure to one stderr line and an exit code."""
    try:
        code, message = _run(argv)
    except BaseException as exc:  # every outcome gets an exit code and one line
        code, message = _failure(exc)
    signum = interrupts.received()
    if signum is not None:
        # Interrupted: report that, whatever error the interrupted code turned it into.
        code, message = interrupts.exit_code(signum), f"paraminspect: {interrupts.describe(signum)}"
    elif code == _INTERRUPTED and message is None:
        message = "paraminspect: interrupted"
    if message is not None:
        with contextlib.suppress(OSError, ValueError):  # stderr closed: the code still tells
            render.write_message(message)
    return code


def _run(argv: list[str] | None) -> tuple[int, str | None]:
    args = sys.argv[1:] if argv is None else argv
    register_commands(args)
    command = typer.main.get_command(app_for(args))
    # A fresh context: limits set by the global options do not outlive this call.
    context = contextvars.copy_context()
    input_files.COST.reset()
    progress.SHOW = show_progress  # global --no-progress and diff/check --quiet take it away
    with input_files.collecting() as opened:  # held open until checked
        try:
            result = context.run(command.main, args=argv, prog_name="paraminspect", standalone_mode=False)
            sys.stdout.flush()
            input_files.check_read(opened)  # a file that changed under a command: its output is not to be trusted
        finally:
            progress.SHOW = None
            _report_cost()
    return (result if isinstance(result, int) else EXIT_OK), None


def _report_cost() -> None:
    """``--verbose``: what remote reads cost, one line on stderr (nothing for local files)."""
    cost = input_files.COST.as_dict()
    if VERBOSITY.verbose and cost["requests"]:
        with contextlib.suppress(OSError, ValueError):
            render.write_message(
                f"paraminspect: remote: {cost['requests']:,} requests, {cost['bytes']:,} bytes fetched"
            )
    VERBOSITY.verbose = False


def _interrupting_signal(exc: BaseException) -> int | None:
    """The signal behind ``exc``: its own, or one whose exception some code turned into another
    error while handling it (a KeyboardInterrupt inside a lock's release is re-raised as
    "RuntimeError: release unlocked lock"). The interruption is what the user did."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        signum = interrupts.signal_of(current)
        if signum is not None:
            return signum
        current = current.__cause__ or current.__context__
    return None


def _failure(exc: BaseException) -> tuple[int, str | None]:
    if isinstance(exc, ParamInspectError):
        return exc.exit_code, f"paraminspect: error: {exc}"
    signum = _interrupting_signal(exc)
    if signum is not None:
        return interrupts.exit_code(signum), f"paraminspect: {interrupts.describe(signum)}"
    if isinstance(exc, typer.Abort):
        return _INTERRUPTED, "paraminspect: interrupted"
    if isinstance(exc, BrokenPipeError | SystemExit):
        # typer turns a pipe closed while a command writes (streamed output:
        # get --full, JSON/CSV) into exit 1; here it is success like any other.
        if isinstance(exc, SystemExit) and not isinstance(exc.__context__, BrokenPipeError):
            if exc.code is None or isinstance(exc.code, int):
                return exc.code or EXIT_OK, None
            return EXIT_ERROR, f"paraminspect: error: {exc.code}"
        # The reader went away (| head): that is success. Point stdout at devnull
        # so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK, None
    if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
        # Usage errors from the argument parser (click's, or the copy typer vendors).
        return EXIT_ERROR, f"paraminspect: error: {exc.format_message()} (see 'paraminspect --help')"
    if isinstance(exc, MemoryError):
        return EXIT_ERROR, "paraminspect: error: out of memory (the --max-* limits bound what a file may ask for)"
    return EXIT_INTERNAL, _internal(exc)


def _internal(exc: BaseException) -> str:
    """A bug: one line asking for a report (the traceback on request)."""
    if os.environ.get(DEBUG_VARIABLE):
        traceback.print_exception(exc, file=sys.stderr)
    try:
        text = next(iter(str(exc).splitlines()), "")
    except Exception:  # a message that cannot be made is no reason to crash
        text = ""
    detail = render.safe_text(f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__)
    hint = "" if os.environ.get(DEBUG_VARIABLE) else f"; {DEBUG_VARIABLE}=1 shows the traceback"
    return f"paraminspect: internal error ({detail}); please report it with the command that caused it{hint}"
