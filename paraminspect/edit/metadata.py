"""``set-meta`` and ``rm-meta``: plans that change a file's own metadata and keep every
tensor as it is (copied byte range to byte range by the writer, then verified).

Which formats can be edited is one table, :data:`EDITABLE`: input format -> how
a VALUE given on the command line becomes a typed value (``Checkpoint.file_metadata``
form, ``(type, value)``). ``save.save`` writes the plan's ``file_metadata`` with the
input format's writer. A GGUF writer plugs in with one row
(``"gguf": Editable(parse_gguf_value)``: the key's existing GGUF type, or one
given, decides how the text is parsed), its suffix in ``save.output_format`` and
its branch in ``save._write``; the plans here do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paraminspect.edit.ggufvalues import parse_gguf_value
from paraminspect.edit.plan import Plan
from paraminspect.errors import SelectionError, UsageError
from paraminspect.model import Checkpoint
from paraminspect.naming.select import suggestions

# transformers 4 refuses a safetensors file that has metadata whose ``format`` is not
# one of these (modeling_utils.load_state_dict; transformers 5 no longer checks), so an
# edit that makes a loadable file refused gets a warning.
SAFETENSORS_FORMATS = ("pt", "tf", "flax", "mlx")


Typed = tuple[str, Any]  # (type name, value), as Checkpoint.file_metadata holds them
# (key, the text given, the key's current typed value or None, the --type asked for or None)
# -> the typed value to store.
Parse = Callable[[str, str, Typed | None, str | None], Typed]


def _string(key: str, text: str, _old: Typed | None, kind: str | None) -> Typed:
    if kind not in (None, "str"):
        raise UsageError(f"--type {kind}: safetensors metadata holds strings only (--type str)")
    return ("str", text)  # safetensors metadata maps strings to strings


@dataclass(frozen=True)
class Editable:
    """How one input format's metadata values are made from command-line text."""

    parse: Parse


EDITABLE = {"safetensors": Editable(_string), "gguf": Editable(parse_gguf_value)}

Warn = Callable[[str], None]
TEMPLATE_KEY = "tokenizer.chat_template"  # what --chat-template-file sets (GGUF)
MAX_TEMPLATE_BYTES = 16 << 20


def template_text(path: Path) -> str:
    """A chat template file's text (UTF-8), for ``set-meta --chat-template-file``."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the chat template ({exc.strerror or exc})", path) from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise UsageError(f"chat template is longer than {MAX_TEMPLATE_BYTES:,} bytes", path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"chat template is not valid UTF-8 (byte {exc.start})", path) from None


def editable(ckpt: Checkpoint) -> Editable:
    """The row of :data:`EDITABLE` for the input, or a usage error naming what is editable."""
    found = EDITABLE.get(ckpt.format)
    count = ckpt.file_metadata.get("split.count", ("", 1))[1] if ckpt.format == "gguf" else 1
    if isinstance(count, int) and count > 1:
        raise UsageError(
            f"is a split GGUF model ({count} files): its metadata is not editable split by split;"
            " merge it first (llama-gguf-split --merge)",
            ckpt.path,
        )
    if found is None:
        formats = ", ".join(sorted(EDITABLE))
        raise UsageError(
            f"the metadata of {ckpt.format} checkpoints is not editable yet (editable: {formats})", ckpt.path
        )
    return found


def _check_key(ckpt: Checkpoint, key: str) -> None:
    """Keys that are not plain metadata in safetensors: tied-name records and tensor names."""
    if not key:
        raise UsageError("a metadata key cannot be empty", ckpt.path)
    if key in ckpt.aliases:
        raise UsageError(
            f"metadata key {key!r} records a tied name (the tensor {ckpt.aliases[key]!r}); it is kept with the tie",
            ckpt.path,
        )
    if key in ckpt.entries and ckpt.format == "safetensors":
        raise UsageError(
            f"metadata key {key!r} is also a tensor name; the safetensors writer cannot keep both", ckpt.path
        )


def plan_set_meta(ckpt: Checkpoint, key: str, value: str, warn: Warn, type_name: str | None = None) -> Plan:
    """Every tensor unchanged, ``key`` set to ``value`` in the file's metadata (of type
    ``type_name`` when given; else an existing key's, or one the format infers)."""
    kind = editable(ckpt)
    _check_key(ckpt, key)
    if value in ckpt.tensors and ckpt.format == "safetensors":
        raise UsageError(
            f"value {value!r} is a tensor name: readers (paraminspect, safetensors' save_model) "
            f"would take {key!r} for a tied name",
            ckpt.path,
        )
    plan = Plan.unchanged(ckpt, "set-meta")
    metadata = dict(ckpt.file_metadata)
    old = metadata.get(key)
    try:
        metadata[key] = kind.parse(key, value, old, type_name)
    except UsageError as exc:
        raise UsageError(exc.message, ckpt.path) from None
    plan.file_metadata = metadata
    _warn_if_refused(ckpt, metadata, warn)
    detail = f"= {_short(value)}, " + ("new key" if old is None else f"was {_short(old[1])}")
    plan.change("set-meta", key, detail)
    return plan


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}...' ({len(str(value)):,} chars)"


def plan_rm_meta(ckpt: Checkpoint, keys: list[str], warn: Warn) -> Plan:
    """Every tensor unchanged, ``keys`` (exact) removed from the file's metadata."""
    editable(ckpt)
    metadata = dict(ckpt.file_metadata)
    for key in keys:
        if key not in metadata:
            close = suggestions(key, [k for k in metadata if k not in ckpt.aliases])
            hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
            raise SelectionError(f"no metadata key {key!r}{hint}", ckpt.path)
        _check_key(ckpt, key)
    plan = Plan.unchanged(ckpt, "rm-meta")
    for key in keys:
        del metadata[key]
        plan.change("rm-meta", key)
    plan.file_metadata = metadata
    _warn_if_refused(ckpt, metadata, warn)
    return plan


def _refused_by_transformers(metadata: dict[str, Typed]) -> bool:
    return bool(metadata) and metadata.get("format", ("", None))[1] not in SAFETENSORS_FORMATS


def _warn_if_refused(ckpt: Checkpoint, after: dict[str, Typed], warn: Warn) -> None:
    """Warn when the edit makes a safetensors file transformers 4 loads into one it refuses."""
    if (
        ckpt.format == "safetensors"
        and _refused_by_transformers(after)
        and not _refused_by_transformers(ckpt.file_metadata)
    ):
        warn(
            "transformers 4 refuses to load a safetensors file whose metadata has no 'format' of "
            + ", ".join(SAFETENSORS_FORMATS)
            + " (set one with: paraminspect set-meta FILE format pt)"
        )
