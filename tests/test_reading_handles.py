"""Closing one reader never closes a file handle another open reader reads through.

Two ``safe_open`` of one unchanged file, or a sharded model and one of its shards, share
one Source. Were the first ``close`` to close it, the other reader's next read would reopen
the path and read whatever file is there by then, unchecked. So each test replaces the file
after the first reader closes and expects the values ``safetensors.safe_open`` read from the
file as it was opened (the independent reference), never the replacement's.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import numpy as np
import safetensors
from safetensors.numpy import save_file

from paraminspect import open_checkpoint
from paraminspect.api.reading import safe_open

OLD = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, dtype=np.int64)}
NEW = {"a": -np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(5, dtype=np.int64)}  # same layout


def reference(path: Path) -> dict[str, np.ndarray]:
    with safetensors.safe_open(path, "np") as theirs:
        return {name: theirs.get_tensor(name) for name in theirs.keys()}  # noqa: SIM118  (a reader, not a dict)


def replace_with(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write another file of the same size in its place (a new inode, as a download or an edit leaves it)."""
    staged = path.with_suffix(".new")
    save_file(tensors, staged)
    assert staged.stat().st_size == path.stat().st_size
    os.replace(staged, path)


def assert_reads(reader: object, expected: dict[str, np.ndarray]) -> None:
    for name, want in expected.items():
        got = reader.get_tensor(name)  # type: ignore[attr-defined]
        assert got.dtype == want.dtype and np.array_equal(got, want), name


def test_closing_one_reader_keeps_the_other_reading_the_file_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file(OLD, path)
    expected = reference(path)
    with safe_open(path) as kept:
        with safe_open(path) as other:
            assert_reads(other, expected)
        replace_with(path, NEW)
        assert_reads(kept, expected)
        assert all(not s.closed for s in kept.checkpoint.sources)
        sources = kept.checkpoint.sources
    assert all(s.closed for s in sources)  # the last holder's exit closes the file


def test_closing_a_shard_reader_keeps_the_sharded_reader_reading(tmp_path: Path) -> None:
    shards = {"model-00001-of-00002.safetensors": {"a": OLD["a"]}, "model-00002-of-00002.safetensors": {"b": OLD["b"]}}
    for file, tensors in shards.items():
        save_file(tensors, tmp_path / file)
    weight_map = {name: file for file, tensors in shards.items() for name in tensors}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    first = tmp_path / "model-00001-of-00002.safetensors"
    expected = reference(first)
    with safe_open(tmp_path) as model:
        with safe_open(first) as shard:
            assert_reads(shard, expected)
        replace_with(first, {"a": NEW["a"]})
        assert_reads(model, expected)


def test_a_checkpoint_opened_without_a_reader_holds_its_files_too(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file(OLD, path)
    expected = reference(path)
    ckpt = open_checkpoint(path)
    with safe_open(path) as reader:
        assert_reads(reader, expected)
    replace_with(path, NEW)
    from paraminspect.api.reading import read_tensor

    assert np.array_equal(read_tensor(ckpt.tensors["a"]), expected["a"])


def test_a_dropped_checkpoint_does_not_keep_files_open(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file(OLD, path)
    open_checkpoint(path)  # dropped at once: it holds nothing any more
    gc.collect()
    with safe_open(path) as reader:
        sources = reader.checkpoint.sources
    assert all(s.closed for s in sources)
