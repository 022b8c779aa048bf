"""The command line: parse arguments, call the core, hand the result to render.

No format logic and no output formatting lives here; this is the only module
that imports typer.
"""

from __future__ import annotations

import contextvars
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from paraminspect import __version__, limits, render, scan, shapes, tree
from paraminspect.errors import EXIT_ERROR, EXIT_OK, ParamInspectError, SelectionError
from paraminspect.formats import open_checkpoint
from paraminspect.model import Checkpoint
from paraminspect.render import OutputFormat
from paraminspect.select import Selector

app = typer.Typer(
    name="paraminspect",
    help="Inspect, compare and edit saved model checkpoints (.pt/.pth/.bin and .safetensors) without torch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# One declaration of each shared option, used by every command (sqlite-utils style).
FileArg = Annotated[Path, typer.Argument(help="Checkpoint file (.pt/.pth/.bin/.safetensors; detected by content).")]
PatternsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Names to select: globs ('*.weight'), exact names or subtree prefixes ('0.block 1')."),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
RegexOpt = Annotated[bool, typer.Option("--regex", "-e", help="Treat PATTERNs as regular expressions.")]
SortOpt = Annotated[
    bool, typer.Option("--sort", help="Natural sort (layers.2 before layers.10) instead of file order.")
]


def _load(path: Path) -> Checkpoint:
    return open_checkpoint(path)


def _selector(ckpt: Checkpoint, patterns: list[str] | None, regex: bool) -> Selector:
    """Build a selector and fail (exit 2) when a pattern matches nothing at all."""
    selector = Selector(patterns or [], regex=regex)
    missing = selector.unmatched(ckpt.entries)
    if missing:
        raise SelectionError(f"no name matches {missing[0]!r}", ckpt.path)
    return selector


def _version(value: bool) -> None:
    if value:
        render.write(f"paraminspect {__version__}\n")
        raise typer.Exit()


_LIMIT_HELP = "Limits against hostile files"
_DEFAULT = limits.DEFAULT_LIMITS


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    max_entries: Annotated[
        int,
        typer.Option(
            min=1, help="Most names (tensors and other leaves) a file may expand to.", rich_help_panel=_LIMIT_HELP
        ),
    ] = _DEFAULT.max_entries,
    max_depth: Annotated[
        int, typer.Option(min=1, help="Deepest nesting of the saved object.", rich_help_panel=_LIMIT_HELP)
    ] = _DEFAULT.max_depth,
    max_pickle_bytes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Largest pickle (data.pkl) read, and most memory its objects may take (estimated).",
            rich_help_panel=_LIMIT_HELP,
        ),
    ] = _DEFAULT.max_pickle_bytes,
    max_numel: Annotated[
        int,
        typer.Option(
            min=1, help="Most elements all tensors of a file may claim in total.", rich_help_panel=_LIMIT_HELP
        ),
    ] = _DEFAULT.max_numel,
) -> None:
    """Inspect, compare and edit saved model checkpoints without torch."""
    # Global options, so every command (and every file a command opens) gets them.
    limits.set_current(
        limits.Limits(
            max_entries=max_entries, max_depth=max_depth, max_pickle_bytes=max_pickle_bytes, max_numel=max_numel
        )
    )


@app.command("tree")
def tree_command(
    file: FileArg,
    patterns: PatternsArg = None,
    depth: Annotated[int | None, typer.Option("--depth", "-d", min=1, help="Fold levels deeper than N.")] = None,
    sort: SortOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Show the name hierarchy with per-subtree parameter counts and sizes."""
    ckpt = _load(file)
    report = tree.report(ckpt, selector=_selector(ckpt, patterns, regex), depth=depth, sort=sort)
    render.write(render.format_tree(report, fmt, render.Colours(sys.stdout)))
    return EXIT_OK


@app.command("shapes")
def shapes_command(
    file: FileArg,
    patterns: PatternsArg = None,
    sort: SortOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """List every tensor: name, dtype, shape, element count and bytes, with a total."""
    ckpt = _load(file)
    table = shapes.report(ckpt, _selector(ckpt, patterns, regex), sort=sort)
    render.write(render.format_table(table, fmt))
    return EXIT_OK


# --- scan (issue 7) ---------------------------------------------------------


@app.command("scan")
def scan_command(
    files: Annotated[list[Path], typer.Argument(help="Checkpoint files to analyse (nothing in them is run).")],
    unsafe_only: Annotated[
        bool, typer.Option("--unsafe-only", help="List only references outside the allow-list.")
    ] = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """List every pickle global and persistent id each file references, and which are allowed.

    Exit 1 if any file references a global outside the allow-list, 2 if a file cannot be read.
    """
    result = scan.report(files, unsafe_only=unsafe_only)
    render.write(render.format_table(result.table, fmt))
    for item in result.scans:
        if item.error is not None:
            render.write_message(f"paraminspect: error: {item.error}")
    if result.unsafe_files:
        count = f"{result.unsafe_files} of {len(files)} file(s)"
        render.write_message(f"paraminspect: scan: {count} reference globals outside the allow-list")
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map every expected failure to one stderr line and an exit code."""
    command = typer.main.get_command(app)
    try:
        # A fresh context: limits set by the global options do not outlive this call.
        context = contextvars.copy_context()
        result = context.run(command.main, args=argv, prog_name="paraminspect", standalone_mode=False)
        sys.stdout.flush()
        return result if isinstance(result, int) else EXIT_OK
    except ParamInspectError as exc:
        render.write_message(f"paraminspect: error: {exc}")
        return exc.exit_code
    except typer.TyperException as exc:
        render.write_message(f"paraminspect: error: {exc.format_message()} (see 'paraminspect --help')")
        return EXIT_ERROR if exc.exit_code in {1, 2} else exc.exit_code
    except typer.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): that is success. Point stdout at devnull
        # so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
