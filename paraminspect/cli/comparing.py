"""Comparison commands: diff and check."""

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from paraminspect.cli.app import (
    DequantizeOpt,
    FileArg,
    FormatOpt,
    PatternsArg,
    RawOpt,
    RegexOpt,
    RootOpt,
    SortOpt,
    _quantized,
    app,
    problems_note,
    read_checkpoint,
    resolved_patterns,
)
from paraminspect.compare.tolerance import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from paraminspect.errors import EXIT_DIFFERENT, EXIT_OK
from paraminspect.io import progress, url
from paraminspect.io import source as input_files
from paraminspect.model import Checkpoint
from paraminspect.naming import roots
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
_POLICY = "Value policies"
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; only the exit code tells.")]


class Measure(str, Enum):
    """The change measures ``--sort-by`` orders by (compare/metrics.py's METRICS)."""

    rel_l2 = "rel_l2"
    cosine = "cosine"
    nmse = "nmse"
    rel_mean_abs = "rel_mean_abs"
    frac_differing = "frac_differing"


def _load_all(sides: list[tuple[Path, str | None]], quiet: bool, *, warn: bool = True) -> list[Checkpoint]:
    """Like ``_load_state_dict`` for each file, but the notes are printed only once every
    file opened (a failure stays a single stderr line) and never with --quiet. ``warn``:
    say when an input disagrees with itself (``check`` reports that in its table)."""
    wholes = [read_checkpoint(path) for path, _ in sides]
    loaded = [roots.select(whole, root) for whole, (_, root) in zip(wholes, sides, strict=True)]
    for whole, (ckpt, note) in zip(wholes, loaded, strict=True):
        problems = problems_note(whole) if warn else None
        if problems and not quiet:
            render.write_message(problems)
        if note and not quiet:
            render.write_message(f"paraminspect: note: {ckpt.path}: {note}")
    return [ckpt for ckpt, _ in loaded]


@app.command("diff")
def diff_command(
    file_a: Annotated[
        Path,
        typer.Argument(
            metavar="A", parser=url.to_path, help="First checkpoint (any supported format, or a URL), or a lockfile."
        ),
    ],
    file_b: Annotated[
        Path,
        typer.Argument(
            metavar="B", parser=url.to_path, help="Second checkpoint (any supported format, or a URL), or a lockfile."
        ),
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
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics",
            help="Add the change measures to the table: relative L2 change, cosine, NMSE, relative mean"
            " |B-A|, fraction differing (JSON always has them).",
        ),
    ] = False,
    sort_by: Annotated[
        Measure | None,
        typer.Option(
            "--sort-by", metavar="MEASURE", help="List the most moved first by this measure (cosine: lowest)."
        ),
    ] = None,
    by_prefix: Annotated[
        int | None,
        typer.Option(
            "--by-prefix",
            metavar="N",
            min=1,
            help="List the measures per subtree of N name components, summed exactly.",
        ),
    ] = None,
    heatmap: Annotated[
        bool,
        typer.Option(
            "--heatmap",
            help="Draw the relative L2 change per layer (rows) and module kind (columns) instead of the table.",
        ),
    ] = False,
    quiet: QuietOpt = False,
    sort: SortOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
    dequantize: DequantizeOpt = False,
    no_metadata: Annotated[
        bool,
        typer.Option("--no-metadata", help="Compare tensors only: differing file metadata is no difference."),
    ] = False,
) -> int:
    """Compare two checkpoints name by name: exit 0 if equal, 1 if anything differs, 2 on error.

    Either side may be a lockfile ('paraminspect hash -f json'): tensors are then compared by content hash.
    """
    from paraminspect.compare import diff, lockfile, metadiff
    from paraminspect.naming.prefixes import NameMap

    if quiet:
        progress.SHOW = None  # --quiet: nothing at all on stderr
    both = NameMap.from_options(strip or [], rename or [])
    map_a = both + NameMap.from_options(rename=rename_a or [])
    map_b = both + NameMap.from_options(rename=rename_b or [])
    tolerance = Tolerance(atol, rtol, equal_nan)
    locks = [lockfile.read_if_lockfile(file_a), lockfile.read_if_lockfile(file_b)]
    if any(locks):
        pairs = zip((file_a, file_b), (root_a, root_b), locks, strict=True)
        wanted = [(f, root if r is None else r) for f, r, lock in pairs if lock is None]
        opened = iter(_load_all(wanted, quiet))
        side_a, side_b = (next(opened) if lock is None else lock for lock in locks)
        checkpoints = [side for side in (side_a, side_b) if isinstance(side, Checkpoint)]
        resolved = resolved_patterns(patterns, regex, *checkpoints) if checkpoints else list(patterns or [])
        rows = lockfile.compare(
            side_a, side_b, selector=Selector(resolved, regex=regex), map_a=map_a, map_b=map_b, structure=structure
        )
        verdict = diff.report(side_a, side_b, rows, tolerance=tolerance, structure=structure, show_all=show_all)
        verdict = metadiff.with_metadata(verdict, side_a, side_b, enabled=not no_metadata, show_all=show_all)
        input_files.check_read([source for c in checkpoints for source in c.sources])
    else:
        a, b = _load_all(
            [(file_a, root if root_a is None else root_a), (file_b, root if root_b is None else root_b)], quiet
        )
        selector = Selector(resolved_patterns(patterns, regex, a, b), regex=regex)
        quantized = (_quantized(a, notes=not quiet), _quantized(b, notes=not quiet)) if dequantize else (None, None)
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
            quantized=quantized,
            # The measures cost a few passes per decoded slice: only when shown (JSON always).
            metrics=not quiet and (metrics or fmt is OutputFormat.json or sort_by is not None),
            norms=not quiet and (by_prefix is not None or heatmap),  # roll-ups need unchanged tensors' norms too
        )
        verdict = diff.report(
            a,
            b,
            rows,
            tolerance=tolerance,
            structure=structure,
            show_all=show_all,
            metrics=metrics,
            sort_by=sort_by.value if sort_by is not None else None,
            by_prefix=by_prefix,
            heatmap=heatmap,
        )
        verdict = metadiff.with_metadata(verdict, a, b, enabled=not no_metadata, show_all=show_all)
        input_files.check_read(a.sources + b.sources)  # no verdict from a file that changed while it was compared
    if quiet:
        pass
    elif verdict.picture is not None and fmt is OutputFormat.table:
        from paraminspect.output import heatmap as picture

        render.write(picture.format_verdict(verdict, render.Colours(sys.stdout)))
    else:
        render.write(render.format_verdict(verdict, fmt))
    return EXIT_OK if verdict.ok else EXIT_DIFFERENT


@app.command("check")
def check_command(
    file: FileArg,
    patterns: PatternsArg = None,
    expect: Annotated[
        Path | None,
        typer.Option(
            "--expect",
            metavar="SPEC",
            parser=url.to_path,
            help="The expected structure: JSON written by 'paraminspect shapes -f json', or a lockfile"
            " ('paraminspect hash -f json': content is checked too). May hold a 'policies' object."
            " Without it (and without policies) only the file's own consistency is checked.",
        ),
    ] = None,
    allow_extra: Annotated[
        bool, typer.Option("--allow-extra", help="Tensors the spec does not list are allowed (counted, not listed).")
    ] = False,
    max_params: Annotated[
        str | None,
        typer.Option("--max-params", metavar="N", help="Fail if unique parameters exceed N (e.g. 110M, 7B)."),
    ] = None,
    finite: Annotated[bool, typer.Option("--finite", help="Fail on any NaN or Inf.", rich_help_panel=_POLICY)] = False,
    max_abs: Annotated[
        float | None,
        typer.Option("--max-abs", metavar="X", min=0.0, help="Fail on any |value| > X.", rich_help_panel=_POLICY),
    ] = None,
    no_all_zero: Annotated[
        bool, typer.Option("--no-all-zero", help="Fail on a tensor that is zero everywhere.", rich_help_panel=_POLICY)
    ] = False,
    no_constant: Annotated[
        bool,
        typer.Option(
            "--no-constant", help="Fail on a tensor whose elements are all equal (2+).", rich_help_panel=_POLICY
        ),
    ] = False,
    dtype_rules: Annotated[
        list[str] | None,
        typer.Option(
            "--dtype",
            metavar="SELECTOR:DTYPE",
            help="Every tensor SELECTOR matches has DTYPE (e.g. '*.weight:bfloat16'). Repeatable.",
            rich_help_panel=_POLICY,
        ),
    ] = None,
    strip: StripOpt = None,
    rename: RenameOpt = None,
    root: RootOpt = None,
    quiet: QuietOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
    raw: RawOpt = False,
) -> int:
    """Check a checkpoint against an expected structure, a lockfile, value policies and its own
    consistency: exit 0 if it holds, 1 on drift, a violation or an inconsistent file, 2 on error."""
    from paraminspect.compare import check
    from paraminspect.compare.policies import DtypeRule, Policies
    from paraminspect.naming.prefixes import NameMap

    if quiet:
        progress.SHOW = None
    budget = check.parse_count(max_params) if max_params is not None else None
    given = Policies(finite, max_abs, no_all_zero, no_constant, tuple(DtypeRule.parse(r) for r in dtype_rules or []))
    spec, in_spec = check.load_spec(expect) if expect is not None else (None, Policies())
    rules = in_spec.merged(given)
    (ckpt,) = _load_all([(file, root)], quiet, warn=False)
    verdict = check.check(
        ckpt,
        spec,
        expect,
        selector=Selector(resolved_patterns(patterns, regex, ckpt), regex=regex),
        name_map=NameMap.from_options(strip or [], rename or []),
        allow_extra=allow_extra,
        max_params=budget,
        found=_quantized(ckpt, raw, notes=not quiet),
        policies=rules,
    )
    for name in verdict.table.document.get("unchecked", []):
        render.write_message(f"paraminspect: warning: {name}: cannot decode its values; value policies unchecked")
    if not quiet:
        render.write(render.format_verdict(verdict, fmt))
    return EXIT_OK if verdict.ok else EXIT_DIFFERENT
