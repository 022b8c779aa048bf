"""torch.export archives (.pt2, torch.export.save): weights and constants under the names
torch.export.load gives, read without torch and without unpickling; torch.export.load
(and load_pt2 for several programs) as the oracle."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from paraminspect import open_checkpoint
from paraminspect.data.arrays import read_array
from paraminspect.model import TensorRef, Value
from tests.conftest import run_cli
from tests.test_arrays import _array_bits, _bits


class Net(nn.Module):
    """Parameters, buffers (one non-persistent, so a constant), tied and strided tensors, several dtypes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(8, 3)
        self.out = nn.Linear(8, 3)
        self.out.weight = self.fc.weight  # tied: one record, two names
        self.register_buffer("bf", torch.randn(3, 4).to(torch.bfloat16).t())  # transposed: strides (1, 4)
        self.register_buffer("steps", torch.arange(10, dtype=torch.int64)[2:8])  # a view at storage offset 2
        self.register_buffer("scratch", torch.ones(3), persistent=False)  # ep.constants, not ep.state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x)).flatten(1)[:, :8]
        return self.fc(y) + self.out(y) + self.scratch + self.bf.float().sum() + self.steps.sum()


class Lifted(nn.Module):
    """Tensor constants: a plain tensor attribute and one made in forward (``lifted_tensor_0``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.table = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + self.table.float() + torch.tensor([5.0, 6.0, 7.0])


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> Path:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(module.eval(), args), path)
    return path


@pytest.fixture(scope="module")
def net_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return _export(Net(), (torch.randn(1, 1, 4, 6),), tmp_path_factory.mktemp("export") / "net.pt2")


@pytest.fixture(scope="module")
def lifted_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return _export(Lifted(), (torch.randn(3),), tmp_path_factory.mktemp("export") / "lifted.pt2")


def _loaded(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.load(path)
    return dict(ep.state_dict), {k: v for k, v in ep.constants.items() if isinstance(v, torch.Tensor)}


def _same(ref: object, tensor: torch.Tensor, name: str) -> None:
    assert isinstance(ref, TensorRef), name
    assert ref.dtype.name == str(tensor.dtype).removeprefix("torch."), name
    assert ref.shape == tuple(tensor.shape), name
    assert ref.strides == tuple(tensor.stride()), name
    assert _array_bits(read_array(ref)) == _bits(tensor), name


@pytest.mark.parametrize("fixture", ["net_pt2", "lifted_pt2"])
def test_weights_then_constants_match_torch_export_load(request: pytest.FixtureRequest, fixture: str) -> None:
    path: Path = request.getfixturevalue(fixture)
    state_dict, constants = _loaded(path)
    ckpt = open_checkpoint(path)
    assert ckpt.format == "torch-export"
    assert list(ckpt.entries) == [*state_dict, *constants]
    for name, tensor in {**state_dict, **constants}.items():
        _same(ckpt.entries[name], tensor, name)
        ref = ckpt.tensors[name]
        assert ref.is_parameter == isinstance(tensor, nn.Parameter), name
        assert ref.requires_grad == tensor.requires_grad, name
    assert ckpt.metadata["export_weights"] == str(len(state_dict))
    assert ckpt.metadata["export_constants"] == str(len(constants))


def test_names_of_both_kinds(net_pt2: Path, lifted_pt2: Path) -> None:
    """What the fixtures hold, so the comparison above covers each case it claims to."""
    state_dict, constants = _loaded(net_pt2)
    assert {"fc.weight", "out.weight", "bf", "steps", "bn.num_batches_tracked"} <= set(state_dict)
    assert list(constants) == ["scratch"]
    assert state_dict["bf"].stride() == (1, 4) and state_dict["steps"].storage_offset() == 2
    ckpt = open_checkpoint(net_pt2)
    assert ckpt.tied_groups() == {"out.weight": "fc.weight"}
    _, lifted = _loaded(lifted_pt2)
    assert list(lifted) == ["table", "lifted_tensor_0"]


def test_read_only_commands_and_convert(net_pt2: Path, tmp_path: Path) -> None:
    for argv in (
        ("tree", net_pt2),
        ("shapes", net_pt2),
        ("get", net_pt2, "steps"),
        ("stats", net_pt2),
        ("check", net_pt2),
        ("hash", net_pt2),
        ("meta", net_pt2),
        ("diff", net_pt2, net_pt2),
    ):
        result = run_cli(*argv)
        assert result.code == 0, (argv, result.out, result.err)
    meta = json.loads(run_cli("meta", net_pt2, "--format", "json").out)
    assert "exported graph" in json.dumps(meta)
    out = tmp_path / "net.safetensors"
    result = run_cli("convert", net_pt2, out)
    assert result.code == 0, result.err
    from safetensors.torch import load_file

    converted = load_file(out)
    state_dict, constants = _loaded(net_pt2)
    expected = {**state_dict, **constants}
    # a tied name is stored once (save_model's layout): torch shares its storage with the stored one
    assert set(expected) - set(converted) == {"out.weight"}
    assert expected["out.weight"].data_ptr() == expected["fc.weight"].data_ptr()
    for name, tensor in expected.items():
        assert torch.equal(converted.get(name, converted["fc.weight"]), tensor), name


def test_diff_against_the_state_dict_it_came_from(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Lifted()
    path = _export(model, (torch.randn(3),), tmp_path / "m.pt2")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    result = run_cli("diff", path, tmp_path / "sd.pt", "--format", "json")
    report = json.loads(result.out)
    assert result.code == 1, result.err  # the constants are only in the archive
    text = json.dumps(report)
    assert "lifted_tensor_0" in text and "table" in text
    assert run_cli("diff", path, tmp_path / "sd.pt", "lin.*").code == 0


def test_scan_analyses_the_example_inputs_and_is_clean(net_pt2: Path) -> None:
    result = run_cli("scan", net_pt2, "--format", "json")
    assert result.code == 0, result.out + result.err
    records = {r["record"] for r in json.loads(result.out)["files"][0]["references"]}
    assert any("data/sample_inputs/model.pt:" in r for r in records)


def test_pickled_tensor_subclass_is_never_unpickled(tmp_path: Path) -> None:
    from torch.testing._internal.two_tensor import TwoTensor

    class Sub(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = nn.Parameter(TwoTensor(torch.randn(3), torch.randn(3)))
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + self.p

    path = _export(Sub(), (torch.randn(3),), tmp_path / "sub.pt2")
    state_dict, _ = _loaded(path)
    assert type(state_dict["p"]).__name__ == "TwoTensor"
    ckpt = open_checkpoint(path)
    assert list(ckpt.entries) == list(state_dict)
    placeholder = ckpt.entries["p"]
    assert isinstance(placeholder, Value)
    assert "pickled tensor float32 [3]" in placeholder.type_name
    for name in ("fc.weight", "fc.bias"):
        _same(ckpt.entries[name], state_dict[name], name)
    result = run_cli("scan", path, "--format", "json")
    assert result.code == 1
    references = json.loads(result.out)["files"][0]["references"]
    unsafe = [r for r in references if r["status"] == "unsafe"]
    assert [r["name"] for r in unsafe] == ["torch.testing._internal.two_tensor.TwoTensor"]
    assert unsafe[0]["record"].endswith("data/weights/weight_0:archive/data.pkl")


def test_several_programs_get_their_names_as_prefixes(tmp_path: Path) -> None:
    from torch.export.pt2_archive._package import load_pt2, package_pt2

    torch.manual_seed(0)
    programs = {
        "enc": torch.export.export(nn.Linear(2, 3), (torch.randn(1, 2),)),
        "dec": torch.export.export(nn.Sequential(nn.Linear(3, 1)), (torch.randn(1, 3),)),
    }
    path = tmp_path / "multi.pt2"
    package_pt2(path, exported_programs=programs)
    loaded = load_pt2(path).exported_programs
    expected = {f"{m}.{k}": v for m, ep in loaded.items() for k, v in ep.state_dict.items()}
    ckpt = open_checkpoint(path)
    assert list(ckpt.entries) == list(expected)
    for name, tensor in expected.items():
        _same(ckpt.entries[name], tensor, name)


def _aoti_layout(path: Path) -> None:
    """The records aoti_compile_and_package writes (a real one: the slow test below)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("aoti/data/aotinductor/model/abc.wrapper.cpp", "// generated")
        z.writestr("aoti/data/aotinductor/model/abc.wrapper_metadata.json", "{}")
        z.writestr("aoti/data/aotinductor/model/abc.wrapper.so", b"\x7fELF")
        z.writestr("aoti/archive_format", "pt2")
        z.writestr("aoti/archive_version", "0")
        z.writestr("aoti/.data/version", "6\n")  # as torch's stream writer records it
        z.writestr("aoti/byteorder", "little")


def _check_aoti(path: Path) -> None:
    result = run_cli("shapes", path)
    assert result.code == 2
    assert "holds only an AOTInductor build" in result.err
    result = run_cli("scan", path, "--format", "json")
    assert result.code == 1, result.out + result.err
    code = [r["record"] for r in json.loads(result.out)["files"][0]["references"] if r["kind"] == "code"]
    assert any(r.endswith(".so") for r in code) and not any(r.endswith(".json") for r in code)


def test_aotinductor_build_is_named_and_scanned_as_code(tmp_path: Path) -> None:
    _aoti_layout(tmp_path / "aoti.pt2")
    _check_aoti(tmp_path / "aoti.pt2")


@pytest.mark.slow
def test_real_aotinductor_package(tmp_path: Path) -> None:
    """aoti_compile_and_package compiles C++ (about a minute on the shared machine)."""
    ep = torch.export.export(nn.Linear(4, 2), (torch.randn(1, 4),))
    path = tmp_path / "aoti.pt2"
    torch._inductor.aoti_compile_and_package(ep, package_path=str(path))
    _check_aoti(path)


def test_was_refused_before(net_pt2: Path) -> None:
    """A .pt2 used to be read as a torch.save zip and refused (no data.pkl)."""
    names = zipfile.ZipFile(net_pt2).namelist()
    assert not any(n.endswith("/data.pkl") for n in names)
    result = run_cli("shapes", net_pt2)
    assert result.code == 0 and "data.pkl" not in result.err


def test_old_layout_state_dict_in_one_record(tmp_path: Path, net_pt2: Path) -> None:
    """Archives from before payload configs hold one torch.save state dict a program
    (``data/weights/model.pt``), which torch.export.load still reads: read as a torch.save zip
    inside the archive, offsets made absolute, never unpickled by pickle."""
    import io

    torch.manual_seed(0)
    state = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).state_dict()
    inner = io.BytesIO()
    torch.save(state, inner)
    path = tmp_path / "old.pt2"
    with zipfile.ZipFile(net_pt2) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            name = info.filename.replace("net/", "old/", 1)
            if "/data/weights/" in name or "/data/constants/" in name:
                continue
            z.writestr(name, src.read(info))
        z.writestr("old/data/weights/model.pt", inner.getvalue())
        z.writestr("old/data/constants/model.pt", _saved({}))
    ckpt = open_checkpoint(path)
    assert list(ckpt.entries) == list(state)
    for name, tensor in state.items():
        _same(ckpt.entries[name], tensor, name)


def _saved(obj: object) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
