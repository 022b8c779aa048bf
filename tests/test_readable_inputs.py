"""Inputs that read the way users know them: a whole pickled ``nn.Module`` by its
state-dict names, a state dict holding ``_extra_state``, a folder of several
checkpoints, numpy files. References: ``model.state_dict()``, torch.load, safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tests.conftest import run_cli


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
        self.classifier = nn.Linear(2, 3, bias=False)  # a None parameter: not in the state dict
        self.register_buffer("scale", torch.arange(3.0))
        self.register_buffer("scratch", torch.ones(4), persistent=False)
        self.note = "an attribute, not state"


def _shapes(path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = run_cli("shapes", path, "-f", "json", *args)
    assert result.code == 0 and result.err == "", result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_whole_module_reads_as_its_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net()
    model.features[1].running_mean += torch.tensor([0.5, -1.0])  # a buffer with values of its own
    model.features[1].num_batches_tracked += 7
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    reference = model.state_dict()
    doc = _shapes(path)
    assert [t["name"] for t in doc["tensors"]] == list(reference)
    assert [(t["dtype"], t["shape"]) for t in doc["tensors"]] == [
        (str(v.dtype).removeprefix("torch."), list(v.shape)) for v in reference.values()
    ]
    values = json.loads(run_cli("get", path, *reference, "-f", "json").out)
    assert {e["name"]: e["values"] for e in values["entries"]} == {k: v.tolist() for k, v in reference.items()}
    tree = run_cli("tree", path, "-f", "json")
    assert "_modules" not in tree.out and "_parameters" not in tree.out and "scratch" not in tree.out
    # Lines up with the state dict saved the usual way.
    torch.save(reference, tmp_path / "sd.pt")
    assert run_cli("diff", path, tmp_path / "sd.pt", "-q").code == 0


def test_pt_output_of_a_whole_module_is_refused_or_its_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net()
    path, out = tmp_path / "whole.pt", tmp_path / "out.pt"
    torch.save(model, path)
    torch.save({"model": model, "head": torch.ones(2)}, tmp_path / "nested.pt")
    for source, rule in ((path, "scale=factor"), (tmp_path / "nested.pt", "model.scale=model.factor")):
        result = run_cli("rename", source, rule, "-o", out)
        assert result.code == 2 and len(result.err.splitlines()) == 1 and "whole pickled modules" in result.err
        assert not out.exists()
    result = run_cli("rename", path, "scale=factor", "-o", out, "--drop-unknown")
    assert result.code == 0, result.err
    expected = {("factor" if k == "scale" else k): v for k, v in model.state_dict().items()}
    written = torch.load(out, weights_only=True)  # a plain state dict now
    assert list(written) == list(expected)
    assert all(torch.equal(written[k], v) for k, v in expected.items())
    # A nested module becomes its state dict, in its place.
    result = run_cli("drop", tmp_path / "nested.pt", "head", "-o", out, "--force", "--drop-unknown")
    assert result.code == 0, result.err
    assert "whole pickled module" in result.err
    written = torch.load(out, weights_only=True)
    assert list(written) == ["model"] and list(written["model"]) == list(model.state_dict())
    assert all(torch.equal(written["model"][k], v) for k, v in model.state_dict().items())


def test_extra_state_is_part_of_a_plain_state_dict(tmp_path: Path) -> None:
    class WithExtra(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def get_extra_state(self) -> object:
            return {"version": 3}

        def set_extra_state(self, state: object) -> None:
            pass

    model = nn.Sequential(WithExtra(), WithExtra())
    state = model.state_dict()
    assert "0._extra_state" in state
    path = tmp_path / "extra.pt"
    torch.save(state, path)
    result = run_cli("shapes", path, "-f", "json")
    assert result.code == 0 and result.err == ""  # no note: the whole file is the state dict
    tensors = [k for k, v in torch.load(path, weights_only=True).items() if isinstance(v, torch.Tensor)]
    assert [t["name"] for t in json.loads(result.out)["tensors"]] == tensors


def _pipeline(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    """A diffusers pipeline's layout: model_index.json and a folder per component."""
    root.mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    parts = {"unet": {"conv_in.weight": torch.ones(2, 2)}, "vae": {"decoder.weight": torch.zeros(3)}}
    for name, tensors in parts.items():
        (root / name).mkdir()
        save_file(tensors, root / name / "diffusion_pytorch_model.safetensors")
        (root / name / "config.json").write_text("{}")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text("{}")
    return parts


def test_pipeline_folder_lists_its_checkpoints_and_how_to_name_one(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    _pipeline(root)
    result = run_cli("shapes", root)
    assert result.code == 2
    assert result.err == (
        f"paraminspect: error: {root}: is a diffusers pipeline with several candidates (unet/, vae/); "
        f"name one, e.g. 'paraminspect shapes {root / 'unet'}'\n"
    )
    assert len(result.err.splitlines()) == 1
    named = _shapes(root / "unet")  # the way the message says works
    assert [t["name"] for t in named["tensors"]] == list(
        load_file(root / "unet" / "diffusion_pytorch_model.safetensors")
    )


@pytest.mark.parametrize("suffix", [".pth.tar", ".tar"])
def test_pth_tar_files_are_candidates(tmp_path: Path, suffix: str) -> None:
    one = tmp_path / "one"
    one.mkdir()
    torch.save({"w": torch.ones(2)}, one / f"checkpoint{suffix}")
    assert [t["name"] for t in _shapes(one)["tensors"]] == list(torch.load(one / f"checkpoint{suffix}"))
    torch.save({"w": torch.ones(2)}, one / f"model_best{suffix}")
    result = run_cli("shapes", one)
    assert result.code == 2
    assert result.err == (
        f"paraminspect: error: {one}: is a directory with several candidates (checkpoint{suffix}, "
        f"model_best{suffix}); name one, e.g. 'paraminspect shapes {one / f'checkpoint{suffix}'}'\n"
    )


def test_empty_folder_still_says_no_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = run_cli("shapes", tmp_path / "empty")
    assert result.code == 2 and "is a directory with no checkpoint in it" in result.err


def test_numpy_files_are_read_not_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", **{"dense.weight": np.ones((2, 2))})
    np.save(tmp_path / "w.npy", np.ones(3))
    for name, expected in (("w.npz", np.load(tmp_path / "w.npz").files), ("w.npy", ["w"])):
        result = run_cli("shapes", tmp_path / name, "--format", "json")
        assert result.code == 0, result.err
        assert [t["name"] for t in json.loads(result.out)["tensors"]] == list(expected)
        assert run_cli("scan", tmp_path / name).code == 0
