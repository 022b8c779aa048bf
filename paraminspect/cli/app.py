"""The typer app, the options every command shares (declared once, sqlite-utils
style), the global limit options, and helpers for loading and selecting.

Commands import their own core modules when they run, so `shapes` does not pay
at start-up for diff, scan or value printing.
"""

import gc
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated

import typer

from paraminspect import __version__, limits
from paraminspect.errors import SelectionError
from paraminspect.formats.opening import open_checkpoint
from paraminspect.io import progress, source, url
from paraminspect.model import Checkpoint
from paraminspect.naming import roots
from paraminspect.naming.order import ordered_names
from paraminspect.naming.select import Selector, is_index_form, resolve_index_form, suggestions
from paraminspect.output import render
from paraminspect.output.render import OutputFormat
from paraminspect.output.tabular import plural
from paraminspect.quant.logical import Recognition, looks_quantized

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
        parser=url.to_path,
        help="Checkpoint file (.pt/.pth/.bin/.ckpt/.safetensors, detected by content), "
        "a sharded model's *.index.json or directory, or a DCP directory; or a URL "
        "(https://..., hf://org/repo, hf://org/repo@rev/file) or a cached Hub repo (org/repo, org/repo@rev).",
    ),
]
PatternsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Names to select: globs ('*.weight'), exact names or subtree prefixes ('0.block 1')."),
]


def _check_format(ctx: typer.Context, value: OutputFormat) -> str:
    """Refuse --format sarif before a command without findings reads anything.

    Typer converts what the callback returns into the enum again, from its
    value's text (an enum member given back would become None)."""
    if ctx.info_name not in render.FINDING_COMMANDS:
        render.refuse_sarif(value)
    return value.value


FormatOpt = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", callback=_check_format, help="Output format (sarif: scan, check and diff only)."),
]
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


def problems_note(ckpt: Checkpoint) -> str | None:
    """The stderr warning for an input that disagrees with itself (a sharded index naming
    tensors its shards lack): commands read what the shards hold; ``check`` lists each."""
    if not ckpt.problems:
        return None
    count = plural(len(ckpt.problems), "problem")
    disagree = f"the index and its shards disagree ({count}); 'paraminspect check' lists them"
    return f"paraminspect: warning: {ckpt.path}: {disagree}"


@contextmanager
def lasting() -> Iterator[None]:
    """Build objects that live until the process exits (a checkpoint's entries, its
    quantized weights, a report's rows) without the cyclic collector: with 10^5 entries
    it would walk them again and again and free nothing, a third of `tree` on a large header.
    Afterwards they are frozen out of later collections, which stay on for the rest."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def read_checkpoint(path: Path) -> Checkpoint:
    """``open_checkpoint`` for a command: its entries built as :func:`lasting` objects."""
    with lasting():
        return open_checkpoint(path)


def open_input(path: Path) -> Checkpoint:
    """:func:`read_checkpoint`, with :func:`problems_note` on stderr."""
    ckpt = read_checkpoint(path)
    if (note := problems_note(ckpt)) is not None:
        render.write_message(note)
    return ckpt


RawOpt = Annotated[
    bool,
    typer.Option("--raw", help="Show quantized weights as their stored tensors (qweight, scales...), not as one row."),
]


DequantizeOpt = Annotated[
    bool,
    typer.Option(
        "--dequantize", help="Decode quantized weights (GPTQ, AWQ, MLX, bitsandbytes...) to their float values."
    ),
]


def _quantized(ckpt: Checkpoint, raw: bool = False, *, notes: bool = True) -> Recognition | None:
    """The quantized weights of ``ckpt`` (None with --raw or when there are none); notes on stderr."""
    if raw or not looks_quantized(ckpt):  # a cheap name test first: no recogniser imported
        return None
    from paraminspect.quant.recognise import recognise

    with lasting():
        found = recognise(ckpt)
    for note in found.notes if notes else ():
        render.write_message(f"paraminspect: note: {ckpt.path}: {note}")
    return found or None


def _load_state_dict(path: Path, root: str | None, *, auto: bool = True) -> Checkpoint:
    """Open a file and cut out the state dict commands should work on (noted on stderr)."""
    ckpt, note = roots.select(open_input(path), root, auto=auto)
    if note:
        render.write_message(f"paraminspect: note: {ckpt.path}: {note}")
    return ckpt


def _selector(ckpt: Checkpoint, patterns: list[str] | None, regex: bool, found: Recognition | None = None) -> Selector:
    """Build a selector and fail (exit 2) when a pattern matches nothing at all.

    Index-form patterns (``[0][1][0].bias``) are first resolved to the dotted
    name they denote; an unmatched pattern is reported with the closest names.
    """
    given = list(patterns or [])
    resolved = resolved_patterns(given, regex, ckpt)
    selector = Selector(resolved, regex=regex)
    missing = selector.unmatched([*ckpt.entries, *(found.weights if found else ())])
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
        return resolve_index_form(pattern, ordered_names(ckpt))
    except SelectionError as exc:
        raise SelectionError(exc.message, ckpt.path) from None


def resolved_patterns(patterns: list[str] | None, regex: bool, *ckpts: Checkpoint) -> list[str]:
    """Patterns with each index form (``[0][1][0].bias``) replaced by the dotted name it denotes.

    Resolved in the first checkpoint whose structure has that path (``diff``: A, then B);
    when none has it, the first one's error is raised.
    """
    given = list(patterns or [])
    if regex:
        return given
    resolved = []
    for pattern in given:
        errors: list[SelectionError] = []
        for ckpt in ckpts:
            try:
                resolved.append(_resolve(ckpt, pattern))
                break
            except SelectionError as exc:
                errors.append(exc)
        else:
            raise errors[0]
    return resolved


class Verbosity:
    """--verbose: what remote reads cost, on stderr at the end of the command (cli.dispatch)."""

    verbose = False


VERBOSITY = Verbosity()


def remote_cost(*ckpts: Checkpoint) -> dict[str, int] | None:
    """Requests made and bytes fetched, when any of these checkpoints was read remotely
    (tree/shapes JSON add it as "remote"; local outputs stay as they were)."""
    if any(getattr(s, "remote", False) for c in ckpts for s in c.sources):
        return source.COST.as_dict()
    return None


def show_progress(task: progress.Task) -> AbstractContextManager[None]:
    """io.progress.SHOW for the CLI: a bar on stderr (output/progress.py, imported
    only when long work starts, so quick commands never load it or rich)."""
    from paraminspect.output import progress as bar

    return bar.show(task)


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
    max_globals: Annotated[
        int,
        typer.Option(
            min=1, help="Most distinct globals (classes, functions) a pickle may name.", rich_help_panel=_LIMIT_HELP
        ),
    ] = _DEFAULT.max_globals,
    max_pickle_opcodes: Annotated[
        int, typer.Option(min=1, help="Most opcodes one pickle may hold.", rich_help_panel=_LIMIT_HELP)
    ] = _DEFAULT.max_pickle_opcodes,
    max_elements: Annotated[
        int,
        typer.Option(
            min=1,
            help="Most elements stats or diff may walk for one tensor view beyond 4x its stored elements "
            "(overlapping strides; broadcast views are walked over their stored elements).",
            rich_help_panel=_LIMIT_HELP,
        ),
    ] = _DEFAULT.max_elements,
    allow_full_download: Annotated[
        bool,
        typer.Option(
            "--allow-full-download",
            help="Read from a server without range support by downloading the whole file (to a temporary file).",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print what remote reads cost (requests, bytes) on stderr.")
    ] = False,
    no_progress: Annotated[
        bool,
        typer.Option("--no-progress", help="No progress bar on stderr (by default one is shown on a terminal)."),
    ] = False,
) -> None:
    """Inspect, compare and edit saved model checkpoints without torch."""
    # Global options, so every command (and every file a command opens) gets them.
    VERBOSITY.verbose = verbose
    if no_progress:
        progress.SHOW = None
    source.ALLOW_FULL_DOWNLOAD = allow_full_download
    limits.set_current(
        limits.Limits(
            max_entries=max_entries,
            max_depth=max_depth,
            max_pickle_bytes=max_pickle_bytes,
            max_numel=max_numel,
            max_globals=max_globals,
            max_pickle_opcodes=max_pickle_opcodes,
            max_elements=max_elements,
        )
    )
