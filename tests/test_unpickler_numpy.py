"""numpy arrays, dtypes, scalars and RNG states inside checkpoints: read as inert values whose
dtype and shape are what torch.load(weights_only=False) returns, scanned as numpy array data."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from paraminspect.formats.opening import open_checkpoint
from paraminspect.formats.pickle.numpydata import ndarray
from paraminspect.formats.pickle.scanner import NUMPY_DATA
from paraminspect.inspect.scan import scan_file
from paraminspect.model import Value
from tests.conftest import run_cli

ARRAYS: dict[str, Any] = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "fortran_i16": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
    "big_endian_f8": np.arange(4, dtype=">f8"),
    "u8": np.array([0, 255], dtype=np.uint8),
    "bool": np.array([True, False]),
    "c64": np.array([1 + 2j], dtype=np.complex64),
    "f16": np.array([0.5, -2], dtype=np.float16),
    "empty": np.zeros((0, 3)),
    "text": np.array(["ab", "c"]),
    "bytes": np.array([b"xyz"]),
    "scalar_f64": np.float64(1.5),
    "scalar_i64": np.int64(-3),
    "scalar_c64": np.complex64(1 + 2j),
    "scalar_bool": np.bool_(True),
    "scalar_f16": np.float16(0.25),
    "scalar_big_endian": np.array([7], dtype=">i4")[0],
}


def _dtype_name(a: np.ndarray) -> str:
    return a.dtype.name if a.dtype.kind in "biufc" else a.dtype.str


def _trainer_rng_state(path: Path) -> dict[str, Any]:
    """transformers' Trainer._save_rng_state on a CPU machine (trainer.py: python, numpy, cpu)."""
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    torch.save(states, path)
    return states


def test_arrays_and_scalars_are_read_with_torch_loads_dtype_shape_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "arrays.pt"
    torch.save(ARRAYS, path)
    reference = torch.load(path, weights_only=False)
    ckpt = open_checkpoint(path)
    for name, expected in reference.items():
        entry = ckpt.entries[name]
        assert isinstance(entry, Value), name
        if isinstance(expected, np.ndarray):
            assert isinstance(entry.value, ndarray), name
            assert entry.value.dtype_name == _dtype_name(expected), name
            assert entry.value.shape == expected.shape, name
            assert entry.value.fortran == (expected.flags.f_contiguous and not expected.flags.c_contiguous), name
            stored = entry.value.dtype.numpy_code if entry.value.dtype is not None else None
            decoded = np.frombuffer(entry.value.data, dtype=stored).reshape(
                expected.shape, order="F" if entry.value.fortran else "C"
            )
            assert np.array_equal(decoded, expected), name  # the file's bytes mean torch.load's values
        else:
            assert type(entry.value) in (int, float, bool, complex) and entry.value == expected.item(), name


def test_rng_state_files_show_arrays_in_tree_and_get(tmp_path: Path) -> None:
    path = tmp_path / "rng_state.pth"
    _trainer_rng_state(path)
    loaded = torch.load(path, weights_only=False)
    kind, keys, pos, has_gauss, cached = loaded["numpy"]
    shown = f"('{kind}', ndarray {_dtype_name(keys)} {list(keys.shape)}, {pos}, {has_gauss}, {cached!r})"
    assert shown == "('MT19937', ndarray uint32 [624], 624, 0, 0.0)"  # what a reader sees
    tree = run_cli("tree", path)
    assert tree.code == 0, tree.err
    assert f"├── numpy  = {shown}\n" in tree.out
    assert f"└── cpu  uint8 [{loaded['cpu'].numel()}]\n" in tree.out
    got = run_cli("get", path, "numpy")
    assert got.code == 0 and got.out == f"numpy  tuple\n{shown}\n"
    doc = json.loads(run_cli("tree", path, "-f", "json").out)
    (numpy_leaf,) = [c for c in doc["tree"]["children"] if c["name"] == "numpy"]
    assert numpy_leaf["value"][1] == "ndarray uint32 [624]"


def test_numpy_is_never_imported_to_read_them(tmp_path: Path) -> None:
    path = tmp_path / "arrays.pt"
    torch.save(ARRAYS, path)
    code = (
        "import sys\nfrom paraminspect.formats.opening import open_checkpoint\n"
        f"c = open_checkpoint({str(path)!r})\nprint(len(c.entries), 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == [str(len(ARRAYS)), "False"]


def test_trainer_rng_state_scans_clean_as_numpy_data_that_the_trainer_allow_lists(tmp_path: Path) -> None:
    from transformers.trainer_pt_utils import safe_globals

    path = tmp_path / "rng_state.pth"
    _trainer_rng_state(path)
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=True)  # torch 2.13's default allow-list has no numpy
    with safe_globals():
        torch.load(path, weights_only=True)  # as the Trainer loads it
        allowed = set(torch.serialization._weights_only_unpickler._get_user_allowed_globals())
    scan = scan_file(path)
    numpy_names = {f.ref.name for f in scan.findings if f.ref.status == NUMPY_DATA}
    assert numpy_names == {"numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype"}
    assert numpy_names <= allowed
    assert scan.status == "clean"
    result = run_cli("scan", path, "--explain")
    assert result.code == 0 and result.err == ""
    assert f"{path}: numpy.dtype: torch.load(weights_only=True) refuses numpy globals by default;" in result.out


def test_accelerate_save_state_files_read_and_scan_clean(tmp_path: Path) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.backward(model(torch.rand(2, 3)).sum())
    optimizer.step()
    accelerator.save_state(str(tmp_path / "state"))
    rng = tmp_path / "state" / "random_states_0.pkl"
    expected = torch.load(rng, weights_only=False)
    keys = expected["numpy_random_seed"][1]
    entry = open_checkpoint(rng).entries["numpy_random_seed"]
    assert isinstance(entry, Value) and isinstance(entry.value[1], ndarray)
    assert (entry.value[1].dtype_name, entry.value[1].shape) == (_dtype_name(keys), keys.shape)
    assert entry.value[1].data == keys.tobytes()
    result = run_cli("scan", rng, tmp_path / "state" / "optimizer.bin", "-f", "json")
    assert result.code == 0, result.out
    assert [f["status"] for f in json.loads(result.out)["files"]] == ["clean", "clean"]


def test_array_data_that_does_not_fit_its_shape_is_refused_like_numpy_refuses_it(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"a": np.arange(3, dtype=np.int64)}, good)
    import zipfile

    with zipfile.ZipFile(good) as z:
        pkl = z.read("good/data.pkl")
    assert pkl.count(b"K\x01K\x03\x85") == 1  # state (1, (3,), ...): claim 4 elements for 3 elements' bytes
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("bad/data.pkl", pkl.replace(b"K\x01K\x03\x85", b"K\x01K\x04\x85"))
        z.writestr("bad/version", "3\n")
        z.writestr("bad/byteorder", "little")
    with pytest.raises(ValueError):
        torch.load(bad, weights_only=False)
    result = run_cli("tree", bad)
    assert result.code == 2 and result.out == ""
    assert result.err == f"paraminspect: error: {bad}: numpy array data is 24 bytes; int64 [4] needs 32\n"


def test_diff_tells_rng_states_apart_by_their_array_content(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "c.pth"
    first = _trainer_rng_state(a)
    _trainer_rng_state(b)
    np.random.seed(6)
    states = {**first, "numpy": np.random.get_state()}
    torch.save(states, c)
    keys_a = torch.load(a, weights_only=False)["numpy"][1]
    assert np.array_equal(keys_a, torch.load(b, weights_only=False)["numpy"][1])
    assert not np.array_equal(keys_a, torch.load(c, weights_only=False)["numpy"][1])
    assert run_cli("diff", a, b).code == 0
    changed = run_cli("diff", a, c, "-f", "json")
    assert changed.code == 1
    assert [i["name"] for i in json.loads(changed.out)["entries"] if i["status"] != "equal"] == ["numpy"]
