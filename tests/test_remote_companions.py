"""Small files beside a remote checkpoint, or given as URLs (issue 15): the quantization
config next to the weights, and lockfiles (``check --expect URL``, ``diff URL ...``).
Fetched in one capped request each and counted in the cost; a float checkpoint's
listing fetches no config at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from paraminspect.compare import lockfile
from paraminspect.io import source
from tests import quant_layouts as layouts
from tests.conftest import run_cli
from tests.rangeserver import RangeServer, Settings
from tests.test_remote_http import _one_line_error

OUT, IN = 64, 256


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    with RangeServer(tmp_path) as server:
        yield server


def mlx_8bit_g32(folder: Path) -> None:
    """4-bit group 64 and 8-bit group 32 give the same MLX shapes: only the config tells."""
    tensors, _ = layouts.mlx(layouts.matrix(OUT, IN), 8, 32, "l.")
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"quantization": {"group_size": 32, "bits": 8}}))


def test_quantization_config_beside_a_url_is_fetched_and_counted(served: RangeServer) -> None:
    mlx_8bit_g32(served.root)
    result = run_cli("shapes", "-f", "json", served.url("model.safetensors"))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    row = doc["tensors"][0]
    assert (row["logical_dtype"], row["logical_shape"], row["scheme"]) == ("int8", [OUT, IN], "mlx g32")
    config = [e for e in served.log if e.path == "/config.json"]
    assert (
        len(config) == 1 and config[0].range is None and config[0].sent == (served.root / "config.json").stat().st_size
    )
    assert doc["remote"] == {"requests": served.requests, "bytes": served.sent}


def test_float_checkpoint_fetches_no_config(served: RangeServer) -> None:
    save_file({"w": np.ones((4, 4), np.float32), "i": np.arange(3, dtype=np.int64)}, served.root / "m.safetensors")
    (served.root / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "gptq"}}))
    assert run_cli("shapes", served.url("m.safetensors")).code == 0
    assert [e.path for e in served.log] == ["/m.safetensors"]


def test_missing_or_oversized_config_is_no_config(served: RangeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from paraminspect.quant import config

    mlx_8bit_g32(served.root)
    monkeypatch.setattr(config, "MAX_CONFIG_BYTES", 8)  # too large: refused by its Content-Length
    doc = json.loads(run_cli("shapes", "-f", "json", served.url("model.safetensors")).out)
    assert doc["tensors"][0]["scheme"] != "mlx g32"  # read by the tensors alone, as without a config
    weights = sum(e.sent for e in served.log if e.path == "/model.safetensors")
    assert doc["remote"]["bytes"] == weights  # refused by its Content-Length: its body never read
    (served.root / "config.json").unlink()
    assert run_cli("shapes", served.url("model.safetensors")).code == 0  # 404: no config, no error


def _lock_for(served: RangeServer, tensors: dict[str, np.ndarray]) -> str:
    save_file(tensors, served.root / "m.safetensors")
    result = run_cli("hash", served.root / "m.safetensors", "-f", "json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    for item in document["tensors"]:  # the reference: hashlib over the array's own bytes
        assert item["sha256"] == hashlib.sha256(tensors[item["name"]].tobytes()).hexdigest()
    (served.root / "lock.json").write_text(result.out)
    return served.url("lock.json")


def test_check_expect_and_diff_take_a_lockfile_url(served: RangeServer) -> None:
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float16)}
    lock = _lock_for(served, tensors)
    ok = run_cli("check", served.root / "m.safetensors", "--expect", lock)
    assert ok.code == 0, ok.err
    lock_reads = [e for e in served.log if e.path == "/lock.json"]
    assert len(lock_reads) == 1 and lock_reads[0].range is None
    save_file({"a": tensors["a"] + 1, "b": tensors["b"]}, served.root / "changed.safetensors")
    drift = run_cli("check", served.root / "changed.safetensors", "--expect", lock, "-f", "json")
    assert drift.code == 1 and json.loads(drift.out)["drift"][0]["name"] == "a"
    same = run_cli("diff", lock, served.url("m.safetensors"), "-f", "json")
    assert same.code == 0, same.err
    changed = run_cli("diff", served.root / "changed.safetensors", lock, "-f", "json")
    assert changed.code == 1
    assert {e["name"]: e["status"] for e in json.loads(changed.out)["entries"]}["a"] == "values_changed"


def test_lockfile_urls_fail_in_one_line(served: RangeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = _lock_for(served, {"a": np.zeros(3, np.float32)})
    missing = served.url("gone.json")
    _one_line_error(run_cli("check", served.root / "m.safetensors", "--expect", missing), "not found (HTTP 404)")
    monkeypatch.setattr(lockfile, "MAX_LOCK_BYTES", 16)
    _one_line_error(run_cli("check", served.root / "m.safetensors", "--expect", lock), "larger than 16 bytes")
    assert source.COST.as_dict() == {"requests": 1, "bytes": 0}  # refused by its Content-Length, body unread


def test_hub_lockfile_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RangeServer(tmp_path / "hub", Settings(hub=True)) as hub:
        folder = hub.root / "org" / "locked"
        folder.mkdir(parents=True)
        tensors = {"w": np.arange(5, dtype=np.int32)}
        save_file(tensors, folder / "model.safetensors")
        (folder / "lock.json").write_text(run_cli("hash", folder / "model.safetensors", "-f", "json").out)
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        result = run_cli("check", "hf://org/locked", "--expect", "hf://org/locked/lock.json")
        assert result.code == 0, result.err
        assert any(e.path.endswith("/resolve/main/lock.json") for e in hub.log)
