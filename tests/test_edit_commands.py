"""set/init/rename/drop/extract/cast end to end, checked with torch.load as the oracle."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SAMPLES, run_cli, run_script


def load(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    result: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
    return result


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_set_scalar_json_and_npy(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"o{suffix}"
    assert run_cli("set", SAMPLES / "mlp.pt", "2.bias", "0", "-o", out).code == 0
    result, original = load(out), load(SAMPLES / "mlp.pt")
    assert torch.equal(result["2.bias"], torch.zeros(1))
    assert torch.equal(result["0.weight"], original["0.weight"])
    values = [[float(i + j) for j in range(8)] for i in range(1)]
    assert run_cli("set", out, "2.weight", json.dumps(values), "--in-place").code == 0
    assert torch.equal(load(out)["2.weight"], torch.tensor(values))
    np.save(tmp_path / "w.npy", np.full((8, 4), 0.5, dtype=np.float64))
    assert run_cli("set", out, "0.weight", str(tmp_path / "w.npy"), "--in-place").code == 0
    assert torch.equal(load(out)["0.weight"], torch.full((8, 4), 0.5))


def test_set_shape_mismatch_and_bad_values_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "o.pt"
    result = run_cli("set", SAMPLES / "mlp.pt", "2.bias", "[1, 2, 3]", "-o", out)
    assert result.code == 2
    assert result.err == (
        f"paraminspect: error: {SAMPLES / 'mlp.pt'}: value has shape [3] but tensor '2.bias' has shape [1]\n"
    )
    assert run_cli("set", SAMPLES / "mlp.pt", "nope", "0", "-o", out).code == 2
    assert run_cli("set", SAMPLES / "mlp.pt", "2.bias", "abc", "-o", out).code == 2
    assert not out.exists()


def test_set_integer_tensor_refuses_fraction(tmp_path: Path) -> None:
    torch.save({"n": torch.tensor([1, 2], dtype=torch.int64)}, tmp_path / "i.pt")
    result = run_cli("set", tmp_path / "i.pt", "n", "0.5", "-o", tmp_path / "o.pt")
    assert result.code == 2 and "does not fit" in result.err
    assert run_cli("set", tmp_path / "i.pt", "n", "[7, 8]", "-o", tmp_path / "o.pt").code == 0
    assert load(tmp_path / "o.pt")["n"].tolist() == [7, 8]


def test_tied_edit_needs_untie_or_both_names(tmp_path: Path) -> None:
    src = SAMPLES / "tied.pt"
    result = run_cli("set", src, "2.weight", "0", "-o", tmp_path / "a.pt")
    assert result.code == 2 and "--untie" in result.err and "'4.weight'" in result.err
    assert run_cli("set", src, "2.weight", "0", "--untie", "-o", tmp_path / "a.pt").code == 0
    untied = load(tmp_path / "a.pt")
    assert torch.equal(untied["2.weight"], torch.zeros(8, 8))
    assert torch.equal(untied["4.weight"], load(src)["4.weight"])
    assert untied["2.weight"].data_ptr() != untied["4.weight"].data_ptr()
    # Selecting every tied name edits the one shared tensor and keeps the tie.
    code = run_cli("init", src, "2.weight", "4.weight", "--scheme", "ones", "-o", tmp_path / "b.pt").code
    assert code == 0
    both = load(tmp_path / "b.pt")
    assert both["2.weight"].data_ptr() == both["4.weight"].data_ptr()
    assert torch.equal(both["4.weight"], torch.ones(8, 8))


def test_init_seeded_is_reproducible_and_writes_safetensors(tmp_path: Path) -> None:
    args = ("init", SAMPLES / "mlp.pt", "*.weight", "--scheme", "xavier_uniform", "--seed", "0")
    assert run_cli(*args, "-o", tmp_path / "a.safetensors").code == 0
    assert run_cli(*args, "-o", tmp_path / "b.safetensors").code == 0
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    a, original = load(tmp_path / "a.safetensors"), load(SAMPLES / "mlp.pt")
    bound = (6 / (4 + 8)) ** 0.5
    assert a["0.weight"].abs().max() <= bound and not torch.equal(a["0.weight"], original["0.weight"])
    assert torch.equal(a["0.bias"], original["0.bias"])
    result = run_cli("init", SAMPLES / "mlp.pt", "*.bias", "--scheme", "xavier_normal", "-o", tmp_path / "c.pt")
    assert result.code == 2 and "fewer than 2 dimensions" in result.err


def test_init_constant_in_place_keeps_other_values(tmp_path: Path) -> None:
    target = tmp_path / "m.pt"
    target.write_bytes((SAMPLES / "mlp.pt").read_bytes())
    assert run_cli("init", target, "*.bias", "--scheme", "constant", "--value", "0.01", "--in-place").code == 0
    result = load(target)
    assert torch.equal(result["0.bias"], torch.full((8,), 0.01))
    assert torch.equal(result["2.weight"], load(SAMPLES / "mlp.pt")["2.weight"])


def test_rename_strip_prefix_ddp(tmp_path: Path) -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    wrapped = torch.nn.Sequential(OrderedDict(module=mlp))  # names like DistributedDataParallel's
    torch.save(wrapped.state_dict(), tmp_path / "ddp.pt")
    assert run_cli("rename", tmp_path / "ddp.pt", "--strip-prefix", "module.", "-o", tmp_path / "plain.pt").code == 0
    plain = torch.load(tmp_path / "plain.pt", weights_only=True)
    assert list(plain) == list(mlp.state_dict())
    assert plain._metadata == mlp.state_dict()._metadata  # per-module versions renamed too
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    fresh.load_state_dict(plain)
    assert torch.equal(fresh[0].weight, mlp[0].weight)


def test_rename_prefixes_match_whole_name_parts(tmp_path: Path) -> None:
    torch.save({"enc.w": torch.zeros(1), "encoder.w": torch.ones(1)}, tmp_path / "m.pt")
    result = run_cli("rename", tmp_path / "m.pt", "enc=inner", "--add-prefix", "model.", "-o", tmp_path / "o.pt")
    assert result.code == 0
    assert list(torch.load(tmp_path / "o.pt", weights_only=True)) == ["model.inner.w", "model.encoder.w"]


def test_rename_collision_is_refused(tmp_path: Path) -> None:
    result = run_cli("rename", SAMPLES / "mlp.pt", "0.=2.", "-o", tmp_path / "o.pt")
    assert result.code == 2 and "would both be named" in result.err


def test_drop_and_extract_with_reroot(tmp_path: Path) -> None:
    src = SAMPLES / "rgnet.safetensors"
    assert run_cli("drop", src, "0.block 1", "0.block 2", "-o", tmp_path / "d.safetensors").code == 0
    dropped = load(tmp_path / "d.safetensors")
    assert len(dropped) == 18 - 8 and not any(k.startswith("0.block 1.") for k in dropped)
    assert run_cli("extract", src, "0.block 1", "--reroot", "-o", tmp_path / "e.pt").code == 0
    extracted = load(tmp_path / "e.pt")
    original = load(SAMPLES / "rgnet.pt")
    assert list(extracted) == [
        "0.bias",
        "0.weight",
        "2.bias",
        "2.weight",
    ]  # natural order: safetensors has no module order
    for name, value in extracted.items():
        assert torch.equal(value, original[f"0.block 1.{name}"])
    result = run_cli("extract", src, "0.*", "--reroot", "-o", tmp_path / "x.pt")
    assert result.code == 2 and "--reroot" in result.err


def test_cast_matches_torch_and_skips_integers(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    state = {
        "w": torch.randn(64, 33, generator=generator) * 1000,
        "b": torch.randn(7, dtype=torch.float64, generator=generator),
        "steps": torch.tensor(5),
    }
    torch.save(state, tmp_path / "m.pt")
    for dtype in ("bfloat16", "float16", "float8_e4m3fn"):
        out = tmp_path / f"{dtype}.safetensors"
        result = run_cli("cast", tmp_path / "m.pt", "--dtype", dtype, "-o", out, "--format", "json")
        assert result.code == 0, result.err
        doc = json.loads(result.out)
        assert {c["name"]: c["action"] for c in doc["changes"]} == {"w": "cast", "b": "cast", "steps": "skipped"}
        cast = load(out)
        want = getattr(torch, dtype)
        for name in ("w", "b"):
            expected = state[name].to(want)
            assert cast[name].dtype == want
            assert torch.equal(cast[name].view(torch.uint8), expected.view(torch.uint8)), (dtype, name)
        assert torch.equal(cast["steps"], state["steps"])


def test_cast_only_selected(tmp_path: Path) -> None:
    out = tmp_path / "o.pt"
    assert run_cli("cast", SAMPLES / "mlp.pt", "*.weight", "--dtype", "bf16", "-o", out).code == 0
    result = load(out)
    assert result["0.weight"].dtype == torch.bfloat16 and result["0.bias"].dtype == torch.float32


def test_trainer_checkpoint_keeps_non_tensor_leaves_and_refuses_unknown(tmp_path: Path) -> None:
    src = SAMPLES / "trainer_checkpoint.pt"
    result = run_cli("set", src, "model.2.bias", "0", "-o", tmp_path / "o.pt")
    assert result.code == 2
    assert "args <argparse.Namespace>" in result.err and "--drop-unknown" in result.err
    result = run_cli("set", src, "model.2.bias", "0", "-o", tmp_path / "o.pt", "--drop-unknown")
    assert result.code == 0, result.err
    original = torch.load(src, weights_only=False)
    edited = torch.load(tmp_path / "o.pt", weights_only=True)  # no unknown classes left
    assert set(edited) == {"model", "optimizer", "epoch"} and edited["epoch"] == 3
    assert torch.equal(edited["model"]["2.bias"], torch.zeros(1))
    assert edited["model"]._metadata == original["model"]._metadata
    assert edited["optimizer"]["param_groups"] == original["optimizer"]["param_groups"]
    for key, state in original["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(edited["optimizer"]["state"][key][name], value)


def test_rename_inside_nested_checkpoint(tmp_path: Path) -> None:
    src = SAMPLES / "trainer_checkpoint.pt"
    args = ("rename", src, "model.0.=model.first.", "--drop-unknown", "-o", tmp_path / "o.pt")
    assert run_cli(*args).code == 0
    edited = torch.load(tmp_path / "o.pt", weights_only=True)
    assert list(edited["model"]) == ["first.weight", "first.bias", "2.weight", "2.bias"]
    assert list(edited["optimizer"]["state"]) == [0, 1, 2, 3]  # integer keys kept


def test_json_summary_schema(tmp_path: Path) -> None:
    proc = run_script("drop", SAMPLES / "mlp.pt", "2", "-o", tmp_path / "o.safetensors", "--format", "json")
    assert proc.returncode == 0 and proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert doc == {
        "command": "drop",
        "input": str(SAMPLES / "mlp.pt"),
        "output": str(tmp_path / "o.safetensors"),
        "format": "safetensors",
        "dry_run": False,
        "written": True,
        "verified": True,
        "changes": [
            {"action": "dropped", "name": "2.weight", "detail": ""},
            {"action": "dropped", "name": "2.bias", "detail": ""},
        ],
        "tensors": 2,
        "stored_tensors": 2,
        "tensor_bytes": 160,
        "file_bytes": (tmp_path / "o.safetensors").stat().st_size,
        "values_not_stored": [],
        "tensors_not_stored": [],
        "notes": [],
    }


def test_pt_output_without_torch_gives_install_hint(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None; from paraminspect.cli import main; "
        f"sys.exit(main(['convert', {str(SAMPLES / 'mlp.safetensors')!r}, {str(tmp_path / 'o.pt')!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    hint = "writing .pt files needs torch: pip install 'paraminspect[torch]'"
    assert proc.stderr == f"paraminspect: error: {tmp_path / 'o.pt'}: {hint}\n"  # names the file it is about
    assert list(tmp_path.iterdir()) == []


def test_pt_to_pt_keeps_views_and_storage_sharing(tmp_path: Path) -> None:
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    state = {"base": base, "rows": base[1:3], "transposed": base.t(), "param": torch.nn.Parameter(torch.ones(2))}
    torch.save(state, tmp_path / "v.pt")
    assert run_cli("rename", tmp_path / "v.pt", "rows=middle", "-o", tmp_path / "o.pt").code == 0
    out = torch.load(tmp_path / "o.pt", weights_only=True)
    assert list(out) == ["base", "middle", "transposed", "param"]
    ptr = out["base"].untyped_storage().data_ptr()
    assert out["middle"].untyped_storage().data_ptr() == ptr == out["transposed"].untyped_storage().data_ptr()
    assert out["transposed"].stride() == (1, 5) and torch.equal(out["middle"], base[1:3])
    assert isinstance(out["param"], torch.nn.Parameter) and out["param"].requires_grad


def big_endian_copy(src: Path, dst: Path, widths: list[int]) -> None:
    """Rewrite a torch.save zip as a big-endian machine would have written it."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            rest = info.filename.partition("/")[2]
            if rest == "byteorder":
                data = b"big"
            elif rest.startswith("data/") and rest[5:].isdigit():
                width = widths[int(rest[5:])]
                data = np.frombuffer(data, dtype=f"<u{width}").astype(f">u{width}").tobytes() if width > 1 else data
            zout.writestr(info, data)


def test_big_endian_input_converts_to_little_endian_outputs(tmp_path: Path) -> None:
    state = {
        "f32": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
        "u16": torch.arange(7, dtype=torch.int32).to(torch.uint16),  # an untyped storage: width comes from the tensor
        "i64": torch.arange(5, dtype=torch.int64) - 2,
        "bf16": torch.linspace(-1, 1, 6).to(torch.bfloat16),
    }
    torch.save(state, tmp_path / "little.pt")
    big_endian_copy(tmp_path / "little.pt", tmp_path / "big.pt", [4, 2, 8, 2])
    assert torch.equal(torch.load(tmp_path / "big.pt", weights_only=True)["i64"], state["i64"])  # torch agrees
    for out in ("o.safetensors", "o.pt"):
        assert run_cli("convert", tmp_path / "big.pt", tmp_path / out).code == 0
        loaded = load(tmp_path / out)
        for name, value in state.items():
            assert torch.equal(loaded[name], value), (out, name)


def test_set_narrow_float_rounds_like_torch(tmp_path: Path) -> None:
    torch.save(
        {"h": torch.zeros(3, dtype=torch.bfloat16), "q": torch.zeros(2, dtype=torch.float8_e4m3fn)}, tmp_path / "n.pt"
    )
    assert run_cli("set", tmp_path / "n.pt", "h", "[0.1, 1000.7, -3.3333]", "-o", tmp_path / "a.pt").code == 0
    assert run_cli("set", tmp_path / "a.pt", "q", "[500, -0.3]", "--in-place").code == 0
    out = load(tmp_path / "a.pt")
    assert torch.equal(out["h"], torch.tensor([0.1, 1000.7, -3.3333]).to(torch.bfloat16))
    assert torch.equal(out["q"].view(torch.uint8), torch.tensor([500, -0.3]).to(torch.float8_e4m3fn).view(torch.uint8))


def test_cast_skips_complex_to_real_and_init_reports_skipped(tmp_path: Path) -> None:
    state = {"c": torch.ones(2, dtype=torch.complex64), "w": torch.ones(2, 2), "n": torch.tensor([1, 2])}
    torch.save(state, tmp_path / "m.pt")
    result = run_cli("cast", tmp_path / "m.pt", "--dtype", "float16", "-o", tmp_path / "a.pt", "-f", "json")
    assert result.code == 0
    actions = {c["name"]: (c["action"], c["detail"]) for c in json.loads(result.out)["changes"]}
    assert actions["c"] == ("skipped", "complex64 to float16 would drop the imaginary part")
    assert actions["w"] == ("cast", "float32 -> float16") and actions["n"][0] == "skipped"
    result = run_cli("init", tmp_path / "m.pt", "*", "--scheme", "normal", "-o", tmp_path / "b.pt", "-f", "json")
    assert result.code == 0
    actions = {c["name"]: c["action"] for c in json.loads(result.out)["changes"]}
    assert actions == {"c": "init", "w": "init", "n": "skipped"}


def test_many_storages_do_not_exhaust_file_descriptors(tmp_path: Path) -> None:
    import resource

    state = {f"t.{i}": torch.full((2,), float(i)) for i in range(600)}
    torch.save(state, tmp_path / "many.pt")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # fewer open files than storages
    try:
        result = run_cli("rename", tmp_path / "many.pt", "t.=u.", "-o", tmp_path / "o.pt")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert result.code == 0, result.err
    out = load(tmp_path / "o.pt")
    assert len(out) == 600 and torch.equal(out["u.599"], state["t.599"])


def test_set_negative_values_on_the_command_line(tmp_path: Path) -> None:
    proc = run_script("set", SAMPLES / "mlp.pt", "2.bias", "-1.5", "-o", tmp_path / "a.safetensors")
    assert proc.returncode == 0, proc.stderr
    assert load(tmp_path / "a.safetensors")["2.bias"].tolist() == [-1.5]
    # Values that look like short options (-inf) go after "--".
    proc = run_script("set", SAMPLES / "mlp.pt", "-o", tmp_path / "b.safetensors", "--", "2.bias", "-inf")
    assert proc.returncode == 0, proc.stderr
    assert load(tmp_path / "b.safetensors")["2.bias"].tolist() == [float("-inf")]


def test_dry_run_reports_what_cannot_be_stored(tmp_path: Path) -> None:
    torch.save({"z": torch.ones(2, dtype=torch.complex128)}, tmp_path / "c.pt")
    result = run_cli("convert", tmp_path / "c.pt", tmp_path / "c.safetensors", "--dry-run")
    assert result.code == 2
    assert "'z' is complex128, which safetensors cannot store" in result.err
    assert not (tmp_path / "c.safetensors").exists()


def test_safetensors_output_must_satisfy_the_official_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise safetensors.SafetensorError("refused for the test")

    monkeypatch.setattr(safetensors, "safe_open", refuse)
    result = run_cli("convert", SAMPLES / "mlp.pt", tmp_path / "m.safetensors")
    assert result.code == 2
    assert "safetensors refuses it (refused for the test)" in result.err
    assert list(tmp_path.iterdir()) == []  # nothing left behind
