"""Edit commands: set, init, rename, drop, extract, cast, convert, set-meta, rm-meta."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from paraminspect.cli.app import FileArg, FormatOpt, PatternsArg, RegexOpt, _selector, app, open_input
from paraminspect.errors import EXIT_OK, ParamInspectError, SelectionError, UsageError
from paraminspect.io import progress
from paraminspect.naming.select import Selector
from paraminspect.output import render
from paraminspect.output.render import OutputFormat

# ---- edit commands: set, init, rename, drop, extract, cast, convert ----------------
# Each builds an edit plan (edit.py) and hands it to save.save, which writes
# atomically and verifies; the summary goes to stderr (JSON to stdout). Their
# modules are imported inside the functions: read-only commands never load them.

OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write here; the suffix picks the format (.safetensors, .pt; .gguf)."),
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
    from paraminspect.edit import plan as edit
    from paraminspect.edit import save

    assert isinstance(plan, edit.Plan)
    try:
        # Bytes to read: the input's tensors copied, then the output's read back to verify.
        work = 0 if dry_run else 2 * sum(ref.nbytes for ref in plan.ckpt.tensors.values())
        with progress.task(work, plan.command):
            report = save.save(plan, output, in_place=in_place, force=force, dry_run=dry_run, drop_unknown=drop_unknown)
    except ParamInspectError as exc:
        # Every error line names a file: one the writer raised without one is about the output.
        if exc.source is None and (output is not None) != in_place:
            exc.source = str(plan.ckpt.path if output is None else output)
        raise
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
    from paraminspect.edit import fill
    from paraminspect.edit import plan as edit
    from paraminspect.model import TensorRef

    ckpt = open_input(file)
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
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Seed (a non-negative integer) for reproducible random schemes.")
    ] = None,
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

    from paraminspect.edit import initializers
    from paraminspect.edit import plan as edit
    from paraminspect.model import TensorRef

    spec = initializers.Scheme(scheme, value, mean, std, low, high, gain, mode, nonlinearity, a)
    ckpt = open_input(file)
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
    from paraminspect.edit import plan as edit
    from paraminspect.naming.prefixes import NameMap, PrefixRule

    mapping = NameMap.from_options(strip_prefix or [], mappings or [])
    if add_prefix:
        mapping += NameMap([PrefixRule("", add_prefix)])
    if not mapping:
        raise UsageError("nothing to rename: give OLD=NEW, --strip-prefix or --add-prefix")
    plan = edit.plan_rename(open_input(file), mapping)
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
    from paraminspect.edit import plan as edit

    ckpt = open_input(file)
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
    from paraminspect.edit import plan as edit

    ckpt = open_input(file)
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
    from paraminspect import dtypes
    from paraminspect.edit import plan as edit

    target = dtypes.lookup(dtype) if dtype else None
    if target is None:
        raise UsageError(f"--dtype {dtype!r} is not a known dtype" if dtype else "--dtype is required")
    if not edit.is_floating(target):
        raise UsageError(f"--dtype {target.name} is not a floating-point type")
    ckpt = open_input(file)
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
    from paraminspect.edit import plan as edit

    plan = edit.Plan.unchanged(open_input(file), "convert")
    return _write_plan(plan, output, False, force, dry_run, drop_unknown, fmt)


# ---- metadata edits: set-meta, rm-meta -------------------------------------------


def _warn_about(file: Path) -> Callable[[str], None]:
    return lambda text: render.write_message(f"paraminspect: warning: {file}: {text}")


@app.command("set-meta", context_settings={"ignore_unknown_options": True})  # lets VALUE start with '-'
def set_meta_command(
    file: FileArg,
    key: Annotated[str | None, typer.Argument(help="Metadata key (created if absent).")] = None,
    value: Annotated[
        str | None,
        typer.Argument(help="The new value: a string (safetensors), or text of the key's GGUF type (GGUF)."),
    ] = None,
    chat_template_file: Annotated[
        Path | None,
        typer.Option("--chat-template-file", help="GGUF: set tokenizer.chat_template to this file's text."),
    ] = None,
    type_name: Annotated[
        str | None,
        typer.Option("--type", help="GGUF: the value's type (UINT32, FLOAT32, BOOL, STRING, [STRING]...)."),
    ] = None,
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Set one key of the file's own metadata; every tensor is copied unchanged (safetensors, GGUF)."""
    from paraminspect.edit import metadata

    if chat_template_file is not None:
        if key is not None:
            raise UsageError("give KEY VALUE or --chat-template-file, not both")
        key, value = metadata.TEMPLATE_KEY, metadata.template_text(chat_template_file)
    elif key is None or value is None:
        raise UsageError("give KEY VALUE (or, for GGUF, --chat-template-file F)")
    ckpt = open_input(file)
    if chat_template_file is not None and ckpt.format != "gguf":
        raise UsageError("--chat-template-file is for GGUF files (tokenizer.chat_template)", ckpt.path)
    plan = metadata.plan_set_meta(ckpt, key, value, _warn_about(ckpt.path), type_name)
    return _write_plan(plan, output, in_place, force, dry_run, False, fmt)


@app.command("rm-meta")
def rm_meta_command(
    file: FileArg,
    keys: Annotated[list[str], typer.Argument(help="Metadata keys to remove (exact).")],
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = OutputFormat.table,
) -> int:
    """Remove keys from the file's own metadata; every tensor is copied unchanged (safetensors, GGUF)."""
    from paraminspect.edit import metadata

    ckpt = open_input(file)
    plan = metadata.plan_rm_meta(ckpt, keys, _warn_about(ckpt.path))
    return _write_plan(plan, output, in_place, force, dry_run, False, fmt)
