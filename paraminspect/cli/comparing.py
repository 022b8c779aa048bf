"""Comparison commands: diff and check."""

from pathlib import Path
from typing import Annotated

import typer

from paraminspect.cli.app import FileArg, FormatOpt, PatternsArg, RegexOpt, RootOpt, SortOpt, app, resolved_patterns
from paraminspect.compare.tolerance import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from paraminspect.errors import EXIT_DIFFERENT, EXIT_OK
from paraminspect.formats.opening import open_checkpoint
from paraminspect.io import source as input_files
from paraminspect.io import url
from paraminspect.model import Checkpoint
from paraminspect.naming import roots
from paraminspect.naming.prefixes import NameMap
from paraminspect.naming.select import Selector
from paraminspect.output import render
from paraminspect.output.render import OutputFormat

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


def _load_all(sides: list[tuple[Path, str | None]], quiet: bool) -> list[Checkpoint]:
    """Like ``_load_state_dict`` for each file, but the root notes are printed only
    once every file opened (a failure stays a single stderr line) and never with --quiet."""
    loaded = [roots.select(open_checkpoint(path), root) for path, root in sides]
    for ckpt, note in loaded:
        if note and not quiet:
            render.write_message(f"paraminspect: note: {ckpt.path}: {note}")
    return [ckpt for ckpt, _ in loaded]


@app.command("diff")
def diff_command(
    file_a: Annotated[
        Path, typer.Argument(metavar="A", parser=url.to_path, help="First checkpoint (any supported format, or a URL).")
    ],
    file_b: Annotated[
        Path,
        typer.Argument(metavar="B", parser=url.to_path, help="Second checkpoint (any supported format, or a URL)."),
    ],
    patterns: PatternsArg = None,
    atol: Annotated[
        float, typer.Option("--atol", min=0.0, help="Absolute tolerance: equal if |a-b| <= atol + rtol*|b|.")
    ] = DEFAULT_ATOL,
    rtol: Annotated[float, typer.Option("--rtol", min=0.0, help="Relative tolerance (see --atol).")] = (DEFAULT_RTOL),
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
    root: RootOpt = None,
    root_a: Annotated[str | None, typer.Option("--root-a", metavar="KEY", help="Like --root, for A only.")] = None,
    root_b: Annotated[str | None, typer.Option("--root-b", metavar="KEY", help="Like --root, for B only.")] = None,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="List equal names too (JSON always does).")] = False,
    ties_equal: Annotated[
        bool,
        typer.Option(
            "--ties-equal",
            help="A name only in one file but tied there to a name both hold (lm_head.weight tied to the"
            " embedding) is no difference.",
        ),
    ] = False,
    quiet: QuietOpt = False,
    sort: SortOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Compare two checkpoints name by name: exit 0 if equal, 1 if anything differs, 2 on error."""
    from paraminspect.compare import diff

    a, b = _load_all(
        [(file_a, root if root_a is None else root_a), (file_b, root if root_b is None else root_b)], quiet
    )
    both = NameMap.from_options(strip or [], rename or [])
    map_a = both + NameMap.from_options(rename=rename_a or [])
    map_b = both + NameMap.from_options(rename=rename_b or [])
    tolerance = Tolerance(atol, rtol, equal_nan)
    selector = Selector(resolved_patterns(patterns, regex, a, b), regex=regex)
    rows = diff.compare(
        a,
        b,
        tolerance=tolerance,
        selector=selector,
        map_a=map_a,
        map_b=map_b,
        structure=structure,
        sort=sort,
        cast_values=not quiet,  # a dtype change decides the exit code without its values
        ties_equal=ties_equal,
    )
    verdict = diff.report(a, b, rows, tolerance=tolerance, structure=structure, show_all=show_all)
    input_files.check_read(a.sources + b.sources)  # no verdict from a file that changed while it was compared
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
    root: RootOpt = None,
    quiet: QuietOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Check a checkpoint against an expected structure: exit 0 if it holds, 1 on drift, 2 on error."""
    from paraminspect.compare import check

    budget = check.parse_count(max_params) if max_params is not None else None
    spec = check.load_spec(expect)
    (ckpt,) = _load_all([(file, root)], quiet)
    verdict = check.check(
        ckpt,
        spec,
        expect,
        selector=Selector(resolved_patterns(patterns, regex, ckpt), regex=regex),
        name_map=NameMap.from_options(strip or [], rename or []),
        allow_extra=allow_extra,
        max_params=budget,
    )
    if not quiet:
        render.write(render.format_verdict(verdict, fmt))
    return EXIT_OK if verdict.ok else EXIT_DIFFERENT
