"""The command line: parse arguments, call the core, hand the result to render.

No format logic and no output formatting lives here; this is the only module
that imports typer.
"""

import contextvars
import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

# Only what every command needs is imported here; each command imports its own
# modules, so `shapes` does not pay for diff, scan or value printing at start-up.
from paraminspect import __version__, compare, limits, render, roots, tree
from paraminspect.errors import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, ParamInspectError, SelectionError, UsageError
from paraminspect.formats import open_checkpoint
from paraminspect.model import Checkpoint
from paraminspect.names import NameMap
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
    root: RootOpt = None,
    show_modules: Annotated[
        bool,
        typer.Option("--modules", help="Show layer kinds like print(model) (Linear, Conv2d, ...)."),
    ] = False,
) -> int:
    """Show the name hierarchy with per-subtree parameter counts and sizes."""
    from paraminspect import modules

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
    from paraminspect import shapes, sizes

    # --by-prefix answers "what fills this file", so it sees the optimizer too.
    ckpt = _load_state_dict(file, root, auto=by_prefix is None)
    if by_prefix is not None:
        table = sizes.report(ckpt, _selector(ckpt, patterns, regex), by_prefix, sort=sort)
    else:
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
    root: RootOpt = None,
) -> int:
    """Print values the way torch prints them (JSON/CSV: every value, exact)."""
    from paraminspect import printing, values

    # Names are explicit, so the whole file is in reach unless --root narrows it.
    ckpt = _load_state_dict(file, root, auto=False)
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
    root: RootOpt = None,
) -> int:
    """Per tensor: min, max, mean, std (n-1), mean |x|, L2 norm, NaN/Inf/zero counts; and a total."""
    from paraminspect import stats

    ckpt = _load_state_dict(file, root)
    table = stats.report(ckpt, _selector(ckpt, patterns, regex), by_prefix=by_prefix, sort=sort)
    for name in table.document["skipped"]:
        render.write_message(f"paraminspect: warning: {name}: cannot decode {ckpt.tensors[name].dtype} values; skipped")
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
    root: RootOpt = None,
    root_a: Annotated[str | None, typer.Option("--root-a", metavar="KEY", help="Like --root, for A only.")] = None,
    root_b: Annotated[str | None, typer.Option("--root-b", metavar="KEY", help="Like --root, for B only.")] = None,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="List equal names too (JSON always does).")] = False,
    quiet: QuietOpt = False,
    sort: SortOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Compare two checkpoints name by name: exit 0 if equal, 1 if anything differs, 2 on error."""
    from paraminspect import diff

    a, b = _load_all(
        [(file_a, root if root_a is None else root_a), (file_b, root if root_b is None else root_b)], quiet
    )
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
    root: RootOpt = None,
    quiet: QuietOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Check a checkpoint against an expected structure: exit 0 if it holds, 1 on drift, 2 on error."""
    from paraminspect import check

    budget = check.parse_count(max_params) if max_params is not None else None
    spec = check.load_spec(expect)
    (ckpt,) = _load_all([(file, root)], quiet)
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


# ---- edit commands: set, init, rename, drop, extract, cast, convert ----------------
# Each builds an edit plan (edit.py) and hands it to save.save, which writes
# atomically and verifies; the summary goes to stderr (JSON to stdout). Their
# modules are imported inside the functions: read-only commands never load them.

OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here; the suffix picks the format (.safetensors, .pt).")
]
InPlaceOpt = Annotated[bool, typer.Option("--in-place", help="Replace the input file (atomically).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would change; write nothing.")]
DropUnknownOpt = Annotated[
    bool, typer.Option("--drop-unknown", help="Leave out placeholder objects that cannot be written back.")
]
UntieOpt = Annotated[
    bool, typer.Option("--untie", help="Edit the selected names even if that breaks a tie with unselected ones.")
]


def _write_plan(
    plan: object, output: Path | None, in_place: bool, force: bool, dry_run: bool, drop_unknown: bool, fmt: OutputFormat
) -> int:
    from paraminspect import edit, save

    assert isinstance(plan, edit.Plan)
    report = save.save(plan, output, in_place=in_place, force=force, dry_run=dry_run, drop_unknown=drop_unknown)
    render.write_edit(report.document, fmt)
    return EXIT_OK


@app.command("set", context_settings={"ignore_unknown_options": True})  # lets VALUE be -1.5
def set_command(
    file: FileArg,
    name: Annotated[str, typer.Argument(help="Exact tensor name.")],
    value: Annotated[
        str, typer.Argument(help="A number (0, -1.5, nan), a JSON list of the tensor's shape, or a .npy file.")
    ],
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    drop_unknown: DropUnknownOpt = False,
    untie: UntieOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Fill one tensor with a scalar or with values of its exact shape."""
    from paraminspect import edit, fill
    from paraminspect.model import TensorRef

    ckpt = open_checkpoint(file)
    if not isinstance(ckpt.entries.get(name), TensorRef):
        raise SelectionError(f"no tensor named {name!r}", ckpt.path)
    array = fill.parse_value(value)
    detail = f"from {value}" if value.endswith(".npy") else f"= {value if len(value) <= 40 else value[:37] + '...'}"
    plan = edit.plan_new_values(ckpt, "set", [name], lambda _n, _r: array, detail, untie=untie)
    return _write_plan(plan, output, in_place, force, dry_run, drop_unknown, fmt)


@app.command("init")
def init_command(
    file: FileArg,
    patterns: Annotated[list[str], typer.Argument(help="Tensors to initialise (globs, names, subtrees).")],
    scheme: Annotated[
        str,
        typer.Option(
            "--scheme",
            "-s",
            help="zeros, ones, constant, normal, uniform, xavier_uniform, xavier_normal, "
            "kaiming_uniform, kaiming_normal",
        ),
    ],
    value: Annotated[float, typer.Option("--value", help="constant: the value.")] = 0.0,
    mean: Annotated[float, typer.Option("--mean", help="normal: mean.")] = 0.0,
    std: Annotated[float, typer.Option("--std", help="normal: standard deviation.")] = 1.0,
    low: Annotated[float, typer.Option("--low", help="uniform: lower bound.")] = 0.0,
    high: Annotated[float, typer.Option("--high", help="uniform: upper bound.")] = 1.0,
    gain: Annotated[float | None, typer.Option("--gain", help="xavier/kaiming: override the gain.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="kaiming: fan_in or fan_out.")] = "fan_in",
    nonlinearity: Annotated[
        str, typer.Option("--nonlinearity", help="kaiming: as torch.nn.init.calculate_gain.")
    ] = "leaky_relu",
    a: Annotated[float, typer.Option("--a", help="kaiming: negative slope of leaky_relu.")] = 0.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for reproducible random schemes.")] = None,
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    drop_unknown: DropUnknownOpt = False,
    untie: UntieOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Re-initialise tensors with a torch.nn.init scheme (xavier, kaiming, normal, ...)."""
    import numpy as np

    from paraminspect import edit, initializers
    from paraminspect.errors import UsageError
    from paraminspect.model import TensorRef

    spec = initializers.Scheme(scheme, value, mean, std, low, high, gain, mode, nonlinearity, a)
    ckpt = open_checkpoint(file)
    selector = _selector(ckpt, patterns, regex)
    tensors = ckpt.tensors
    selected = selector.filter(tensors)
    names = selected
    if spec.name in initializers.RANDOM_SCHEMES:
        names = [n for n in selected if edit.is_floating(tensors[n].dtype)]
    if not names:
        raise SelectionError("the selection holds no tensors this scheme can fill", ckpt.path)
    rng = np.random.default_rng(seed)

    def make(name: str, ref: TensorRef) -> np.ndarray:
        try:
            return initializers.generate(spec, ref.shape, rng)
        except UsageError as exc:
            raise UsageError(f"tensor {name!r}: {exc.message}", ckpt.path) from None

    plan = edit.plan_new_values(ckpt, "init", names, make, spec.describe(), untie=untie)
    chosen = set(names)
    for name in selected:
        if name not in chosen:
            plan.change("skipped", name, f"{tensors[name].dtype.name} is not floating point")
    return _write_plan(plan, output, in_place, force, dry_run, drop_unknown, fmt)


@app.command("rename")
def rename_command(
    file: FileArg,
    mappings: Annotated[list[str] | None, typer.Argument(help="OLD=NEW: replace the name prefix OLD with NEW.")] = None,
    strip_prefix: Annotated[
        list[str] | None, typer.Option("--strip-prefix", help="Remove this prefix (e.g. module.).")
    ] = None,
    add_prefix: Annotated[str | None, typer.Option("--add-prefix", help="Put this prefix before every name.")] = None,
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    drop_unknown: DropUnknownOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Rename tensors: OLD=NEW prefix replacements, --strip-prefix, --add-prefix."""
    from paraminspect import edit
    from paraminspect.errors import UsageError
    from paraminspect.names import NameMap, PrefixRule

    mapping = NameMap.from_options(strip_prefix or [], mappings or [])
    if add_prefix:
        mapping += NameMap([PrefixRule("", add_prefix)])
    if not mapping:
        raise UsageError("nothing to rename: give OLD=NEW, --strip-prefix or --add-prefix")
    plan = edit.plan_rename(open_checkpoint(file), mapping)
    return _write_plan(plan, output, in_place, force, dry_run, drop_unknown, fmt)


@app.command("drop")
def drop_command(
    file: FileArg,
    patterns: Annotated[list[str], typer.Argument(help="Names to remove (globs, names, subtrees).")],
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    drop_unknown: DropUnknownOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Remove tensors (and other entries) whose names match."""
    from paraminspect import edit

    ckpt = open_checkpoint(file)
    plan = edit.plan_drop(ckpt, Selector(patterns, regex=regex))
    return _write_plan(plan, output, in_place, force, dry_run, drop_unknown, fmt)


@app.command("extract")
def extract_command(
    file: FileArg,
    patterns: Annotated[list[str], typer.Argument(help="Names to keep (globs, names, subtrees).")],
    reroot: Annotated[
        bool, typer.Option("--reroot", help="Strip the one selected subtree's prefix from names.")
    ] = False,
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    drop_unknown: DropUnknownOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Keep only the matching names (a subtree, optionally re-rooted)."""
    from paraminspect import edit

    ckpt = open_checkpoint(file)
    plan = edit.plan_extract(ckpt, Selector(patterns, regex=regex), reroot=reroot)
    return _write_plan(plan, output, in_place, force, dry_run, drop_unknown, fmt)


@app.command("cast")
def cast_command(
    file: FileArg,
    patterns: PatternsArg = None,
    dtype: Annotated[str, typer.Option("--dtype", "-t", help="Target dtype: float16, bfloat16, float32, ...")] = "",
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    drop_unknown: DropUnknownOpt = False,
    untie: UntieOpt = False,
    regex: RegexOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Convert floating-point tensors to another dtype (integer/bool tensors are left alone)."""
    from paraminspect import dtypes, edit
    from paraminspect.errors import UsageError

    target = dtypes.lookup(dtype) if dtype else None
    if target is None:
        raise UsageError(f"--dtype {dtype!r} is not a known dtype" if dtype else "--dtype is required")
    if not edit.is_floating(target):
        raise UsageError(f"--dtype {target.name} is not a floating-point type")
    ckpt = open_checkpoint(file)
    plan = edit.plan_cast(ckpt, Selector(patterns or [], regex=regex), target, untie=untie)
    return _write_plan(plan, output, in_place, force, dry_run, drop_unknown, fmt)


@app.command("convert")
def convert_command(
    file: FileArg,
    output: Annotated[Path, typer.Argument(help="Output file; its suffix picks the format.")],
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    drop_unknown: DropUnknownOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Convert between .pt and .safetensors (ties and, for .pt, non-tensor entries kept)."""
    from paraminspect import edit

    plan = edit.Plan.unchanged(open_checkpoint(file), "convert")
    return _write_plan(plan, output, False, force, dry_run, drop_unknown, fmt)


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
    from paraminspect import scan

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
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except BrokenPipeError:
        # The reader went away (| head): that is success. Point stdout at devnull
        # so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # Usage errors from the argument parser (click's, or the copy typer
        # vendors in newer releases) carry these two attributes.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        render.write_message(f"paraminspect: error: {exc.format_message()} (see 'paraminspect --help')")
        return EXIT_ERROR


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
