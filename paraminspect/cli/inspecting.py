"""Read-only commands: tree, shapes, meta, get, stats, hist, hash, lora, scan."""

import math
import sys
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
    _load_state_dict,
    _quantized,
    _selector,
    app,
    lasting,
    read_checkpoint,
    remote_cost,
)
from paraminspect.errors import EXIT_ERROR, EXIT_OK, UsageError
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
    raw: RawOpt = False,
) -> int:
    """Show the name hierarchy with per-subtree parameter counts and sizes."""
    from paraminspect.inspect import modules, tree

    # The whole object by default; --modules is a view of the model, so it picks the state dict.
    ckpt = _load_state_dict(file, root, auto=show_modules)
    if show_modules:
        if patterns and (len(patterns) > 1 or regex):
            raise UsageError("--modules takes at most one prefix (a group such as 'encoder.layers.0')")
        _selector(ckpt, patterns, regex)  # a clear error for a prefix that matches nothing
        selected = ckpt.subtree(patterns[0]) if patterns else ckpt
        found = _quantized(selected, raw)
        with lasting():
            report_modules = modules.report(selected, sort=sort, found=found)
        render.write(render.format_modules(report_modules, fmt))
        return EXIT_OK
    found = _quantized(ckpt, raw)
    selector = _selector(ckpt, patterns, regex, found)
    with lasting():  # a line, a row and a JSON object a tensor: all kept until printed
        report = tree.report(ckpt, selector=selector, depth=depth, sort=sort, found=found)
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
    raw: RawOpt = False,
) -> int:
    """List every tensor: name, dtype, shape, element count and bytes, with a total."""
    from paraminspect.inspect import shapes

    # --by-prefix answers "what fills this file", so it sees the optimizer too.
    ckpt = _load_state_dict(file, root, auto=by_prefix is None)
    found = _quantized(ckpt, raw)
    selector = _selector(ckpt, patterns, regex, found)
    with lasting():  # a row a tensor, kept until printed
        if by_prefix is not None:
            from paraminspect.inspect import sizes

            table = sizes.report(ckpt, selector, by_prefix, sort=sort, found=found)
        else:
            table = shapes.report(ckpt, selector, sort=sort, found=found)
    if (cost := remote_cost(ckpt)) is not None:
        table.document["remote"] = cost
    render.write(render.format_table(table, fmt))
    return EXIT_OK


@app.command("meta")
def meta_command(
    file: FileArg,
    keys: Annotated[
        list[str] | None,
        typer.Argument(help="Keys to show: exact ('general.name'), globs ('ss_*') or dotted prefixes ('tokenizer')."),
    ] = None,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Show the file's own metadata: key, type, value (long values summarised; JSON/CSV whole)."""
    from paraminspect.inspect import meta

    ckpt = read_checkpoint(file)  # metadata belongs to the whole file: no --root
    table = meta.report(ckpt, keys, regex=regex)
    if not table.rows and fmt is OutputFormat.table:
        render.write_message(f"paraminspect: note: {ckpt.path}: no file metadata ({ckpt.format})")
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
    dequantize: DequantizeOpt = False,
) -> int:
    """Print values the way torch prints them (JSON/CSV: every value, exact)."""
    from paraminspect.inspect import get as values
    from paraminspect.output import printing

    # Names are explicit, so the whole file is in reach unless --root narrows it.
    ckpt = _load_state_dict(file, root, auto=False)
    found = _quantized(ckpt) if dequantize else None
    resolved = _selector(ckpt, names, regex, found).patterns  # index form resolved; unknown names fail here
    options = printing.PrintOptions(precision=precision, threshold=math.inf if full else 1000)
    # Every value, read chunk by chunk: JSON/CSV always, the text form with --full.
    stream = fmt in (OutputFormat.json, OutputFormat.csv) or full
    names = values.selected_names(ckpt, resolved, regex=regex, found=found)
    report = values.report(ckpt, names, options, every_value=full, stream=stream, quantized=found)
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
    dequantize: DequantizeOpt = False,
    row_hist: Annotated[
        bool,
        typer.Option(
            "--hist", help="Add a small histogram per tensor (sampled past 16,384 values; JSON: edges and counts)."
        ),
    ] = False,
    percentiles: Annotated[
        str | None,
        typer.Option(
            "--percentiles", metavar="P,P,...", help="Add exact percentiles per tensor, e.g. 1,50,99 (more passes)."
        ),
    ] = None,
) -> int:
    """Per tensor: min, max, mean, std (n-1), mean |x|, L2 norm, NaN/Inf/zero counts, sparsity; and a total."""
    from paraminspect.inspect import hist, stats

    wanted = stats.Wanted(row_hist, tuple(hist.parse_percents(percentiles)) if percentiles is not None else ())
    ckpt = _load_state_dict(file, root)
    found = _quantized(ckpt) if dequantize else None
    selector = _selector(ckpt, patterns, regex, found)
    table = stats.report(ckpt, selector, by_prefix=by_prefix, sort=sort, found=found, wanted=wanted)
    input_files.check_read(ckpt.sources)  # no numbers from a file that changed while it was read
    tensors = ckpt.tensors
    for name in table.document["skipped"]:
        why = table.document.get("undecoded", {}).get(name) or f"cannot decode {tensors[name].dtype} values"
        render.write_message(f"paraminspect: warning: {name}: {why}; skipped")
    render.write(render.format_table(table, fmt))
    return EXIT_OK


@app.command("hist")
def hist_command(
    file: FileArg,
    name: Annotated[str, typer.Argument(help="The tensor (or, with --dequantize, quantized weight) to count.")],
    bins: Annotated[int, typer.Option("--bins", "-b", min=1, max=100_000, help="Number of equal bins.")] = 20,
    log: Annotated[bool, typer.Option("--log", help="Draw bar lengths on a log(1 + count) scale.")] = False,
    value_range: Annotated[
        str | None,
        typer.Option("--range", metavar="LO,HI", help="Bin [LO, HI] instead of the finite range (one pass)."),
    ] = None,
    fmt: FormatOpt = OutputFormat.table,
    root: RootOpt = None,
    dequantize: DequantizeOpt = False,
) -> int:
    """One tensor's exact histogram: equal bins over its finite range (NaN/Inf left out), as numpy.histogram counts."""
    from paraminspect.inspect import hist

    extent = hist.parse_range(value_range) if value_range is not None else None
    ckpt = _load_state_dict(file, root, auto=False)
    found = _quantized(ckpt) if dequantize else None
    (resolved,) = _selector(ckpt, [name], False, found).patterns
    report = hist.report(ckpt, resolved, bins=bins, value_range=extent, log=log, found=found)
    input_files.check_read(ckpt.sources)
    render.write(render.format_hist(report, fmt, render.Colours(sys.stdout)))
    return EXIT_OK


@app.command("hash")
def hash_command(
    file: FileArg,
    patterns: PatternsArg = None,
    sort: SortOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
    root: RootOpt = None,
) -> int:
    """SHA-256 of each tensor's canonical bytes, and of the state dict; --format json writes a lockfile.

    The same tensor hashes the same in any format, layout or shard. Check a file against the
    lockfile with 'check FILE --expect lock.json', or diff against it: 'diff lock.json FILE'.
    """
    from paraminspect.inspect import hashing

    ckpt = _load_state_dict(file, root)
    table = hashing.report(ckpt, _selector(ckpt, patterns, regex), sort=sort)
    input_files.check_read(ckpt.sources)  # no hashes from a file that changed while it was read
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
    explained: Annotated[
        bool,
        typer.Option(
            "--explain", help="Per finding, one line on what loading the file would do and what to do instead."
        ),
    ] = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """List every pickle global and persistent id each file references, and which are allowed.

    Exit 1 if any file references a global outside the allow-list or is an ambiguous zip (one
    that torch could read differently from us), 2 if a file cannot be read.
    """
    from paraminspect.inspect import scan

    result = scan.report(files, unsafe_only=unsafe_only, explained=explained)
    if fmt is OutputFormat.sarif:
        render.write(render.format_findings(result.findings, complete=result.exit_code != EXIT_ERROR))
    else:
        render.write(render.format_table(result.table, fmt))
    if explained and fmt in (OutputFormat.table, OutputFormat.markdown):  # JSON has them; CSV stays rows
        render.write(render.format_lines(result.explanations()))
    for item in result.scans:
        if item.status == "ambiguous":  # exit 1: a finding about the file, like an unsafe global
            render.write_message(f"paraminspect: scan: {item.error}")
        elif item.error is not None:
            render.write_message(f"paraminspect: error: {item.error}")
    summary = result.summary()
    if summary is not None:
        render.write_message(f"paraminspect: scan: {summary}")
    return result.exit_code


@app.command("lora")
def lora_command(
    adapter: Annotated[
        Path,
        typer.Argument(
            metavar="ADAPTER",
            help="A LoRA adapter: peft's directory (adapter_model.safetensors + adapter_config.json) or file,"
            " or a kohya file (lora_down/lora_up/alpha).",
        ),
    ],
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Per LoRA module: rank, scale, ||BA|| and effective rank, from r x r matrices (BA is never formed)."""
    from paraminspect.inspect import lora

    path = adapter
    if adapter.is_dir():
        path = next((adapter / n for n in lora.ADAPTER_FILES if (adapter / n).is_file()), adapter)
    ckpt = read_checkpoint(path)
    table = lora.report(ckpt, adapter)
    input_files.check_read(ckpt.sources)
    render.write(render.format_table(table, fmt))
    return EXIT_OK
