"""The quantization config beside the weights, when there is one.

``config.json`` ``quantization_config`` (GPTQ, AWQ, compressed-tensors,
bitsandbytes, FP8; sometimes nested under ``text_config``), GPTQ's
``quantize_config.json``, MLX's ``config.json`` ``quantization``. Read from the
checkpoint's directory, bounded in size; a config that is missing, too large or
malformed is no config (recognition then goes by names and shapes alone). Beside a
URL it is fetched (one small request) only when a tensor's dtype could be quantized
storage: a float checkpoint's listing costs no request for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paraminspect.errors import CheckpointError
from paraminspect.io.url import UrlPath
from paraminspect.model import Checkpoint

MAX_CONFIG_BYTES = 4 << 20


@dataclass(frozen=True)
class QuantConfig:
    """What a config says about quantization: its method and settings, and where it was read."""

    method: str  # gptq, awq, compressed-tensors, bitsandbytes, fp8, mlx, or what the file says
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        if isinstance(path, UrlPath):  # beside a remote checkpoint: one small request (counted)
            from paraminspect.io import fetch

            raw = fetch.read_small(path, MAX_CONFIG_BYTES) if path.exists() else b"null"
        elif not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        else:
            raw = path.read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError, RecursionError, CheckpointError):
        return None
    return data if isinstance(data, dict) else None


# Tensors of these types alone are a float checkpoint: a remote one's config is not fetched.
_PLAIN = frozenset({"float16", "bfloat16", "float32", "float64", "int64", "bool", "complex64", "complex128"})


def _may_be_quantized(ckpt: Checkpoint) -> bool:
    return any(ref.dtype.name not in _PLAIN for ref in ckpt.tensors.values())


def directory_of(ckpt: Checkpoint) -> Path:
    return ckpt.path if ckpt.path.is_dir() else ckpt.path.parent


def _method(settings: dict[str, Any], fallback: str) -> str:
    method = settings.get("quant_method")
    return method.lower() if isinstance(method, str) else fallback


def find(ckpt: Checkpoint) -> QuantConfig | None:
    """The quantization config beside ``ckpt``'s file, or None."""
    directory = directory_of(ckpt)
    if isinstance(directory, UrlPath) and not _may_be_quantized(ckpt):
        return None  # no request for a config recognition would not use
    config = _load(directory / "config.json") or {}
    for holder in (config, config.get("text_config")):
        if not isinstance(holder, dict):
            continue
        settings = holder.get("quantization_config")
        if isinstance(settings, dict):
            return QuantConfig(_method(settings, "unknown"), settings, "config.json quantization_config")
        mlx = holder.get("quantization")
        if isinstance(mlx, dict) and "bits" in mlx:
            return QuantConfig("mlx", mlx, "config.json quantization")
    legacy = _load(directory / "quantize_config.json")
    if legacy is not None:
        return QuantConfig(_method(legacy, "gptq"), legacy, "quantize_config.json")
    return None


def number(value: Any) -> int | None:
    """An integer setting, or None when absent or not an integer."""
    return value if type(value) is int else None
