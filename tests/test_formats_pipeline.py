"""A diffusers pipeline root (model_index.json + a folder per component) opened as one
checkpoint, a prefix per component; the components' own files read by safetensors/torch."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from paraminspect import open_checkpoint
from paraminspect.data.arrays import read_array
from tests.conftest import run_cli
from tests.test_arrays import _array_bits, _bits

INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.30.0",
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "safety_checker": [None, None],
}


def _pipeline(root: Path) -> None:
    """The layout StableDiffusionPipeline.save_pretrained writes, with tiny tensors."""
    root.mkdir()
    (root / "model_index.json").write_text(json.dumps(INDEX))
    torch.manual_seed(0)
    files = {
        "unet/diffusion_pytorch_model.safetensors": {
            "conv_in.weight": torch.randn(4, 2, 3, 3),
            "conv_in.bias": torch.randn(4),
        },
        "vae/diffusion_pytorch_model.safetensors": {"decoder.conv_out.weight": torch.randn(3, 4).half()},
    }
    for name, tensors in files.items():
        (root / name).parent.mkdir()
        save_file(tensors, root / name)
        (root / name).with_name("config.json").write_text("{}")
    (root / "text_encoder").mkdir()
    torch.save(
        {"text_model.embeddings.token_embedding.weight": torch.randn(10, 4)},
        root / "text_encoder" / "pytorch_model.bin",
    )
    for other in ("scheduler", "tokenizer"):
        (root / other).mkdir()
        (root / other / "config.json").write_text("{}")


def _expected(root: Path) -> dict[str, torch.Tensor]:
    out = {}
    for component in ("text_encoder", "unet", "vae"):  # model_index.json's order
        folder = root / component
        file = next(folder.glob("*.safetensors"), None)
        tensors = load_file(file) if file else torch.load(folder / "pytorch_model.bin", weights_only=True)
        out.update((f"{component}.{k}", v) for k, v in tensors.items())
    return out


def test_pipeline_root_opens_as_one_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    _pipeline(root)
    expected = _expected(root)
    ckpt = open_checkpoint(root)
    assert ckpt.format == "diffusers-pipeline"
    assert ckpt.metadata["components"] == "text_encoder,unet,vae"
    assert sorted(ckpt.tensors) == sorted(expected)
    for name, tensor in expected.items():
        assert _array_bits(read_array(ckpt.tensors[name])) == _bits(tensor), name
    result = run_cli("shapes", root, "--format", "json")
    assert result.code == 0, result.err
    assert {t["name"] for t in json.loads(result.out)["tensors"]} == set(expected)
    assert run_cli("scan", root).code == 0  # torch zip of plain tensors, safetensors: clean


def test_pipeline_component_errors_name_the_component(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    _pipeline(root)
    (root / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    result = run_cli("shapes", root)
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert result.err.startswith(f"paraminspect: error: {root}: pipeline component 'vae': ")
