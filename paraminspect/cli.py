"""The command line: parse arguments, call the core, hand the result to render.

No format logic and no output formatting lives here; this is the only module
that imports typer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from paraminspect import __version__, modules, render, roots, shapes, sizes, tree
from paraminspect.errors import EXIT_ERROR, EXIT_OK, ParamInspectError, SelectionError, UsageError
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
FileArg = Annotated[
    Path,
    typer.Argument(
        help="Checkpoint file (.pt/.pth/.bin/.ckpt/.safetensors, detected by content), "
        "a sharded model's *.index.json or directory, or a DCP directory."
    ),
]
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


# --root: shared by every command that works on a state dict. To adopt it, add
# ``root: RootOpt = None`` to the command and load with ``_load_state_dict(file, root)``.
RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root",
        metavar="KEY",
        help="Work on the state dict under this dotted key (e.g. state_dict, model). "
        "Default: the one obvious state dict, if there is exactly one. --root '' uses the whole file.",
    ),
]


def _load_state_dict(path: Path, root: str | None, *, auto: bool = True) -> Checkpoint:
    """Open a file and cut out the state dict commands should work on (noted on stderr)."""
    ckpt, note = roots.select(open_checkpoint(path), root, auto=auto)
    if note:
        render.write_message(f"paraminspect: note: {ckpt.path}: {note}")
    return ckpt


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
    root: RootOpt = None,
    show_modules: Annotated[
        bool,
        typer.Option("--modules", help="Show layer kinds like print(model) (Linear, Conv2d, ...)."),
    ] = False,
) -> int:
    """Show the name hierarchy with per-subtree parameter counts and sizes."""
    # The whole object by default; --modules is a view of the model, so it picks the state dict.
    ckpt = _load_state_dict(file, root, auto=show_modules)
    if show_modules:
        if patterns and (len(patterns) > 1 or regex):
            raise UsageError("--modules takes at most one prefix (a group such as 'encoder.layers.0')")
        _selector(ckpt, patterns, regex)  # a clear error for a prefix that matches nothing
        selected = ckpt.subtree(patterns[0]) if patterns else ckpt
        render.write(render.format_modules(modules.report(selected, sort=sort), fmt))
        return EXIT_OK
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
    root: RootOpt = None,
    by_prefix: Annotated[
        int | None,
        typer.Option(
            "--by-prefix",
            metavar="DEPTH",
            min=1,
            help="Sum tensors per name prefix of DEPTH parts, like du (whole file unless --root is given).",
        ),
    ] = None,
) -> int:
    """List every tensor: name, dtype, shape, element count and bytes, with a total."""
    # --by-prefix answers "what fills this file", so it sees the optimizer too.
    ckpt = _load_state_dict(file, root, auto=by_prefix is None)
    if by_prefix is not None:
        table = sizes.report(ckpt, _selector(ckpt, patterns, regex), by_prefix, sort=sort)
    else:
        table = shapes.report(ckpt, _selector(ckpt, patterns, regex), sort=sort)
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
