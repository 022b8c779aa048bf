"""A whole checkpoint: its entries by dotted name, plus the facts about the file."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paraminspect.model.entries import Entry, TensorRef, Value
from paraminspect.model.graph import descend


@dataclass
class Checkpoint:
    """A whole checkpoint file: entries by dotted name, plus file-level facts."""

    path: Path
    format: str  # "torch-zip", "safetensors", ...
    entries: dict[str, Entry]
    metadata: dict[str, str] = field(default_factory=dict)
    # The file's own key/values with their types, as `meta` shows them: key -> (type, value).
    # GGUF key/values (GGUF type names: "UINT32", "STRING", "[STRING]", ...), a sharded
    # index's "metadata", safetensors __metadata__ ("str"), Lightning hyper_parameters.
    file_metadata: dict[str, tuple[str, Any]] = field(default_factory=dict)
    # True when the file's own order is meaningful (a torch state dict keeps
    # module order); False when writers reorder (safetensors sorts by dtype).
    ordered: bool = True
    # Tied names recorded by the file itself (safetensors save_model metadata):
    # alias name -> name that holds the data.
    aliases: dict[str, str] = field(default_factory=dict)
    # The decoded object graph (dicts, lists, TensorRef, Opaque, values) for
    # pickle-based formats, kept so writers can rebuild the original structure
    # (key types, nesting) that flat dotted names alone cannot express.
    root: Any = None
    # The dotted key this checkpoint was cut from by :meth:`subtree` ("" = whole file).
    selected: str = ""
    # The opened input files (paraminspect.io.source.Source) every read goes through;
    # held here so they stay open exactly as long as the checkpoint is in use.
    sources: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def subtree(self, prefix: str) -> Checkpoint:
        """The part under a dotted ``prefix`` (``state_dict``, ``model.encoder``) as a
        checkpoint of its own, names relative to it, so state-dict commands can run on
        a trainer checkpoint. Raises SelectionError if nothing lies under ``prefix``."""
        from paraminspect.errors import SelectionError

        prefix = prefix.strip(".")
        if not prefix:
            return self
        start = prefix + "."
        entries = {k[len(start) :]: v for k, v in self.entries.items() if k.startswith(start)}
        if not entries:
            hint = "a single value, not a group" if prefix in self.entries else "no such key"
            raise SelectionError(f"--root {prefix!r}: {hint}", self.path)
        aliases = {
            k[len(start) :]: v[len(start) :]
            for k, v in self.aliases.items()
            if k.startswith(start) and v.startswith(start)
        }
        selected = f"{self.selected}.{prefix}" if self.selected else prefix
        return replace(self, entries=entries, aliases=aliases, root=descend(self.root, prefix), selected=selected)

    @property
    def tensors(self) -> dict[str, TensorRef]:
        return {k: v for k, v in self.entries.items() if isinstance(v, TensorRef)}

    @property
    def values(self) -> dict[str, Value]:
        return {k: v for k, v in self.entries.items() if isinstance(v, Value)}

    def tied_groups(self) -> dict[str, str]:
        """Map each alias name to the first name (in file order) sharing its tensor."""
        first: dict[tuple[object, ...], str] = {}
        tied: dict[str, str] = {}
        for name, ref in self.tensors.items():
            owner = first.setdefault(ref.identity, name)
            if owner != name:
                tied[name] = owner
        for alias, owner in self.aliases.items():
            if alias in self.entries and owner in self.entries:
                tied.setdefault(alias, owner)
        return tied
