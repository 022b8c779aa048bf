"""Carry out an edit plan: pick the writer, write atomically, verify, report.

Every edit command ends here, so the safety rules live in one place: the
output is chosen explicitly (``-o OUT`` or ``--in-place``), an existing file
is replaced only with ``--force``, placeholder objects are never written back
as if they were understood, and nothing replaces the target until the new
file has been re-opened and checked.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paraminspect.edit.atomic import AtomicFile, check_output, edit_lock
from paraminspect.edit.plan import Cast, Keep, Plan, Source, identity
from paraminspect.edit.unknown import held_tensor
from paraminspect.edit.verify import expected_tensors, verify_written
from paraminspect.errors import CheckpointError, UsageError
from paraminspect.io import source as input_files
from paraminspect.model import Value
from paraminspect.model.graph import module_paths
from paraminspect.output.report import plural

if TYPE_CHECKING:
    from paraminspect.edit.writers.gguf import GGUFLayout
    from paraminspect.edit.writers.safetensors import Layout


@dataclass
class EditReport:
    """What an edit command changed and wrote; ``document`` is also the JSON form (render.write_edit)."""

    document: dict[str, Any]


SAFETENSORS_SUFFIXES = {".safetensors"}
TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".tar"}


def output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if suffix == ".gguf":
        return "gguf"
    raise UsageError(
        f"cannot tell the output format from the suffix {suffix or '(none)'!r}: use .safetensors or .pt/.pth/.bin",
        path,
    )


def _format_of_input(plan: Plan) -> str:
    if plan.ckpt.format == "safetensors":
        return "safetensors"
    if plan.ckpt.format == "torch-zip":
        return "torch"
    if plan.ckpt.format == "gguf":
        return "gguf"
    raise UsageError(f"--in-place cannot write the {plan.ckpt.format} format; use -o OUT", plan.ckpt.path)


def _whole_modules(plan: Plan, drop_unknown: bool, notes: list[str]) -> None:
    """A pickled ``nn.Module`` (read by its state-dict names) cannot be written back as
    a module: refuse, or with ``--drop-unknown`` write each module's state dict in its
    place (the .pt writer does), saying so."""
    modules = module_paths(plan.ckpt.root)
    if not modules:
        return
    if not drop_unknown:
        listed = ", ".join(f"{p or '(the file)'} <{q}>" for p, q in modules[:5])
        raise UsageError(
            f"holds whole pickled modules paraminspect cannot write back as modules ({listed}); "
            "pass --drop-unknown to write their state dicts instead",
            plan.ckpt.path,
        )
    for path, qualname in modules:
        where = "the input" if not path else repr(path)
        notes.append(f"{where} is a whole pickled module <{qualname}>: wrote its state dict in its place")


def save(
    plan: Plan,
    output: Path | None,
    *,
    in_place: bool = False,
    force: bool = False,
    dry_run: bool = False,
    drop_unknown: bool = False,
) -> EditReport:
    """Write ``plan`` to ``output`` (or over the input with ``in_place``) and describe what happened."""
    ckpt = plan.ckpt
    if (output is None) != in_place:
        raise UsageError("give exactly one of -o OUT and --in-place")
    target_arg = ckpt.path if output is None else output
    fmt = _format_of_input(plan) if in_place else output_format(target_arg)
    if plan.file_metadata is not None and fmt != _format_of_input(plan):
        raise UsageError(f"{plan.command} writes the input's format ({ckpt.format}): give -o a .{ckpt.format} path")
    target = check_output(target_arg, source=ckpt.path, in_place=in_place, force=force)
    notes: list[str] = []
    if plan.command == "convert":
        notes.append(f"converted {ckpt.format} to {fmt}")
    lost: dict[str, str] = {}  # tensors a safetensors file cannot hold -> what each is
    if fmt == "torch":
        _whole_modules(plan, drop_unknown, notes)
        from paraminspect.edit.writers.torchsave import unwritable

        unknown = plan.unknown(unwritable)
        if unknown and not drop_unknown:
            raise UsageError(
                f"holds objects paraminspect cannot write back faithfully ({_listed(unknown)}); "
                "pass --drop-unknown to leave them out",
                ckpt.path,
            )
        if unknown:
            plan.drop_unknown(unknown)
    elif fmt == "safetensors":
        lost = plan.unknown(held_tensor)
        if lost and not drop_unknown:
            raise UsageError(
                f"holds tensors safetensors cannot store ({_listed(lost)}); pass --drop-unknown to leave them out",
                ckpt.path,
            )
        for name, what in lost.items():
            plan.change("dropped", name, f"{what}: safetensors cannot store it (--drop-unknown)")
        if lost:
            notes.append(
                plural(len(lost), "tensor", "tensors")
                + f" not stored (safetensors cannot hold them): {', '.join(lost)}"
            )
    skipped_values = (
        [n for n, i in plan.items.items() if isinstance(i, Value) and n not in lost] if fmt == "safetensors" else []
    )
    if skipped_values:
        notes.append(
            plural(len(skipped_values), "non-tensor entry", "non-tensor entries")
            + " not stored (safetensors holds tensors only)"
        )
    tensors = plan.tensors
    if not tensors:
        raise UsageError("nothing to write: the result holds no tensors", ckpt.path)
    layout: Layout | GGUFLayout | None = None
    if fmt == "safetensors":  # lay the file out now, so a dry run reports what cannot be stored
        from paraminspect.edit.writers import safetensors as safetensors_write

        if plan.file_metadata is not None:
            metadata = {k: v for k, (_, v) in plan.file_metadata.items() if k not in ckpt.aliases}
        else:
            metadata = {k: v for k, v in ckpt.metadata.items() if k not in ckpt.aliases}
        layout = safetensors_write.plan_layout(tensors, metadata)
    elif fmt == "gguf":
        from paraminspect.edit.writers import gguf as gguf_write

        layout = gguf_write.plan_layout(ckpt, tensors, plan.file_metadata or ckpt.file_metadata)
    elif importlib.util.find_spec("torch") is None:
        from paraminspect.edit.writers.torchsave import INSTALL_HINT

        raise UsageError(INSTALL_HINT)
    unique = {identity(s): s for s in tensors.values()}
    data_bytes = sum(s.dtype.nbytes(math.prod(s.shape)) for s in unique.values())
    document: dict[str, Any] = {
        "command": plan.command,
        "input": str(ckpt.path),
        "output": str(target_arg),
        "format": fmt,
        "dry_run": dry_run,
        "written": False,
        "verified": False,
        "changes": plan.changes,
        "tensors": len(tensors),
        "stored_tensors": len(unique),
        "tensor_bytes": data_bytes,
        "file_bytes": None,
        "values_not_stored": skipped_values,
        "tensors_not_stored": list(lost),
        "notes": notes,
    }
    if dry_run:
        return EditReport(document)
    inputs = _inputs(plan)
    try:
        if in_place:
            edited = input_files.get(ckpt.path)
            with edit_lock(edited.fd, ckpt.path):
                _write(plan, layout, target, target_arg, data_bytes, inputs)
                edited.replaced = True  # the path now names our result; the handle still reads what was edited
        else:
            _write(plan, layout, target, target_arg, data_bytes, inputs)
    except OSError as exc:
        raise UsageError(f"cannot write ({exc.strerror or exc})", target_arg) from None
    document.update(written=True, verified=True, file_bytes=target.stat().st_size)
    return EditReport(document)


def _listed(unknown: dict[str, str], limit: int = 5) -> str:
    """The first few of ``unknown`` (name -> what it is) for a message."""
    items = [f"{name} {what}" for name, what in list(unknown.items())[:limit]]
    more = len(unknown) - limit
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


def _inputs(plan: Plan) -> tuple[input_files.Source, ...]:
    """The opened files the edit reads (those its checkpoint was opened with, else those
    its tensors name), to check before anything is replaced."""
    if plan.ckpt.sources:
        return tuple(plan.ckpt.sources)
    paths = {s.ref.storage.path for s in plan.tensors.values() if isinstance(s, Keep | Cast)}
    return tuple(input_files.get(p) for p in sorted(paths))


def _write(
    plan: Plan,
    layout: Layout | GGUFLayout | None,
    target: Path,
    label: Path,
    data_bytes: int,
    inputs: tuple[input_files.Source, ...],
) -> None:
    """Write with the safetensors or GGUF ``layout``, or with torch when there is none; verify, and
    check that no input changed while it was read, before replacing."""
    tensors = plan.tensors

    def unchanged() -> None:
        input_files.check(inputs, "nothing was written")

    with AtomicFile(
        target, need_bytes=data_bytes + (1 << 20), mode_from=plan.ckpt.path, before_replace=unchanged
    ) as out:
        from paraminspect.edit.writers import gguf as gguf_write

        aliases: dict[str, str] | None
        metadata: dict[str, str] | None
        values: dict[str, Any] | None
        storages: dict[str, object] | None
        file_metadata = None
        if isinstance(layout, gguf_write.GGUFLayout):
            crcs = gguf_write.write(layout, out.file)
            aliases, metadata, values, storages = {}, None, None, None
            file_metadata = layout.file_metadata
        elif layout is not None:
            from paraminspect.edit.verify import warm_official_check
            from paraminspect.edit.writers import safetensors as safetensors_write

            warm_official_check()
            crcs = safetensors_write.write(layout, out.file)
            aliases = layout.aliases
            metadata = layout.metadata
            values = None
            storages = None  # every stored name has its own byte range
        else:
            from paraminspect.edit.writers import torchsave as torch_write

            crcs = torch_write.write(plan, out.file)
            aliases = metadata = None
            values = {n: i.value for n, i in plan.items.items() if isinstance(i, Value)}
            storages = {n: _storage_key(s) for n, s in tensors.items()}
        expected = expected_tensors(plan, crcs, label)
        ties = {n: identity(s) for n, s in tensors.items()}

        def verify(path: Path) -> None:
            try:
                verify_written(
                    path,
                    expected,
                    aliases=aliases,
                    values=values,
                    label=label,
                    ties=ties,
                    storages=storages,
                    metadata=metadata,
                    file_metadata=file_metadata,
                )
            except CheckpointError:
                unchanged()  # a changed input explains a failed check better than the check does
                raise

        out.commit(verify)


def _storage_key(source: Source) -> object:
    """Which storage a name's tensor should sit on in a written .pt: an unchanged one
    on its source's (views of one storage stay one), anything else on its own."""
    if isinstance(source, Keep) and not source.ref.chunks and source.ref.storage.nbytes:
        return source.ref.storage.identity
    return identity(source)
