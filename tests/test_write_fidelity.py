"""Edits write what they read: value types, positions, tensors safetensors cannot hold, edge casts.

The oracle is torch: torch.load of the input against torch.load of the output,
safetensors' own reader, and torch's ``tensor.to(dtype)``.
"""

from __future__ import annotations

import json
import pathlib
import pickle
import random
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from paraminspect.edit.verify import Expected, verify_written
from paraminspect.errors import CheckpointError
from paraminspect.formats.opening import open_checkpoint
from tests.conftest import run_cli


class Reduced:
    """Pickles as ``cls(*args)``: how a test writes what cannot be built on this system."""

    def __init__(self, cls: type, *args: Any) -> None:
        self.cls, self.args = cls, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.cls, self.args


def same(a: Any, b: Any) -> bool:
    """Equal values of exactly the same types, all the way down (tensors bit for bit)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        flat_a, flat_b = a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(flat_a, flat_b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a).__name__ == "StorageType":  # torch.load's stand-in for torch.FloatStorage & co
        return bool(a.dtype == b.dtype)
    return bool(a == b)


VALUES = {
    "w": torch.arange(6, dtype=torch.float32),
    "size": torch.Size([2, 3]),
    "empty_size": torch.Size([]),
    "path": pathlib.PosixPath("/data/run 1/ckpt"),
    "pure": pathlib.PurePosixPath("rel/dir"),
    "win": pathlib.PureWindowsPath("C:/Users/x/model.pt"),
    "layout": torch.strided,
    "sparse_layout": torch.sparse_coo,
    "dtype": torch.bfloat16,
    "devices": [torch.device("cpu"), torch.device("cuda", 1), torch.device("meta")],
    "storage_classes": [torch.FloatStorage, torch.UntypedStorage],
    "nested": {"shapes": (torch.Size([4]), torch.Size([1, 2])), "amp": {torch.float16: "half"}},
    "plain": OrderedDict(lr=0.1, betas=(0.9, 0.999), name="x", flag=True, none=None, raw=b"\x00\x01"),
}


@pytest.mark.parametrize("command", ["convert", "rename", "cast"])
def test_pt_to_pt_keeps_value_types(tmp_path: Path, command: str) -> None:
    src, out = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save(VALUES, src)
    args = {
        "convert": ("convert", src, out),
        "rename": ("rename", src, "w=weight", "-o", out),
        "cast": ("cast", src, "-t", "float16", "-o", out),
    }[command]
    result = run_cli(*args)
    assert result.code == 0, result.err
    before, after = torch.load(src, weights_only=False), torch.load(out, weights_only=False)
    if command == "rename":
        before["weight"] = before.pop("w")
        assert list(after) == ["weight", *list(VALUES)[1:]]  # renamed in its place
    if command == "cast":
        before["w"] = before["w"].to(torch.float16)
    for key, value in before.items():
        assert same(value, after[key]), (key, value, after[key])


def test_a_path_of_another_system_is_written_back_unbuilt(tmp_path: Path) -> None:
    # A WindowsPath cannot be made on Linux (nor a PosixPath on Windows): torch.load
    # fails on it here, so read both pickles with the Windows class as its pure form.
    src, out = tmp_path / "in.pt", tmp_path / "out.pt"
    concrete = pathlib.PosixPath if pathlib.Path is pathlib.WindowsPath else pathlib.WindowsPath
    torch.save({"w": torch.ones(1), "where": Reduced(concrete, "C:\\", "runs", "a")}, src)
    result = run_cli("convert", src, out)
    assert result.code == 0, result.err

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("pathlib", concrete.__name__):
                return lambda *parts: ("unbuilt", concrete.__name__, parts)
            return super().find_class(module, name)

    module = types.SimpleNamespace(Unpickler=Unpickler, load=pickle.load, __name__="pickle")
    before = torch.load(src, weights_only=False, pickle_module=module)  # type: ignore[arg-type]
    after = torch.load(out, weights_only=False, pickle_module=module)  # type: ignore[arg-type]
    assert after["where"] == before["where"] == ("unbuilt", concrete.__name__, ("C:\\", "runs", "a"))


def test_verification_notices_a_value_of_another_type(tmp_path: Path) -> None:
    src, changed = tmp_path / "in.pt", tmp_path / "changed.pt"
    w = torch.ones(2)
    torch.save({"w": w, "size": torch.Size([2, 3]), "path": pathlib.PosixPath("/a"), "layout": torch.strided}, src)
    torch.save({"w": w, "size": (2, 3), "path": "/a", "layout": "torch.strided"}, changed)
    wanted = open_checkpoint(src)
    expected = {"w": Expected(wanted.tensors["w"].dtype, (2,), None)}
    for name in ("size", "path", "layout"):
        values = {n: v.value for n, v in wanted.values.items()}
        values.update({other: open_checkpoint(changed).values[other].value for other in values if other != name})
        with pytest.raises(CheckpointError, match=f"non-tensor entries differ: \\['{name}'\\]"):
            verify_written(changed, expected, values=values)


# ---- --drop-unknown keeps positions ---------------------------------------------------


def accelerate_random_states(path: Path) -> dict[str, Any]:
    """The layout of accelerate's save_state ``random_states_0.pkl`` on a CPU machine
    (accelerate/checkpointing.py save_accelerator_state: step, then the RNG states)."""
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    states = {
        "step": 7,
        "random_state": random.getstate(),
        "numpy_random_seed": np.random.get_state(),  # holds a numpy array: an unknown object
        "torch_manual_seed": torch.get_rng_state(),
    }
    torch.save(states, path)
    return states


def test_random_states_convert_with_their_numpy_array(tmp_path: Path) -> None:
    # The numpy RNG state is read as inert array data (dtype, shape, bytes) and written
    # back as the same array, so accelerate's RNG file converts whole.
    src, out = tmp_path / "random_states_0.pkl", tmp_path / "o.pt"
    states = accelerate_random_states(src)
    result = run_cli("convert", src, out)
    assert result.code == 0, result.err
    after = torch.load(out, weights_only=False)
    assert list(after) == list(states)
    assert same(after["random_state"], states["random_state"]) and after["step"] == 7
    assert torch.equal(after["torch_manual_seed"], states["torch_manual_seed"])
    kind, keys, pos, has_gauss, cached = states["numpy_random_seed"]
    got = after["numpy_random_seed"]
    assert got[0] == kind and got[2:] == (pos, has_gauss, cached)
    assert got[1].dtype == keys.dtype and got[1].shape == keys.shape and np.array_equal(got[1], keys)


def test_drop_unknown_keeps_tuple_positions(tmp_path: Path) -> None:
    src, out = tmp_path / "states.pt", tmp_path / "o.pt"
    states = {"step": 7, "state": ("MT19937", types.SimpleNamespace(a=1), 624, 0, 0.0), "w": torch.ones(2)}
    torch.save(states, src)
    assert run_cli("convert", src, out).code == 2  # refused: a SimpleNamespace cannot be written back
    result = run_cli("convert", src, out, "--drop-unknown", "--format", "json")
    assert result.code == 0, result.err
    after = torch.load(out, weights_only=True)
    assert list(after) == list(states) and after["step"] == 7 and torch.equal(after["w"], states["w"])
    assert after["state"] == ("MT19937", None, 624, 0, 0.0)  # the object's place kept
    changes = {c["name"]: c for c in json.loads(result.out)["changes"]}
    assert changes["state.1"]["action"] == "replaced"
    assert "types.SimpleNamespace" in changes["state.1"]["detail"]
    assert changes["state"]["action"] == "regrouped"  # read back as one value now


class QuantizedNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(4, 5)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(self.quant(x)))
        return self.dequant(self.fc(x.mean((2, 3))))


def quantized_state_dict() -> dict[str, Any]:
    """A static qint8/quint8 model (conv weight per channel) as torch.ao.quantization converts it."""
    torch.manual_seed(0)
    model = QuantizedNet().eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig(torch.backends.quantized.engine)
    prepared = torch.ao.quantization.prepare(model)
    prepared(torch.randn(2, 3, 8, 8))
    result: dict[str, Any] = torch.ao.quantization.convert(prepared).state_dict()
    return result


def test_drop_unknown_keeps_positions_in_a_quantized_state_dict(tmp_path: Path) -> None:
    src, out = tmp_path / "q.pth", tmp_path / "o.pt"
    sd = quantized_state_dict()
    torch.save(sd, src)
    weight, bias = sd["fc._packed_params._packed_params"]
    assert weight.is_quantized and not bias.is_quantized
    result = run_cli("convert", src, out, "--drop-unknown")
    assert result.code == 0, result.err
    after = torch.load(out, weights_only=True)
    assert list(after) == [k for k in sd if k != "conv.weight"]  # a mapping loses the key
    dropped, kept = after["fc._packed_params._packed_params"]
    assert dropped is None and torch.equal(kept, bias)  # the bias stays item 1
    for key in after:
        if key != "fc._packed_params._packed_params":
            assert same(after[key], sd[key]), key
    assert "replaced  fc._packed_params._packed_params.0" in result.err
    assert "dropped   conv.weight  (quantized qint8 tensor [4, 3, 3, 3]" in result.err


def test_drop_unknown_in_lists_keeps_later_items_in_place(tmp_path: Path) -> None:
    src, out = tmp_path / "l.pt", tmp_path / "o.pt"
    t0, t2 = torch.zeros(2), torch.ones(3)
    ns = types.SimpleNamespace(lr=0.1)
    torch.save({"items": [t0, ns, t2], "groups": [{"ns": ns}, t2], "cfg": {"inner": {"ns": ns}}}, src)
    result = run_cli("convert", src, out, "--drop-unknown")
    assert result.code == 0, result.err
    after = torch.load(out, weights_only=True)
    assert len(after["items"]) == 3 and after["items"][1] is None
    assert torch.equal(after["items"][0], t0) and torch.equal(after["items"][2], t2)
    assert after["groups"][0] == {} and torch.equal(after["groups"][1], t2)  # emptied, not removed
    assert after["cfg"] == {"inner": {}}


# ---- safetensors cannot hold quantized or sparse tensors -------------------------------


def unstorable(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    sd = {
        "w": torch.randn(2, 3),
        "q8": torch.quantize_per_tensor(torch.randn(4), 0.1, 3, torch.qint8),
        "qu8": torch.quantize_per_tensor(torch.randn(2, 2), 0.05, 128, torch.quint8),
        "qc": torch.quantize_per_channel(
            torch.randn(3, 2), torch.tensor([0.1, 0.2, 0.3]), torch.arange(3), 0, torch.qint8
        ),
        "coo": torch.sparse_coo_tensor([[0, 1], [1, 0]], [1.0, 2.0], (2, 2)),
        "csr": torch.eye(3).to_sparse_csr(),
        "b": torch.arange(3, dtype=torch.int64),
    }
    torch.save(sd, path)
    return sd


LOST = ["q8", "qu8", "qc", "coo", "csr"]


@pytest.mark.parametrize("command", ["convert", "cast", "set"])
def test_safetensors_output_refuses_tensors_it_cannot_hold(tmp_path: Path, command: str) -> None:
    src, out = tmp_path / "in.pt", tmp_path / "o.safetensors"
    unstorable(src)
    args = {
        "convert": ("convert", src, out),
        "cast": ("cast", src, "-t", "bfloat16", "-o", out),
        "set": ("set", src, "b", "5", "-o", out),
    }[command]
    result = run_cli(*args)
    assert result.code == 2
    assert result.err.startswith(f"paraminspect: error: {src}: holds tensors safetensors cannot store (")
    assert "q8 quantized qint8 tensor [4]" in result.err and "qu8 quantized quint8 tensor [2, 2]" in result.err
    assert "--drop-unknown" in result.err and result.err.count("\n") == 1
    assert not out.exists()


def test_safetensors_drop_unknown_lists_each_dropped_tensor(tmp_path: Path) -> None:
    from safetensors import safe_open

    src, out = tmp_path / "in.pt", tmp_path / "o.safetensors"
    sd = unstorable(src)
    result = run_cli("convert", src, out, "--drop-unknown")
    assert result.code == 0, result.err
    for name in LOST:
        assert f"  dropped   {name}  (" in result.err
    assert f"note: 5 tensors not stored (safetensors cannot hold them): {', '.join(LOST)}" in result.err
    with safe_open(str(out), framework="pt") as f:
        assert sorted(f.keys()) == ["b", "w"]
        assert torch.equal(f.get_tensor("w"), sd["w"]) and torch.equal(f.get_tensor("b"), sd["b"])
    out.unlink()
    doc = json.loads(run_cli("convert", src, out, "--drop-unknown", "--format", "json").out)
    assert doc["tensors_not_stored"] == LOST and doc["values_not_stored"] == []
    assert [c["name"] for c in doc["changes"] if c["action"] == "dropped"] == LOST
    details = {c["name"]: c["detail"] for c in doc["changes"]}
    assert details["coo"].startswith("sparse tensor (torch.sparse_coo) [2, 2]")
    assert details["csr"].startswith("sparse tensor (torch.sparse_csr) [3, 3]")
    assert details["qc"].startswith("quantized qint8 tensor [3, 2]")
