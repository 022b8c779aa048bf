"""``set-meta`` / ``rm-meta``: the metadata as ``safetensors.safe_open(...).metadata()``
reads it afterwards, every tensor bit-identical to the input as safetensors' own
loader reads both, and clear refusals for formats whose metadata is not editable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file, save_model

from tests.conftest import SAMPLES, run_cli, run_script


def _official_metadata(path: Path) -> dict[str, str] | None:
    with safe_open(str(path), framework="numpy") as f:
        return f.metadata()


def _same_tensors(a: Path, b: Path) -> None:
    """Equal names, dtypes, shapes and bytes, as safetensors loads both files."""
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys()
    for name, tensor in left.items():
        other = right[name]
        assert (tensor.dtype, tensor.shape) == (other.dtype, other.shape), name
        assert tensor.contiguous().view(torch.uint8).flatten().tolist() == (
            other.contiguous().view(torch.uint8).flatten().tolist()
        ), name


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    tensors = {
        "embed.weight": torch.randn(16, 4, dtype=torch.bfloat16),
        "layer.weight": torch.randn(4, 4),
        "layer.bias": torch.randn(4, dtype=torch.float16),
        "steps": torch.tensor([7], dtype=torch.int64),
    }
    save_file(tensors, str(path), metadata={"format": "pt", "ss_network_dim": "16"})
    return path


def test_set_meta_adds_and_replaces_keys_and_keeps_every_tensor(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.safetensors"
    template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}" * 100
    result = run_cli("set-meta", model, "chat_template", template, "-o", out)
    assert result.code == 0, result.err
    assert result.out == ""
    assert result.err.startswith(f"set-meta: wrote {out} (safetensors, 4 tensors, ")
    assert _official_metadata(out) == {"format": "pt", "ss_network_dim": "16", "chat_template": template}
    _same_tensors(model, out)
    again = tmp_path / "again.safetensors"
    assert run_cli("set-meta", out, "ss_network_dim", "32", "-o", again).code == 0
    assert _official_metadata(again) == {"format": "pt", "ss_network_dim": "32", "chat_template": template}
    _same_tensors(model, again)
    assert json.loads(run_cli("meta", again, "ss_network_dim", "-f", "json").out)["metadata"] == {
        "ss_network_dim": "32"
    }


def test_rm_meta_in_place_keeps_mode_and_tensors(model: Path, tmp_path: Path) -> None:
    original = tmp_path / "original.safetensors"
    original.write_bytes(model.read_bytes())
    os.chmod(model, 0o640)
    result = run_script("rm-meta", model, "ss_network_dim", "--in-place", "-f", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["command"], doc["written"], doc["verified"]) == ("rm-meta", True, True)
    assert doc["changes"] == [{"action": "rm-meta", "name": "ss_network_dim", "detail": ""}]
    assert _official_metadata(model) == {"format": "pt"}
    assert os.stat(model).st_mode & 0o777 == 0o640
    _same_tensors(original, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "original.safetensors"]


def test_removing_format_warns_and_still_writes(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.safetensors"
    result = run_cli("rm-meta", model, "format", "-o", out)
    assert result.code == 0
    warning = result.err.splitlines()[0]
    assert warning == (
        f"paraminspect: warning: {model}: transformers 4 refuses to load a safetensors file whose metadata "
        "has no 'format' of pt, tf, flax, mlx (set one with: paraminspect set-meta FILE format pt)"
    )
    assert _official_metadata(out) == {"ss_network_dim": "16"}
    # Removing every key leaves no metadata at all, which transformers 4 accepts: no warning.
    last = tmp_path / "last.safetensors"
    result = run_cli("rm-meta", out, "ss_network_dim", "-o", last)
    assert (result.code, "warning" in result.err) == (0, False)
    assert _official_metadata(last) is None


def test_dry_run_writes_nothing(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.safetensors"
    result = run_cli("set-meta", model, "note", "x", "-o", out, "--dry-run")
    assert result.code == 0 and not out.exists()
    assert "dry run, nothing written" in result.err


def test_ties_recorded_in_the_metadata_survive(tmp_path: Path) -> None:
    shared = torch.nn.Linear(3, 3)
    net = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    path = tmp_path / "tied.safetensors"
    save_model(net, str(path), metadata={"format": "pt"})
    before = _official_metadata(path)
    assert before is not None and len(before) == 3  # format and the two tied names save_model recorded
    out = tmp_path / "out.safetensors"
    assert run_cli("set-meta", path, "note", "tied", "-o", out).code == 0
    assert _official_metadata(out) == {**before, "note": "tied"}
    _same_tensors(path, out)
    alias = next(k for k in before if k != "format")
    refused = run_cli("rm-meta", path, alias, "-o", tmp_path / "x.safetensors")
    assert refused.code == 2 and "records a tied name" in refused.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rm-meta", "{model}", "formt"], "no metadata key 'formt'; did you mean 'format'?"),
        (["set-meta", "{model}", "note", "layer.bias"], "value 'layer.bias' is a tensor name"),
        (["set-meta", "{model}", "layer.bias", "x"], "metadata key 'layer.bias' is also a tensor name"),
        (["set-meta", "{model}", "", "x"], "a metadata key cannot be empty"),
    ],
)
def test_bad_edits_are_one_line_exit_2(model: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out.safetensors"
    result = run_cli(*(a.format(model=model) for a in args), "-o", out)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"paraminspect: error: {model}: {message}")
    assert result.err.count("\n") == 1
    assert not out.exists()


def test_other_output_format_is_refused(model: Path, tmp_path: Path) -> None:
    result = run_cli("set-meta", model, "note", "x", "-o", tmp_path / "out.pt")
    assert result.code == 2
    assert result.err == (
        f"paraminspect: error: {tmp_path / 'out.pt'}: set-meta writes the input's format (safetensors): "
        "give -o a .safetensors path\n"
    )


def test_formats_whose_metadata_is_not_editable_say_so(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    from tests.test_formats_sharded import _tiny_shards

    index = _tiny_shards(tmp_path / "sharded", {"a": "s1.safetensors", "b": "s2.safetensors"})
    dcp.save({"w": torch.ones(2)}, checkpoint_id=str(tmp_path / "dcp"))
    cases = {
        SAMPLES / "mlp.pt": (SAMPLES / "mlp.pt", "torch-zip"),
        index: (index, "sharded-safetensors"),
        tmp_path / "dcp": (tmp_path / "dcp", "dcp"),
    }
    for given, (named, fmt) in cases.items():
        for command in (["set-meta", given, "k", "v"], ["rm-meta", given, "k"]):
            result = run_cli(*command, "-o", tmp_path / "out.safetensors")
            assert (result.code, result.out) == (2, "")
            assert result.err == (
                f"paraminspect: error: {named}: the metadata of {fmt} checkpoints is not editable yet "
                "(editable: gguf, safetensors)\n"
            )


def test_verification_catches_metadata_the_writer_did_not_mean(model: Path) -> None:
    from paraminspect.dtypes import BY_NAME
    from paraminspect.edit.verify import Expected, verify_written
    from paraminspect.errors import CheckpointError

    expected = {
        "embed.weight": Expected(BY_NAME["bfloat16"], (16, 4), None),
        "layer.weight": Expected(BY_NAME["float32"], (4, 4), None),
        "layer.bias": Expected(BY_NAME["float16"], (4,), None),
        "steps": Expected(BY_NAME["int64"], (1,), None),
    }
    meant = {"format": "pt", "ss_network_dim": "16"}
    assert _official_metadata(model) == meant
    verify_written(model, expected, metadata=meant)
    with pytest.raises(CheckpointError, match=r"metadata differs \(\['ss_network_dim'\]\)"):
        verify_written(model, expected, metadata={**meant, "ss_network_dim": "32"})
