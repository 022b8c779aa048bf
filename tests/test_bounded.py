"""Bounded cost, exact results: broadcast views' statistics and comparisons from
their stored elements (torch's own reductions as the oracle), the new limits,
placeholders, DCP items sharing one stored item, and non-regular files."""

from __future__ import annotations

import json
import math
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from paraminspect import limits, open_checkpoint
from paraminspect.compare.elementwise import compare_tensors
from paraminspect.data import broadcast
from paraminspect.data.arrays import read_array
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats import dcp as dcp_format
from paraminspect.inspect.stats import tensor_stats
from paraminspect.io.files import open_regular
from paraminspect.limits import Limits
from tests.conftest import run_cli
from tests.hostile_build import torch_zip
from tests.hostile_costly import dcp_shared_items, long_name_file


def _views() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    base = torch.randn(6, 1, 7, generator=generator, dtype=torch.float64).float()
    base[0, 0, 1] = math.nan
    base[2, 0, 3] = math.inf
    base[4, 0, 0] = 0.0
    ints = torch.randint(-50, 50, (5,), generator=generator)
    return {
        "expand": base.expand(6, 40, 7),  # stride 0 in the middle
        "leading": torch.randn(9, generator=generator).expand(30, 9),
        "strided0": torch.as_strided(torch.randn(12, generator=generator), (4, 50, 3), (3, 0, 1)),
        "scalar": torch.tensor(2.5).expand(11, 13),
        "ints": ints.expand(17, 5),
        "transposed": torch.randn(3, 5, generator=generator).t().unsqueeze(1).expand(5, 8, 3),
    }


def _torch_stats(t: torch.Tensor) -> dict[str, Any]:
    x = t.double().reshape(-1)
    finite = x[torch.isfinite(x)]
    return {
        "numel": t.numel(),
        "min": finite.min().item(),
        "max": finite.max().item(),
        "mean": finite.mean().item(),
        "std": finite.std().item(),
        "mean_abs": finite.abs().mean().item(),
        "l2": finite.square().sum().sqrt().item(),
        "nan": int(torch.isnan(x).sum()),
        "posinf": int((x == math.inf).sum()),
        "neginf": int((x == -math.inf).sum()),
        "zeros": int((x == 0).sum()),
    }


def test_broadcast_view_statistics_match_torch_on_the_whole_view(tmp_path: Path) -> None:
    views = _views()
    torch.save(views, tmp_path / "views.pt")
    ckpt = open_checkpoint(tmp_path / "views.pt")
    for name, tensor in views.items():
        ref = ckpt.tensors[name]
        assert 0 in ref.strides, name  # torch.save kept the broadcast
        distinct, times = broadcast.distinct(ref)
        assert distinct.numel * times == tensor.numel() and times > 1, name
        got = tensor_stats(ref, chunk_elements=16).result()
        want = _torch_stats(tensor)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), (name, key)


def test_broadcast_comparison_matches_torch(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(4, 1, 6, generator=generator)
    y = x.clone()
    y[1, 0, 2] += 0.5
    y[3, 0, 5] = math.nan
    y[0, 0, 0] -= 2.0
    z = torch.randn(1, 9, 6, generator=generator)
    pairs = {
        "same_pattern": (x.expand(4, 9, 6), y.expand(4, 9, 6)),  # reduced to the stored elements
        "other_pattern": (x.expand(4, 9, 6), z.expand(4, 9, 6)),  # broadcast along different dims
        "against_dense": (x.expand(4, 9, 6), y.expand(4, 9, 6).contiguous()),
    }
    torch.save({k: a for k, (a, _) in pairs.items()}, tmp_path / "a.pt")
    torch.save({k: b for k, (_, b) in pairs.items()}, tmp_path / "b.pt")
    a_ckpt, b_ckpt = open_checkpoint(tmp_path / "a.pt"), open_checkpoint(tmp_path / "b.pt")
    for name, (a, b) in pairs.items():
        stats = compare_tensors(a_ckpt.tensors[name], b_ckpt.tensors[name])
        diff = (a.double() - b.double()).abs()
        close = torch.isclose(a.double(), b.double(), rtol=1e-5, atol=1e-8, equal_nan=True)
        assert stats.differing == int((~close).sum()), name
        flat = diff.reshape(-1)
        nan_at = torch.nonzero(torch.isnan(flat))
        at = int(nan_at[0]) if len(nan_at) else int(torch.argmax(flat))  # torch.argmax: first maximum
        expected_index = list(torch.unravel_index(torch.tensor(at), a.shape))
        assert stats.index == [int(i) for i in expected_index], name
        if len(nan_at):
            assert math.isnan(stats.max_abs), name
        else:
            assert stats.max_abs == pytest.approx(float(flat.max()), rel=1e-12), name


def _zip_tensor(path: Path, numel: int, size: tuple[int, ...], stride: tuple[int, ...]) -> Path:
    from tests.hostile_build import tensor_pickle

    torch_zip(path, tensor_pickle(numel, 0, size, stride), {"data/0": b"\0" * (4 * numel)})
    return path


def test_huge_broadcast_view_is_summarised_from_its_one_stored_element(tmp_path: Path) -> None:
    path = _zip_tensor(tmp_path / "big.pt", 1, (1 << 40, 1 << 6), (0, 0))  # 2^46 zeros: months if walked
    doc = json.loads(run_cli("stats", "-f", "json", path).out)
    row = doc["tensors"][0]
    assert (row["numel"], row["zeros"], row["mean"], row["std"], row["max"]) == (1 << 46, 1 << 46, 0.0, 0.0, 0.0)
    assert run_cli("diff", path, path).code == 0


def test_overlapping_view_is_refused_past_max_elements_and_the_option_raises_it(tmp_path: Path) -> None:
    path = _zip_tensor(tmp_path / "window.pt", 64, (33, 32), (1, 1))  # 1056 elements over 64 stored
    with limits.using(Limits(max_elements=1000)):
        ref = open_checkpoint(path).tensors["t"]
        with pytest.raises(LimitExceeded, match="walks 1,056 elements over 64 stored ones"):
            tensor_stats(ref)
        with pytest.raises(LimitExceeded, match="--max-elements"):
            compare_tensors(ref, ref)
    result = run_cli("--max-elements", "1000", "stats", path)
    assert result.code == 2 and "use --max-elements to raise it" in result.err
    doc = json.loads(run_cli("--max-elements", "2000", "stats", "-f", "json", path).out)
    assert doc["tensors"][0]["numel"] == 1056 and doc["tensors"][0]["zeros"] == 1056


def _globals_pickle(n: int) -> bytes:
    return b"\x80\x02(" + b"".join(b"cm%d\nn\n)R" % i for i in range(n)) + b"l."


def test_distinct_globals_are_limited_and_the_option_raises_it(tmp_path: Path) -> None:
    path = tmp_path / "globals.pt"
    torch_zip(path, _globals_pickle(60))
    for command in ("tree", "scan"):
        result = run_cli("--max-globals", "50", command, path)
        assert result.code == 2, command
        assert "pickle names more than 50 distinct globals (use --max-globals" in result.err, command
    tree = run_cli("--max-globals", "60", "tree", path)
    assert tree.code == 0
    # The names the pickle holds, read independently of paraminspect's unpickler.
    import pickletools

    names = [arg.replace(" ", ".") for op, arg, _ in pickletools.genops(_globals_pickle(60)) if op.name == "GLOBAL"]
    assert all(f"<object {name}>" in tree.out for name in names)


def test_placeholder_classes_are_not_kept_for_every_name_ever_seen() -> None:
    from paraminspect.model import entries as model

    for i in range(3 * model._OPAQUE_CACHE_SIZE):
        assert model.opaque_class(f"mod{i}.name")().qualname == f"mod{i}.name"
    assert len(model._OPAQUE_CLASSES) <= model._OPAQUE_CACHE_SIZE


def test_pickle_opcode_limit_in_reader_and_scan(tmp_path: Path) -> None:
    path = tmp_path / "nones.pt"
    torch_zip(path, b"\x80\x02(" + b"N" * 5000 + b"l.")
    for command in ("tree", "scan"):
        result = run_cli("--max-pickle-opcodes", "4000", command, path)
        assert result.code == 2 and "more than 4,000 opcodes (use --max-pickle-opcodes" in result.err, command
        assert run_cli("--max-pickle-opcodes", "6000", command, path).code == 0, command


def test_scan_refuses_a_data_pkl_over_the_size_limit_before_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    torch_zip(path, b"\x80\x02(" + b"N" * 3000 + b"l.")
    for command in ("tree", "scan"):
        result = run_cli("--max-pickle-bytes", "2000", command, path)
        assert result.code == 2 and "over the 2,000-byte limit (use --max-pickle-bytes" in result.err, command


def test_long_name_json_exact_table_unpadded(tmp_path: Path) -> None:
    path = tmp_path / "long.safetensors"
    name = long_name_file(path)
    with safe_open(str(path), framework="pt") as f:
        official = set(f.keys())
    doc = json.loads(run_cli("shapes", "-f", "json", path).out)
    assert {row["name"] for row in doc["tensors"]} == official
    table = run_cli("shapes", path).out
    assert table.count(name) == 1
    assert len(table) < len(name) + 100_000  # 101 rows: before, each was padded to the long name


def test_dcp_items_sharing_one_stored_item_are_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dcp_shared_items(tmp_path / "d", 500)
    with open(tmp_path / "d" / ".metadata", "rb") as fh:
        meta = pickle.load(fh)  # torch's own objects: the reference
    calls = []
    real = dcp_format.read_torch_zip
    monkeypatch.setattr(dcp_format, "read_torch_zip", lambda *a: calls.append(a) or real(*a))
    ckpt = open_checkpoint(tmp_path / "d")
    assert len(calls) == 1
    assert {n: list(r.shape) for n, r in ckpt.tensors.items()} == {
        n: list(item.size) for n, item in meta.state_dict_metadata.items()
    }
    assert read_array(ckpt.tensors["w417"]).tolist() == torch.arange(6.0).reshape(2, 3).tolist()
    with limits.using(Limits(max_entries=100)), pytest.raises(LimitExceeded):
        open_checkpoint(tmp_path / "d")


@pytest.mark.parametrize("where", ["argument", "model_dir", "dcp_metadata", "dcp_data", "shard"])
def test_non_regular_files_are_refused_without_blocking(tmp_path: Path, where: str) -> None:
    if where == "argument":
        target = fifo = tmp_path / "model.pt"
    elif where == "model_dir":
        target, fifo = tmp_path, tmp_path / "model.safetensors"
    elif where == "shard":
        target, fifo = tmp_path / "model.safetensors.index.json", tmp_path / "a.safetensors"
        target.write_text(json.dumps({"weight_map": {"w": "a.safetensors"}}))
    else:
        dcp_shared_items(tmp_path, 1)
        target = tmp_path
        fifo = tmp_path / ".metadata" if where == "dcp_metadata" else next(tmp_path.glob("*.distcp"))
        fifo.unlink()
    os.mkfifo(fifo)
    for command in ("shapes", "scan"):
        result = run_cli(command, target)  # on the old code: blocks forever in open()
        assert result.code == 2, (command, result.err)
        assert "named pipe (FIFO), not a regular file" in result.err, (command, result.err)


def test_open_regular_refuses_devices_and_reports_directories(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="character device"):
        open_regular("/dev/null")
    with pytest.raises(IsADirectoryError):
        open_regular(tmp_path)
    (tmp_path / "f").write_bytes(b"x")
    with open_regular(tmp_path / "f") as fh:
        assert fh.read() == b"x" and stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
