"""Matrix files written by the libraries users save with: transformers, diffusers,
accelerate, peft, Lightning. Tiny configs built in code; nothing is downloaded."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from tests.matrix.cases import Case, bump_named


def tiny_llama(seed: int = 0, *, tied: bool = True) -> torch.nn.Module:
    """A two-layer Llama small enough to save in milliseconds (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


def _bin_shards(state: dict[str, torch.Tensor], directory: Path) -> None:
    """The sharded .bin layout transformers 4 wrote (transformers 5 no longer writes
    .bin, so torch.save writes it): two pytorch_model-0000k-of-00002.bin shards and
    pytorch_model.bin.index.json."""
    directory.mkdir()
    names = list(state)
    halves = (names[: len(names) // 2], names[len(names) // 2 :])
    weight_map: dict[str, str] = {}
    for k, half in enumerate(halves, 1):
        shard = f"pytorch_model-{k:05d}-of-00002.bin"
        torch.save({n: state[n] for n in half}, directory / shard)
        weight_map.update(dict.fromkeys(half, shard))
    index = {"metadata": {"total_size": sum(t.nbytes for t in state.values())}, "weight_map": weight_map}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index))


def write_transformers(directory: Path) -> dict[str, Case]:
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    model = tiny_llama()
    for suffix in ("", "-changed"):
        model.save_pretrained(directory / f"llama{suffix}")
        model.save_pretrained(directory / f"sharded{suffix}", max_shard_size="20KB")
        (directory / f"bin{suffix}").mkdir()
        # A tied state dict as transformers 4 saved it (.bin; lm_head shares the embedding).
        torch.save(model.state_dict(), directory / f"bin{suffix}" / "pytorch_model.bin")
        _bin_shards(model.state_dict(), directory / f"sharded-bin{suffix}")
        bump_named(dict(model.named_parameters()), "model.layers.1.mlp.down_proj.weight")
    assert len(list((directory / "sharded").glob("*.safetensors"))) > 1

    torch.manual_seed(1)
    moe = Qwen2MoeForCausalLM(
        Qwen2MoeConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            moe_intermediate_size=8,
            shared_expert_intermediate_size=16,
            num_experts=4,
            num_experts_per_tok=2,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    moe.save_pretrained(directory / "moe")

    def pair(name: str, file: str = "") -> Case:
        return Case(directory / name / file, directory / f"{name}-changed" / file)

    return {
        "transformers-safetensors-tied": pair("llama", "model.safetensors"),
        "transformers-sharded": pair("sharded"),
        "transformers-bin-tied": pair("bin", "pytorch_model.bin"),
        "transformers-sharded-bin": pair("sharded-bin"),
        "transformers-moe": Case(directory / "moe" / "model.safetensors"),
    }


def write_diffusers(directory: Path) -> dict[str, Case]:
    from diffusers import AutoencoderKL, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(4, 8),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=2,
        attention_head_dim=4,
    )
    unet.save_pretrained(directory / "unet")
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=2,
        norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
    ).to(torch.float16)
    vae.save_pretrained(directory / "vae", variant="fp16")
    return {
        "diffusers-unet": Case(directory / "unet" / "diffusion_pytorch_model.safetensors"),
        "diffusers-vae-fp16": Case(directory / "vae" / "diffusion_pytorch_model.fp16.safetensors"),
    }


def write_accelerate(directory: Path) -> dict[str, Case]:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.backward(model(torch.rand(3, 4)).sum())
    optimizer.step()
    accelerator.save_state(str(directory / "state"))
    accelerator.save_model(model, str(directory / "model"))
    state = directory / "state"
    return {
        "accelerate-state-model": Case(state / "model.safetensors"),
        "accelerate-state-optimizer": Case(state / "optimizer.bin"),
        "accelerate-state-rng": Case(state / "random_states_0.pkl", drop_unknown=True),
        "accelerate-save-model": Case(directory / "model" / "model.safetensors"),
    }


def write_peft(directory: Path) -> dict[str, Case]:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' own deprecation, inside peft
        get_peft_model(tiny_llama(2), config).save_pretrained(directory / "lora")
    return {"peft-lora": Case(directory / "lora" / "adapter_model.safetensors")}


def write_lightning(directory: Path) -> dict[str, Case]:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self.layer(batch).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters())

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.rand(4, 4), batch_size=2)
    checkpoints = ModelCheckpoint(dirpath=directory / "fit", filename="last")
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=directory,
        callbacks=[checkpoints],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "does not have many workers", ...
        trainer.fit(Tiny(), data)
    trainer.save_checkpoint(directory / "saved.ckpt")
    return {
        "lightning-fit": Case(directory / "fit" / "last.ckpt", drop_unknown=True),
        "lightning-save-checkpoint": Case(directory / "saved.ckpt", drop_unknown=True),
    }
