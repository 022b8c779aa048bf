"""The command line: parse arguments, call the core, hand the result to render.

No format logic and no output formatting lives here; this is the only module
that imports typer.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from paraminspect import __version__, printing, render, shapes, stats, tree, values
from paraminspect.errors import EXIT_ERROR, EXIT_OK, ParamInspectError, SelectionError
from paraminspect.formats import open_checkpoint
from paraminspect.model import Checkpoint
from paraminspect.render import OutputFormat
from paraminspect.select import Selector, is_index_form, resolve_index_form, suggestions

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
    """Build a selector and fail (exit 2) when a pattern matches nothing at all.

    Index-form patterns (``[0][1][0].bias``) are first resolved to the dotted
    name they denote; an unmatched pattern is reported with the closest names.
    """
    given = list(patterns or [])
    resolved = given if regex else [_resolve(ckpt, p) for p in given]
    selector = Selector(resolved, regex=regex)
    missing = selector.unmatched(ckpt.entries)
    if missing:
        pattern = given[resolved.index(missing[0])]
        close = [] if regex else suggestions(missing[0], ckpt.entries)
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
        raise SelectionError(f"no name matches {pattern!r}{hint}", ckpt.path)
    return selector


def _resolve(ckpt: Checkpoint, pattern: str) -> str:
    if not is_index_form(pattern):
        return pattern
    try:
        return resolve_index_form(pattern, tree.ordered_names(ckpt))
    except SelectionError as exc:
        raise SelectionError(exc.message, ckpt.path) from None


def _version(value: bool) -> None:
    if value:
        render.write(f"paraminspect {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Inspect, compare and edit saved model checkpoints without torch."""


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


# --- values: get and stats -------------------------------------------------


@app.command("get")
def get_command(
    file: FileArg,
    names: Annotated[
        list[str],
        typer.Argument(
            help="Names: exact ('2.bias'), subtree prefix ('0.block 1'), glob, or index form ('[0][1][0].bias')."
        ),
    ],
    full: Annotated[bool, typer.Option("--full", help="Print every value instead of summarising with '...'.")] = False,
    precision: Annotated[
        int, typer.Option("--precision", "-p", min=0, max=30, help="Digits after the decimal point.")
    ] = 4,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Print values the way torch prints them (JSON/CSV: every value, exact)."""
    ckpt = _load(file)
    resolved = _selector(ckpt, names, regex).patterns  # index form resolved; unknown names fail here
    options = printing.PrintOptions(precision=precision, threshold=math.inf if full else 1000)
    stream = fmt in (OutputFormat.json, OutputFormat.csv)  # every value, read chunk by chunk
    names = values.selected_names(ckpt, resolved, regex=regex)
    report = values.report(ckpt, names, options, every_value=full, stream=stream)
    for piece in render.format_values(report, fmt, render.Colours(sys.stdout)):
        render.write(piece)
    return EXIT_OK


@app.command("stats")
def stats_command(
    file: FileArg,
    patterns: PatternsArg = None,
    by_prefix: Annotated[
        int | None,
        typer.Option("--by-prefix", min=1, metavar="DEPTH", help="One row per subtree of the first DEPTH name parts."),
    ] = None,
    sort: SortOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Per tensor: min, max, mean, std (n-1), mean |x|, L2 norm, NaN/Inf/zero counts; and a total."""
    ckpt = _load(file)
    table = stats.report(ckpt, _selector(ckpt, patterns, regex), by_prefix=by_prefix, sort=sort)
    for name in table.document["skipped"]:
        render.write_message(f"paraminspect: warning: {name}: cannot decode {ckpt.tensors[name].dtype} values; skipped")
    render.write(render.format_table(table, fmt))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map every expected failure to one stderr line and an exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="paraminspect", standalone_mode=False)
        sys.stdout.flush()
        return result if isinstance(result, int) else EXIT_OK
    except ParamInspectError as exc:
        render.write_message(f"paraminspect: error: {exc}")
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except Exception as exc:
        # Usage errors from the argument parser (click's, or the copy typer
        # vendors in newer releases) carry these two attributes.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        render.write_message(f"paraminspect: error: {exc.format_message()} (see 'paraminspect --help')")
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (| head): that is success. Point stdout at devnull
        # so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
