"""The command line: parse arguments, call the core, hand the result to render.

No format logic and no output formatting lives here; this package is the only
place that imports typer. The commands live in ``inspecting``, ``comparing``
and ``editing``; ``dispatch`` maps every outcome to an exit code.

This module stays tiny so that :func:`run` installs the signal handlers
before anything slow is imported: a Ctrl-C during start-up is then exit 130
with one line, never a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing here would widen the window before run()
if TYPE_CHECKING:
    from typing import Any

    from paraminspect.cli.app import app

__all__ = ["app", "main", "run"]


def run() -> None:
    """Console-script entry point (and ``python -m paraminspect``).

    The garbage collector is kept out of start-up: importing typer and the package
    makes some 20,000 objects that live until exit, and collections walking them cost
    a header-only command ~15 ms while it starts and ~30 ms more in the interpreter's
    final collections. So collection is off while importing; then everything made so
    far is frozen (gc.freeze: never walked again) and collection is back on for the
    command's own objects; at the end those are frozen too, before the process exits.
    """
    import gc

    from paraminspect import interrupts

    gc.disable()
    interrupts.install()
    try:
        from paraminspect.cli.dispatch import main as dispatch_main
    except (KeyboardInterrupt, interrupts.Terminated) as exc:  # interrupted while importing
        signum = interrupts.signal_of(exc) or 2
        print(f"paraminspect: {interrupts.describe(signum)}", file=sys.stderr)
        interrupts.leave(interrupts.exit_code(signum))
        return
    gc.freeze()
    gc.enable()
    code = dispatch_main()
    gc.freeze()
    interrupts.leave(code)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from paraminspect import interrupts
    from paraminspect.cli.dispatch import main as dispatch_main

    with interrupts.installed():  # Ctrl-C as in the console script while the command runs
        return dispatch_main(argv)


def __getattr__(name: str) -> Any:
    if name == "app":
        from paraminspect.cli.app import app
        from paraminspect.cli.dispatch import register_commands

        register_commands([])  # the whole app: every command registered
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
