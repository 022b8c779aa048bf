"""Header-only fixtures shaped like real quantized checkpoints, written as sparse
files: the safetensors header is real, tensor bytes are holes, except the few
descriptor tensors recognition reads (compressed-tensors' ``weight_shape``).

Used by the tests (exact logical parameter counts) and benchmarks/bench_quant.py
(``shapes`` of a quantized model against the same model unquantized). Shapes are
those of the published configs: Llama-3.1-8B, Qwen3-30B-A3B (a 128-expert MoE).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

_SIZES = {"F16": 2, "BF16": 2, "F32": 4, "I32": 4, "I64": 8, "U8": 1}

LLAMA_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 32,
    "vocab_size": 128256,
}
QWEN3_30B_A3B = {
    "hidden_size": 2048,
    "moe_intermediate_size": 768,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_hidden_layers": 48,
    "num_experts": 128,
    "vocab_size": 151936,
}


class Sparse:
    """A safetensors header built entry by entry; :meth:`write` lays the data out as
    safetensors' writer does (grouped by dtype, then by name) and leaves it a hole
    but for the bytes given (``data``)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, list[int], bytes | None]] = []
        self.header: dict[str, object] = {}
        self.offset = 0
        self.data: dict[int, bytes] = {}

    def add(self, name: str, dtype: str, shape: list[int], data: bytes | None = None) -> None:
        assert data is None or len(data) == math.prod(shape) * _SIZES[dtype]
        self.entries.append((name, dtype, shape, data))

    def _layout(self) -> None:
        for name, dtype, shape, data in sorted(self.entries, key=lambda e: (-_SIZES[e[1]], e[1], e[0])):
            size = math.prod(shape) * _SIZES[dtype]
            self.header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [self.offset, self.offset + size]}
            if data is not None:
                self.data[self.offset] = data
            self.offset += size

    def write(self, path: Path) -> int:
        """Write the file; returns the data bytes it declares."""
        self._layout()
        text = json.dumps(self.header).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(len(text).to_bytes(8, "little") + text)
            for at, raw in self.data.items():
                f.seek(8 + len(text) + at)
                f.write(raw)
            f.truncate(8 + len(text) + self.offset)
        return self.offset


def llama_params(c: dict[str, int]) -> int:
    """Llama-3.1-8B's count from its config: untied embeddings and lm_head, two norms a layer."""
    h, i, v, n = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    return 2 * v * h + h + n * (h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h)


def llama_8b(path: Path, *, gptq_bits: int | None = 4, group: int = 128) -> int:
    """Llama-3.1-8B as AutoGPTQ writes it (``gptq_bits``), or unquantized float16 (None)."""
    c = LLAMA_8B
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    s = Sparse()
    s.add("model.embed_tokens.weight", "F16", [v, h])
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}"
        linears = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv)}
        linears |= {"self_attn.o_proj": (h, h), "mlp.gate_proj": (h, i), "mlp.up_proj": (h, i), "mlp.down_proj": (i, h)}
        for name, (inp, out) in linears.items():
            if gptq_bits is None:
                s.add(f"{p}.{name}.weight", "F16", [out, inp])
                continue
            s.add(f"{p}.{name}.qweight", "I32", [inp * gptq_bits // 32, out])
            s.add(f"{p}.{name}.qzeros", "I32", [inp // group, out * gptq_bits // 32])
            s.add(f"{p}.{name}.scales", "F16", [inp // group, out])
            s.add(f"{p}.{name}.g_idx", "I32", [inp])
        s.add(f"{p}.input_layernorm.weight", "F16", [h])
        s.add(f"{p}.post_attention_layernorm.weight", "F16", [h])
    s.add("model.norm.weight", "F16", [h])
    s.add("lm_head.weight", "F16", [v, h])
    return s.write(path)


def qwen3_moe_params(c: dict[str, int]) -> int:
    """Qwen3-30B-A3B's count from its config: q/k/v/o, q_norm and k_norm, a router,
    ``num_experts`` gate/up/down experts and two norms a layer; untied lm_head."""
    h, e, m, v = c["hidden_size"], c["num_experts"], c["moe_intermediate_size"], c["vocab_size"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    attention = h * q * 2 + h * kv * 2 + 2 * c["head_dim"]
    per_layer = attention + h * e + e * 3 * h * m + 2 * h
    return 2 * v * h + h + c["num_hidden_layers"] * per_layer


def qwen3_moe(path: Path, *, quantized: bool = True, group: int = 128, layers: int | None = None) -> int:
    """Qwen3-30B-A3B as llm-compressor writes it W4A16 (compressed-tensors ``pack-quantized``:
    ``weight_packed`` int32, ``weight_shape``, ``weight_scale`` bf16 per group; router and
    lm_head left in bf16), or wholly unquantized bf16; ``layers``: only the first few."""
    c = {**QWEN3_30B_A3B, "num_hidden_layers": layers or QWEN3_30B_A3B["num_hidden_layers"]}
    h, e, m, v = c["hidden_size"], c["num_experts"], c["moe_intermediate_size"], c["vocab_size"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    s = Sparse()

    def linear(name: str, inp: int, out: int) -> None:
        if not quantized:
            s.add(f"{name}.weight", "BF16", [out, inp])
            return
        s.add(f"{name}.weight_packed", "I32", [out, inp * 4 // 32])
        s.add(f"{name}.weight_scale", "BF16", [out, inp // group])
        s.add(f"{name}.weight_shape", "I64", [2], struct.pack("<2q", out, inp))

    s.add("model.embed_tokens.weight", "BF16", [v, h])
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}"
        for name, (inp, out) in {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h)}.items():
            linear(f"{p}.self_attn.{name}", inp, out)
        s.add(f"{p}.self_attn.q_norm.weight", "BF16", [c["head_dim"]])
        s.add(f"{p}.self_attn.k_norm.weight", "BF16", [c["head_dim"]])
        s.add(f"{p}.mlp.gate.weight", "BF16", [e, h])
        for expert in range(e):
            for name, (inp, out) in {"gate_proj": (h, m), "up_proj": (h, m), "down_proj": (m, h)}.items():
                linear(f"{p}.mlp.experts.{expert}.{name}", inp, out)
        s.add(f"{p}.input_layernorm.weight", "BF16", [h])
        s.add(f"{p}.post_attention_layernorm.weight", "BF16", [h])
    s.add("model.norm.weight", "BF16", [h])
    s.add("lm_head.weight", "BF16", [v, h])
    return s.write(path)


def qwen3_moe_config(group: int = 128) -> dict[str, object]:
    """config.json beside the MoE: the model's shape and llm-compressor's W4A16 quantization_config."""
    weights = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": group}
    return {
        **QWEN3_30B_A3B,
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "format": "pack-quantized",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}},
            "ignore": ["lm_head", "re:.*mlp.gate$"],
        },
    }
