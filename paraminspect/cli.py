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

from paraminspect import __version__, check, compare, diff, render, shapes, tree
from paraminspect.errors import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, ParamInspectError, SelectionError
from paraminspect.formats import open_checkpoint
from paraminspect.model import Checkpoint
from paraminspect.names import NameMap
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


# --- diff and check -------------------------------------------------------

StripOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--strip-prefix",
        metavar="PREFIX",
        help="Remove this leading name component(s) first, e.g. 'module.' (DataParallel). Repeatable.",
    ),
]
RenameOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rename",
        metavar="OLD=NEW",
        help="Replace the name prefix OLD by NEW (whole components; empty side strips/adds). Repeatable.",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; only the exit code tells.")]


@app.command("diff")
def diff_command(
    file_a: Annotated[Path, typer.Argument(metavar="A", help="First checkpoint (any supported format).")],
    file_b: Annotated[Path, typer.Argument(metavar="B", help="Second checkpoint (any supported format).")],
    patterns: PatternsArg = None,
    atol: Annotated[
        float, typer.Option("--atol", min=0.0, help="Absolute tolerance: equal if |a-b| <= atol + rtol*|b|.")
    ] = compare.DEFAULT_ATOL,
    rtol: Annotated[float, typer.Option("--rtol", min=0.0, help="Relative tolerance (see --atol).")] = (
        compare.DEFAULT_RTOL
    ),
    equal_nan: Annotated[
        bool,
        typer.Option("--equal-nan/--no-equal-nan", help="Whether NaN equals NaN at the same position."),
    ] = True,
    structure: Annotated[
        bool, typer.Option("--structure", help="Compare names, dtypes and shapes only; read no tensor data.")
    ] = False,
    strip: StripOpt = None,
    rename: RenameOpt = None,
    rename_a: Annotated[
        list[str] | None, typer.Option("--rename-a", metavar="OLD=NEW", help="Like --rename, for A only.")
    ] = None,
    rename_b: Annotated[
        list[str] | None, typer.Option("--rename-b", metavar="OLD=NEW", help="Like --rename, for B only.")
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="List equal names too (JSON always does).")] = False,
    quiet: QuietOpt = False,
    sort: SortOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Compare two checkpoints name by name: exit 0 if equal, 1 if anything differs, 2 on error."""
    a, b = _load(file_a), _load(file_b)
    both = NameMap.from_options(strip or [], rename or [])
    map_a = both + NameMap.from_options(rename=rename_a or [])
    map_b = both + NameMap.from_options(rename=rename_b or [])
    tolerance = compare.Tolerance(atol, rtol, equal_nan)
    selector = Selector(patterns or [], regex=regex)
    rows = diff.compare(
        a, b, tolerance=tolerance, selector=selector, map_a=map_a, map_b=map_b, structure=structure, sort=sort
    )
    verdict = diff.report(a, b, rows, tolerance=tolerance, structure=structure, show_all=show_all)
    if not quiet:
        render.write(render.format_verdict(verdict, fmt))
    return EXIT_OK if verdict.ok else EXIT_DIFFERENT


@app.command("check")
def check_command(
    file: FileArg,
    patterns: PatternsArg = None,
    expect: Annotated[
        Path,
        typer.Option(
            "--expect", metavar="SPEC", help="The expected structure: JSON written by 'paraminspect shapes -f json'."
        ),
    ] = ...,  # type: ignore[assignment]
    allow_extra: Annotated[
        bool, typer.Option("--allow-extra", help="Tensors the spec does not list are allowed (counted, not listed).")
    ] = False,
    max_params: Annotated[
        str | None,
        typer.Option("--max-params", metavar="N", help="Fail if unique parameters exceed N (e.g. 110M, 7B)."),
    ] = None,
    strip: StripOpt = None,
    rename: RenameOpt = None,
    quiet: QuietOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Check a checkpoint against an expected structure: exit 0 if it holds, 1 on drift, 2 on error."""
    budget = check.parse_count(max_params) if max_params is not None else None
    spec = check.load_spec(expect)
    ckpt = _load(file)
    verdict = check.check(
        ckpt,
        spec,
        expect,
        selector=Selector(patterns or [], regex=regex),
        name_map=NameMap.from_options(strip or [], rename or []),
        allow_extra=allow_extra,
        max_params=budget,
    )
    if not quiet:
        render.write(render.format_verdict(verdict, fmt))
    return EXIT_OK if verdict.ok else EXIT_DIFFERENT


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
