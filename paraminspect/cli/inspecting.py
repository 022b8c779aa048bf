"""Read-only commands: tree, shapes, get, stats, scan."""

import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from paraminspect.cli.app import (
    FileArg,
    FormatOpt,
    PatternsArg,
    RegexOpt,
    RootOpt,
    SortOpt,
    _load_state_dict,
    _selector,
    app,
    remote_cost,
)
from paraminspect.errors import EXIT_OK, UsageError
from paraminspect.inspect import tree
from paraminspect.io import source as input_files
from paraminspect.io import url
from paraminspect.output import render
from paraminspect.output.render import OutputFormat


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
    from paraminspect.inspect import modules

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
    if (cost := remote_cost(ckpt)) is not None:
        report.table.document["remote"] = cost
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
    from paraminspect.inspect import shapes, sizes

    # --by-prefix answers "what fills this file", so it sees the optimizer too.
    ckpt = _load_state_dict(file, root, auto=by_prefix is None)
    if by_prefix is not None:
        table = sizes.report(ckpt, _selector(ckpt, patterns, regex), by_prefix, sort=sort)
    else:
        table = shapes.report(ckpt, _selector(ckpt, patterns, regex), sort=sort)
    if (cost := remote_cost(ckpt)) is not None:
        table.document["remote"] = cost
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
    root: RootOpt = None,
) -> int:
    """Print values the way torch prints them (JSON/CSV: every value, exact)."""
    from paraminspect.inspect import get as values
    from paraminspect.output import printing

    # Names are explicit, so the whole file is in reach unless --root narrows it.
    ckpt = _load_state_dict(file, root, auto=False)
    resolved = _selector(ckpt, names, regex).patterns  # index form resolved; unknown names fail here
    options = printing.PrintOptions(precision=precision, threshold=math.inf if full else 1000)
    # Every value, read chunk by chunk: JSON/CSV always, the text form with --full.
    stream = fmt in (OutputFormat.json, OutputFormat.csv) or full
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
    root: RootOpt = None,
) -> int:
    """Per tensor: min, max, mean, std (n-1), mean |x|, L2 norm, NaN/Inf/zero counts; and a total."""
    from paraminspect.inspect import stats

    ckpt = _load_state_dict(file, root)
    table = stats.report(ckpt, _selector(ckpt, patterns, regex), by_prefix=by_prefix, sort=sort)
    input_files.check_read(ckpt.sources)  # no numbers from a file that changed while it was read
    tensors = ckpt.tensors
    for name in table.document["skipped"]:
        render.write_message(f"paraminspect: warning: {name}: cannot decode {tensors[name].dtype} values; skipped")
    render.write(render.format_table(table, fmt))
    return EXIT_OK


@app.command("scan")
def scan_command(
    files: Annotated[
        list[Path],
        typer.Argument(parser=url.to_path, help="Checkpoint files to analyse (nothing in them is run)."),
    ],
    unsafe_only: Annotated[
        bool, typer.Option("--unsafe-only", help="List only references outside the allow-list.")
    ] = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """List every pickle global and persistent id each file references, and which are allowed.

    Exit 1 if any file references a global outside the allow-list or is an ambiguous zip (one
    that torch could read differently from us), 2 if a file cannot be read.
    """
    from paraminspect.inspect import scan

    result = scan.report(files, unsafe_only=unsafe_only)
    render.write(render.format_table(result.table, fmt))
    for item in result.scans:
        if item.status == "ambiguous":  # exit 1: a finding about the file, like an unsafe global
            render.write_message(f"paraminspect: scan: {item.error}")
        elif item.error is not None:
            render.write_message(f"paraminspect: error: {item.error}")
    if result.unsafe_files:
        count = f"{result.unsafe_files} of {len(files)} file(s)"
        render.write_message(f"paraminspect: scan: {count} reference globals outside the allow-list")
    return result.exit_code
