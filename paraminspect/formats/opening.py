"""Open any supported checkpoint: sniff the content (never the suffix), dispatch.

Files: torch.save zip, TorchScript, torch.export ``.pt2``, legacy torch.save pickle stream, safetensors, GGUF, numpy
``.npy``/``.npz``, an ONNX model, a sharded model's ``*.index.json``, or a DCP
``.metadata``. Directories: a sharded model (its index), a DCP checkpoint
(``.metadata``), or a model directory holding a single checkpoint file (``model.safetensors``, ``pytorch_model.bin``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from paraminspect import limits as _limits
from paraminspect.errors import CheckpointError, reading
from paraminspect.formats.magic import (
    GGUF_MAGIC,
    METADATA_NAME,
    NPY_MAGIC,
    SNIFF_BYTES,
    ZIP_MAGIC,
    fits_safetensors,
    looks_like_legacy,
    looks_like_safetensors,
)
from paraminspect.io import source, url
from paraminspect.limits import Limits
from paraminspect.model import Checkpoint

INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
INDEX_SUFFIX = ".index.json"
SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin")
# What diffusers' from_pretrained loads from a component folder when no variant is asked for,
# so a folder holding variants beside it (diffusion_pytorch_model.fp16.safetensors) opens as it does.
DIFFUSERS_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# Files a directory may hold as its checkpoint (".tar" covers torchvision-era ".pth.tar").
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".tar", ".gguf")
# Other formats a folder may hold as its one checkpoint, looked for only when it holds none of the above
# (an ONNX model beside its external data, a lone .pt2 or .npz).
OTHER_SUFFIXES = (".onnx", ".pt2", ".npz", ".npy")


def open_checkpoint(path: str | os.PathLike[str], *, limits: Limits | None = None) -> Checkpoint:
    """Read a checkpoint's structure (names, dtypes, shapes, where bytes live).

    No tensor data is read and nothing from the file is imported or executed.
    Raises :class:`~paraminspect.errors.CheckpointError` for anything unreadable.
    ``limits`` defaults to the ones in force (:func:`paraminspect.limits.current`).
    """
    limits = limits or _limits.current()
    # so checks deep in the readers (pickle.guard) see the same limits
    with _limits.using(limits), source.collecting() as opened:
        ckpt = _read(locate(path), limits)
    ckpt.sources = tuple(dict.fromkeys(opened))  # every file it is made of, read through these handles
    source.hold(ckpt.sources, ckpt)  # closing another checkpoint of these files leaves them open
    try:
        _limits.enforce(ckpt, limits)
    except CheckpointError as exc:
        exc.source = exc.source or str(path)
        raise
    return ckpt


def locate(path: str | os.PathLike[str]) -> Path:
    """Where a checkpoint named by the user is: a URL (``https://``, ``hf://`` resolved on
    the Hub), a local path, or a bare ``org/repo[@rev]`` found in the local Hub cache."""
    if isinstance(path, str) and url.is_url(path):
        path = url.parse(path)
    target = path if isinstance(path, Path) else Path(path)
    if isinstance(target, url.UrlPath):
        return _on_hub(target) if target.scheme == "hf" else target
    text = str(path)
    if not text.startswith(("/", ".", "~")) and not target.exists():
        from paraminspect.io import hub

        if hub.looks_like_repo(text):
            repo, _, rev = text.partition("@")
            return hub.cached(repo, rev or "main") or target
    return target


def _on_hub(target: url.UrlPath) -> Path:
    """``hf://org/repo[@rev][/path]`` as the file to read: a resolve URL on the Hub
    (a repo: the file :func:`choose` picks from its listing), or the cached copy offline."""
    from paraminspect.io import hub

    repo, rev, inner = hub.split(str(target)[len("hf://") :])
    if hub.offline():
        found = hub.cached(repo, rev, inner)
        if found is None:
            raise CheckpointError("is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set", target)
        return found
    if inner:
        return hub.file_url(repo, rev, inner)
    commit, names = hub.repo_files(repo, rev)
    top = sorted(n for n in names if "/" not in n)
    chosen = choose(top, top)
    if chosen is None:
        raise CheckpointError(
            f"the repo holds no checkpoint at its top level (looked for {', '.join(INDEX_NAMES + SINGLE_NAMES)});"
            " name a file: hf://org/repo/path",
            target,
        )
    return hub.file_url(repo, commit, chosen)


def choose(names: list[str], files: list[str]) -> str | None:
    """The name a folder's checkpoint is (its index, DCP metadata, one checkpoint file), if
    just one; ``files`` are those of ``names`` that are files."""
    chosen = next((n for n in INDEX_NAMES if n in names), None)
    if chosen is None and METADATA_NAME in names:
        return METADATA_NAME
    chosen = chosen or next((n for n in SINGLE_NAMES + DIFFUSERS_NAMES if n in names), None)
    if chosen is None:
        indexes = [n for n in names if n.endswith(INDEX_SUFFIX)]
        candidates = _first_split([n for n in files if n.endswith(CHECKPOINT_SUFFIXES)])
        candidates = candidates or [n for n in files if n.endswith(OTHER_SUFFIXES)]
        chosen = indexes[0] if len(indexes) == 1 else candidates[0] if not indexes and len(candidates) == 1 else None
    return chosen


def _read(target: Path, limits: Limits) -> Checkpoint:
    try:
        if target.is_dir():
            return _open_directory(target, limits)
        return _open_file(target, limits, whole=True)
    except CheckpointError as exc:
        exc.source = exc.source or str(target)
        raise


def _open_directory(directory: Path, limits: Limits) -> Checkpoint:
    try:
        chosen = resolve_directory(directory)
    except CheckpointError:
        pipeline = _open_pipeline(directory, limits)
        if pipeline is None:
            raise
        return pipeline
    if chosen.name == METADATA_NAME:
        from paraminspect.formats.dcp import read_dcp

        return _with_source(lambda: read_dcp(directory, limits), directory)
    return _open_file(chosen, limits, whole=True)


def _open_pipeline(directory: Path, limits: Limits) -> Checkpoint | None:
    """A diffusers pipeline root as one checkpoint (a prefix per component with weights),
    or None when the folder is not one (no model_index.json naming such components)."""
    from paraminspect.formats import pipeline

    parts = []
    for name in pipeline.components(directory, limits):
        sub = directory / name
        if sub.is_symlink() or not sub.is_dir():
            continue
        try:
            resolve_directory(sub, look_inside=False)
        except CheckpointError as exc:
            if "no checkpoint in it" in exc.message:
                continue  # a scheduler, a tokenizer: no weights
            raise _in_component(exc, name, directory) from None
        try:
            parts.append((name, _open_directory(sub, limits)))
        except CheckpointError as exc:
            raise _in_component(exc, name, directory) from None
    return pipeline.merge(directory, parts) if parts else None


def _in_component(exc: CheckpointError, name: str, directory: Path) -> CheckpointError:
    wrapped = CheckpointError(f"pipeline component {name!r}: {exc.message}", directory)
    return wrapped


def resolve_directory(directory: Path, *, look_inside: bool = True) -> Path:
    """The file a directory stands for: its index, its DCP ``.metadata``, or its one
    checkpoint file (shared with ``scan``, so both pick the same file).
    ``look_inside``: when there is none, list the subfolders that are checkpoints."""
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError as exc:
        raise CheckpointError(f"cannot list directory ({exc.strerror or exc})", directory) from None
    # Another naming scheme (diffusion_pytorch_model..., a lone model.pt): only if unambiguous.
    files = [n for n in names if n.endswith(CHECKPOINT_SUFFIXES + OTHER_SUFFIXES) and (directory / n).is_file()]
    if any(n.endswith(CHECKPOINT_SUFFIXES) for n in files):
        files = [n for n in files if n.endswith(CHECKPOINT_SUFFIXES)]
    chosen = choose(names, files)
    if chosen is None:
        indexes = [n for n in names if n.endswith(INDEX_SUFFIX)]
        raise _not_one_checkpoint(directory, names, indexes or files, look_inside)
    return directory / chosen


def _first_split(files: list[str]) -> list[str]:
    """A folder holding one split GGUF model (and nothing else) stands for its first split."""
    if len(files) < 2 or not all(n.endswith(".gguf") for n in files):
        return files
    from paraminspect.formats.ggufsplit import SPLIT_NAME

    found = [SPLIT_NAME.match(n) for n in files]
    models = {(m["stem"], m["count"]) for m in found if m is not None}
    if None in found or len(models) != 1:
        return files
    stem, count = models.pop()
    first = f"{stem}-00001-of-{count}.gguf"
    return [first] if first in files else files


LISTED = 4  # candidates a "which one?" message names
SUBFOLDERS_LOOKED_AT = 64  # bounds the listing a directory of many folders costs


def _not_one_checkpoint(directory: Path, names: list[str], found: list[str], look_inside: bool) -> CheckpointError:
    """The error for a directory that is not one checkpoint: what it holds that is one
    (its files, else its subfolders: a diffusers pipeline's ``unet/``, ``vae/``), and
    how to name one."""
    in_subfolders = not found and look_inside
    if in_subfolders:
        found = [f"{n}/" for n in _checkpoint_subfolders(directory, names)]
    if not found:
        return CheckpointError(
            f"is a directory with no checkpoint in it (looked for {', '.join(INDEX_NAMES + SINGLE_NAMES)}, "
            f"a DCP {METADATA_NAME}, or one file or subfolder holding a checkpoint)",
            directory,
        )
    listed = ", ".join(found[:LISTED]) + (f", ... {len(found)} in all" if len(found) > LISTED else "")
    what = "a diffusers pipeline" if in_subfolders and "model_index.json" in names else "a directory"
    example = directory / found[0].rstrip("/")
    several = f"several candidates ({listed}); name one" if len(found) > 1 else f"one candidate ({listed}); name it"
    return CheckpointError(f"is {what} with {several}, e.g. 'paraminspect shapes {example}'", directory)


def _checkpoint_subfolders(directory: Path, names: list[str]) -> list[str]:
    """Subfolders that would open as a checkpoint of their own (first few only)."""
    found = []
    for name in names[:SUBFOLDERS_LOOKED_AT]:
        sub = directory / name
        try:
            if sub.is_symlink() or not sub.is_dir():
                continue
            resolve_directory(sub, look_inside=False)  # one level: never a walk of a deep tree
        except (CheckpointError, OSError):
            continue
        found.append(name)
    return found


def _with_source(read: Callable[[], Checkpoint], source: Path) -> Checkpoint:
    try:
        return read()
    except CheckpointError as exc:
        exc.source = exc.source or str(source)
        raise
    except OSError as exc:
        raise CheckpointError(f"cannot read ({exc.strerror or exc})", source) from None


def _open_file(target: Path, limits: Limits, *, whole: bool) -> Checkpoint:
    """One file. ``whole`` allows files that stand for a multi-file checkpoint
    (an index, a DCP .metadata); shards are opened with ``whole=False``."""
    with reading(target):
        opened = source.open_source(target)  # the one handle every later read of this file uses
        fh, size = opened.reader(), opened.size
        if size == 0:
            raise CheckpointError("file is empty", target)
        head = fh.read(SNIFF_BYTES)
        fh.seek(0)
        try:
            return _dispatch(target, fh, head, size, limits, whole=whole)
        except CheckpointError as exc:
            exc.source = exc.source or str(target)
            raise


def _dispatch(target: Path, fh: BinaryIO, head: bytes, size: int, limits: Limits, *, whole: bool) -> Checkpoint:
    if head.startswith(ZIP_MAGIC):
        from paraminspect.formats import numpyzip

        if numpyzip.looks_like_npz(fh):
            return numpyzip.read_npz(target, fh, size, limits)
        from paraminspect.formats import torchzip

        records = torchzip.ZipRecords(target, fh, size, torchzip.max_records(limits))
        if torchzip.is_torchscript(records):
            from paraminspect.formats.torchscript import read_torchscript

            return read_torchscript(target, records, limits)
        if "archive_format" in records:  # torch.export.save (.pt2)
            from paraminspect.formats.export import read_pt2

            return read_pt2(target, records, limits)
        return torchzip.read_torch_zip(target, fh, size, limits)
    if head.startswith(GGUF_MAGIC):
        from paraminspect.formats import gguf, ggufsplit

        ckpt = gguf.read_gguf(target, fh, size, limits)
        files = ggufsplit.split_files(target, ckpt.file_metadata) if whole else None
        if not files:
            return ckpt
        return ggufsplit.merge_splits(target, [ckpt if f == target else _open_split(f, limits) for f in files])
    if looks_like_legacy(head):  # the legacy reader (and the unpickler) only for legacy files
        from paraminspect.formats import legacy

        return legacy.read_legacy(target, fh, size, limits)
    safetensors_head = looks_like_safetensors(head)
    if safetensors_head and fits_safetensors(head, size):  # the sharded reader only when the head is in doubt
        from paraminspect.formats.safetensors import read_safetensors

        return read_safetensors(target, fh, size, limits)
    from paraminspect.formats import sharded

    if safetensors_head and not sharded.looks_like_index(head):
        from paraminspect.formats.safetensors import read_safetensors

        return read_safetensors(target, fh, size, limits)
    if whole and sharded.looks_like_index(head):
        raw = sharded.read_index_bytes(fh, size, limits)
        opener: sharded.Opener = lambda shard, lim: _open_file(shard, lim, whole=False)  # noqa: E731
        if isinstance(target, url.UrlPath):
            opener = _open_shards(target, raw, limits)
        return sharded.read_index(target, raw, limits, opener)
    if whole and target.name == METADATA_NAME and head.startswith(b"\x80"):
        from paraminspect.formats.dcp import read_dcp

        return _with_source(lambda: read_dcp(target.parent, limits), target.parent)
    if head.startswith(NPY_MAGIC):
        from paraminspect.formats.npy import read_npy

        return read_npy(target, fh, size, limits)
    from paraminspect.formats import onnx

    if onnx.looks_like_onnx(head):
        return onnx.read_onnx(target, fh, size, limits)
    raise CheckpointError(
        "not a recognised checkpoint (expected torch.save, safetensors, GGUF, numpy .npy/.npz, ONNX,"
        " a sharded *.index.json or a DCP directory)",
        target,
    )


def _open_split(path: Path, limits: Limits) -> Checkpoint:
    if not path.exists():
        raise CheckpointError(f"split {path.name} of this GGUF model is missing")
    return _open_file(path, limits, whole=False)


SHARD_FIRST_READ_PER_TENSOR = 192  # header bytes per tensor a shard's first read allows for


def _open_shards(index: Path, raw: bytes, limits: Limits) -> Callable[[Path, Limits], Checkpoint]:
    """Open and read a remote index's shards concurrently, each header read as soon as it
    arrives (in one request when the first read, sized by the tensors the index puts in
    the shard, holds it): the opener ``read_index`` then takes them from."""
    from paraminspect.formats import sharded
    from paraminspect.io import ranged

    weight_map, _ = sharded.parse_index(raw)
    paths: list[Path] = []
    jobs: list[Callable[[], Checkpoint | CheckpointError]] = []
    for shard, names in sharded.group_by_shard(weight_map, limits).items():
        path = sharded.shard_path(index.parent, shard)
        first = min(ranged.FIRST_READ, (16 << 10) + SHARD_FIRST_READ_PER_TENSOR * len(names))
        paths.append(path)
        jobs.append(functools.partial(_read_shard, path, first, limits))
    ready = dict(zip(paths, ranged.concurrently(jobs), strict=True))

    def opener(shard: Path, lim: Limits) -> Checkpoint:
        done = ready.pop(shard, None)
        if isinstance(done, CheckpointError):
            raise done
        return done if done is not None else _open_file(shard, lim, whole=False)

    return opener


def _read_shard(path: Path, first: int, limits: Limits) -> Checkpoint | CheckpointError:
    """One shard opened (``first`` bytes in its first request) and read; its error kept for
    ``read_index`` to report in its turn, as for a local shard."""
    try:
        opened = path.open_remote(first)  # type: ignore[attr-defined]
        source.adopt(opened)  # held here: the adoption is a weak reference
        return _open_file(path, limits, whole=False)
    except CheckpointError as exc:
        return exc
