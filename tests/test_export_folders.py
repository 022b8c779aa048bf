"""A folder holding one model of the newer formats (an ONNX model beside its external data,
a lone .pt2 or .npz) opens as that model, as a folder holding one .safetensors does; the
real writers make the files and their loaders are the oracle."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from paraminspect import open_checkpoint
from paraminspect.data.arrays import read_array
from tests.conftest import run_cli


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"dense.weight": rng.standard_normal((4, 3)).astype(np.float32), "dense.bias": np.arange(4.0)}


def _check(folder: Path, expected: dict[str, np.ndarray]) -> None:
    ckpt = open_checkpoint(folder)
    assert set(ckpt.tensors) == set(expected)
    if ckpt.ordered:  # a safetensors file keeps no order of its own
        assert list(ckpt.tensors) == list(expected)
    for name, array in expected.items():
        got = read_array(ckpt.tensors[name])
        assert got.dtype == array.dtype and np.array_equal(got, array), name
    result = run_cli("shapes", folder)
    assert result.code == 0, result.err


def test_folder_with_an_onnx_model_and_its_external_data(tmp_path: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    initializers = [numpy_helper.from_array(a, n) for n, a in _arrays().items()]
    model = helper.make_model(helper.make_graph([], "g", [], [], initializer=initializers))
    folder = tmp_path / "model"
    folder.mkdir()
    # the name optimum's exports use (a .bin would be taken for a torch checkpoint, and chosen)
    onnx.save_model(
        model, folder / "model.onnx", save_as_external_data=True, location="model.onnx_data", size_threshold=0
    )
    assert (folder / "model.onnx_data").is_file()
    loaded = onnx.load(folder / "model.onnx")
    _check(folder, {t.name: numpy_helper.to_array(t) for t in loaded.graph.initializer})


def test_folder_with_a_lone_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "weights.npz", **_arrays())
    with np.load(tmp_path / "weights.npz") as z:
        _check(tmp_path, {n: z[n] for n in z.files})


def test_folder_with_a_lone_pt2(tmp_path: Path) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(nn.Linear(3, 2), (torch.randn(1, 3),)), tmp_path / "m.pt2")
        state_dict = torch.export.load(tmp_path / "m.pt2").state_dict
    _check(tmp_path, {n: t.detach().numpy() for n, t in state_dict.items()})


@pytest.mark.parametrize("other", ["weights.npz", "model.onnx"])
def test_a_safetensors_beside_them_is_still_the_folders_checkpoint(tmp_path: Path, other: str) -> None:
    """As before: the newer suffixes are looked for only when no older one is there."""
    from safetensors.numpy import load_file, save_file

    save_file(_arrays(), tmp_path / "a.safetensors")
    shutil.copy(tmp_path / "a.safetensors", tmp_path / other)  # what it holds does not matter
    assert open_checkpoint(tmp_path).format == "safetensors"
    _check(tmp_path, load_file(tmp_path / "a.safetensors"))


def test_two_of_them_are_listed_as_candidates(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", **_arrays())
    np.savez(tmp_path / "b.npz", **_arrays())
    result = run_cli("shapes", tmp_path)
    assert result.code == 2
    assert "several candidates (a.npz, b.npz)" in result.err


def test_diffusers_component_with_a_variant_beside_it(tmp_path: Path) -> None:
    """Hub pipelines often hold diffusion_pytorch_model.fp16.safetensors beside the full
    weights; from_pretrained without a variant loads the latter, and so does the folder here."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler())
    root = tmp_path / "pipe"
    pipe.save_pretrained(root)
    pipe.to(torch.float16).save_pretrained(root, variant="fp16")
    assert (root / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = DDPMPipeline.from_pretrained(root).unet.state_dict()
    expected = {f"unet.{n}": t.numpy() for n, t in loaded.items()}
    assert {a.dtype for a in expected.values()} == {np.dtype("float32")}
    _check(root, expected)
    _check(root / "unet", {n.removeprefix("unet."): a for n, a in expected.items()})
