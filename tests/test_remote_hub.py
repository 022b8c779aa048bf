"""The Hugging Face Hub (``hf://``, a fake Hub on 127.0.0.1 behind HF_ENDPOINT) and its
local cache (a bare ``org/repo[@rev]``, HF_HOME, no network) (issue 15)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from tests.conftest import run_cli
from tests.rangeserver import COMMIT, RangeServer, Settings
from tests.test_remote_http import _one_line_error, _shapes_json


def _sharded_repo(folder: Path, shards: int = 3) -> dict[str, list[int]]:
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {f"layers.{shard}.w": np.full((2, shard + 1), shard, np.float32)}
        save_file(tensors, folder / name)
        weight_map.update(dict.fromkeys(tensors, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    expected = {}
    for name in sorted(set(weight_map.values())):
        with safe_open(str(folder / name), framework="numpy") as f:
            expected.update({k: list(f.get_slice(k).get_shape()) for k in f.keys()})  # noqa: SIM118
    return expected


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with RangeServer(tmp_path / "hub", Settings(hub=True)) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.base)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def test_repo_resolves_to_its_index_and_shards(hub: RangeServer) -> None:
    expected = _sharded_repo(hub.root / "org" / "big")
    result = run_cli("shapes", "hf://org/big", "-f", "json")
    assert _shapes_json(result) == expected
    paths = [e.path for e in hub.log]
    assert paths[0] == "/api/models/org/big/revision/main"  # one listing, then files at its commit
    assert all(f"/resolve/{COMMIT}/" in p for p in paths[1:])
    assert hub.requests == 1 + 1 + 3
    assert json.loads(result.out)["remote"]["requests"] == hub.requests


def test_a_file_at_a_revision(hub: RangeServer) -> None:
    folder = hub.root / "org" / "one"
    folder.mkdir(parents=True)
    save_file({"a": np.arange(6, dtype=np.int32).reshape(2, 3)}, folder / "weights.safetensors")
    result = run_cli("get", "hf://org/one@main/weights.safetensors", "a", "-f", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["entries"][0]["values"] == load_file(folder / "weights.safetensors")["a"].tolist()
    assert hub.log[0].path == "/org/one/resolve/main/weights.safetensors"


def test_single_file_repo(hub: RangeServer) -> None:
    folder = hub.root / "org" / "small"
    folder.mkdir(parents=True)
    save_file({"x": np.zeros(3, np.float32)}, folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    assert _shapes_json(run_cli("shapes", "hf://org/small", "-f", "json")) == {"x": [3]}


def test_token_sent_to_the_hub_not_to_its_cdn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "hub" / "org" / "gated"
    folder.mkdir(parents=True)
    save_file({"x": np.zeros(3, np.float32)}, folder / "model.safetensors")
    with RangeServer(tmp_path / "hub") as cdn, RangeServer(tmp_path / "hub", Settings(hub=True, token="hf_x")) as hub:
        hub.settings.redirect = cdn.base
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        _one_line_error(run_cli("shapes", "hf://org/gated/model.safetensors"), "HTTP 401", "HF_TOKEN")
        monkeypatch.setenv("HF_TOKEN", "hf_x")
        assert run_cli("shapes", "hf://org/gated/model.safetensors").code == 0
        assert hub.auth_seen[-1] == "Bearer hf_x"
        assert cdn.auth_seen and all(a is None for a in cdn.auth_seen)


def test_missing_repo_and_bad_names(hub: RangeServer) -> None:
    _one_line_error(run_cli("shapes", "hf://org/nothing"), "HTTP 404")
    _one_line_error(run_cli("shapes", "hf://justone"), "org/repo")


def _cache(home: Path, repo: str, files: Path) -> Path:
    """A Hub cache entry as huggingface_hub lays it out: blobs, a snapshot of symlinks, refs/main."""
    folder = home / "hub" / ("models--" + repo.replace("/", "--"))
    blobs, snapshot = folder / "blobs", folder / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, file in enumerate(sorted(files.iterdir())):
        blob = blobs / f"{i:040x}"
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return snapshot


def test_bare_repo_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _sharded_repo(tmp_path / "files")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no network is used
    _cache(tmp_path / "home", "org/cached", tmp_path / "files")
    monkeypatch.chdir(tmp_path)
    assert _shapes_json(run_cli("shapes", "org/cached", "-f", "json")) == expected
    assert _shapes_json(run_cli("shapes", f"org/cached@{COMMIT}", "-f", "json")) == expected
    assert _shapes_json(run_cli("shapes", "org/cached@main", "-f", "json")) == expected
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _shapes_json(run_cli("shapes", "hf://org/cached", "-f", "json")) == expected
    _one_line_error(run_cli("shapes", "hf://org/elsewhere"), "HF_HUB_OFFLINE")
    _one_line_error(run_cli("shapes", "org/uncached"), "no such file")
