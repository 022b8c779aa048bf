"""``check``: a checkpoint against the JSON ``shapes`` writes, for CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paraminspect.compare.check import parse_count
from paraminspect.errors import UsageError
from tests.conftest import SAMPLES, Result, run_cli, run_script


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    """The contract, written the way a user would: by ``shapes --format json``."""
    result = run_cli("shapes", SAMPLES / "mlp.pt", "--format", "json")
    assert result.code == 0
    path = tmp_path / "structure.json"
    path.write_text(result.out)
    return path


def _check(*args: str | Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_cli("check", *args, "--format", "json")
    assert result.err == ""
    return result.code, json.loads(result.out)


def test_same_structure_passes_in_any_format(spec: Path) -> None:
    for name in ("mlp.pt", "mlp.safetensors"):
        result = run_cli("check", SAMPLES / name, "--expect", spec)
        assert (result.code, result.err) == (0, "")
        assert result.out == "0 missing, 0 unexpected, 0 dtype changed, 0 shape changed, 4 matching, 49 params\n"


def test_drift_is_reported_and_exits_1(tmp_path: Path, spec: Path) -> None:
    sd = torch.load(SAMPLES / "mlp.pt", weights_only=True)
    sd["0.weight"] = sd["0.weight"].half()
    sd["2.weight"] = torch.zeros(2, 8)
    del sd["2.bias"]
    sd["3.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "drifted.pt")
    result = run_cli("check", tmp_path / "drifted.pt", "--expect", spec)
    assert result.code == 1
    assert result.out == (
        "status         name      expected        actual\n"
        "-------------  --------  --------------  --------------\n"
        "dtype changed  0.weight  float32 [8, 4]  float16 [8, 4]\n"
        "shape changed  2.weight  float32 [1, 8]  float32 [2, 8]\n"
        "missing        2.bias    float32 [1]\n"
        "unexpected     3.weight                  float32 [1]\n"
        "\n"
        "1 missing, 1 unexpected, 1 dtype changed, 1 shape changed, 1 matching, 57 params\n"
    )
    code, doc = _check(tmp_path / "drifted.pt", "--expect", spec)
    assert code == 1 and doc["ok"] is False
    assert doc["counts"] == {"missing": 1, "unexpected": 1, "dtype_changed": 1, "shape_changed": 1, "matching": 1}
    assert doc["drift"][0] == {
        "name": "0.weight",
        "status": "dtype_changed",
        "expected": {"dtype": "float32", "shape": [8, 4]},
        "actual": {"dtype": "float16", "shape": [8, 4]},
    }
    assert doc["drift"][2]["actual"] is None and doc["drift"][3]["expected"] is None


def test_allow_extra_and_max_params(tmp_path: Path, spec: Path) -> None:
    sd = torch.load(SAMPLES / "mlp.pt", weights_only=True)
    sd["head.weight"] = torch.zeros(10, 8)
    torch.save(sd, tmp_path / "bigger.pt")
    assert run_cli("check", tmp_path / "bigger.pt", "--expect", spec, "-q").code == 1
    code, doc = _check(tmp_path / "bigger.pt", "--expect", spec, "--allow-extra")
    assert code == 0 and doc["counts"]["unexpected"] == 1 and doc["drift"] == []
    assert doc["params"] == 49 + 80
    code, doc = _check(tmp_path / "bigger.pt", "--expect", spec, "--allow-extra", "--max-params", "100")
    assert code == 1 and doc["over_budget"] is True and doc["max_params"] == 100
    assert run_cli("check", tmp_path / "bigger.pt", "--expect", spec, "--allow-extra", "--max-params", "1k").code == 0


def test_tied_weights_count_once(tmp_path: Path) -> None:
    (tmp_path / "tied.json").write_text(run_cli("shapes", SAMPLES / "tied.pt", "-f", "json").out)
    code, doc = _check(SAMPLES / "tied.safetensors", "--expect", tmp_path / "tied.json")
    assert code == 0
    loaded = torch.load(SAMPLES / "tied.pt", weights_only=True).values()
    expected = sum({t.data_ptr(): t.numel() for t in loaded}.values())  # shared storage once
    assert doc["params"] == expected


def test_hand_written_spec_may_omit_dtype_or_shape(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"tensors": [{"name": "0.weight", "shape": [8, 4]}, {"name": "0.bias", "dtype": "F32"}]})
    )
    assert run_cli("check", SAMPLES / "mlp.pt", "--expect", spec, "0", "-q").code == 0
    assert run_cli("check", SAMPLES / "mlp.pt", "--expect", spec, "-q").code == 1  # 2.* unexpected


def test_prefix_mapping_and_selection(tmp_path: Path, spec: Path) -> None:
    sd = torch.load(SAMPLES / "mlp.pt", weights_only=True)
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pt")
    assert run_cli("check", tmp_path / "ddp.pt", "--expect", spec, "-q").code == 1
    assert run_cli("check", tmp_path / "ddp.pt", "--expect", spec, "--strip-prefix", "module.", "-q").code == 0
    code, doc = _check(tmp_path / "ddp.pt", "--expect", spec, "--strip-prefix", "module.", "2")
    assert code == 0 and doc["counts"]["matching"] == 2 and doc["params"] == 9


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "spec is not valid JSON"),
        ("[1, 2]", "spec has no 'tensors' list"),
        ('{"tensors": [{"dtype": "F32"}]}', "spec tensors[0] has no string 'name'"),
        (
            '{"tensors": [{"name": "a", "shape": [-1]}]}',
            "spec tensor 'a': 'shape' must be a list of non-negative integers",
        ),
        ('{"tensors": [{"name": "a"}, {"name": "a"}]}', "spec lists 'a' twice"),
        ("[" * 100_000 + "]" * 100_000, "spec JSON is nested too deeply"),
        ('{"tensors": [{"name": "a", "dtype": 32}]}', "spec tensor 'a': 'dtype' must be a string"),
        (b"\xff\xfe".decode("latin-1"), "spec is not valid JSON"),
    ],
)
def test_bad_spec_is_exit_2(tmp_path: Path, content: str, reason: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = run_cli("check", SAMPLES / "mlp.pt", "--expect", bad)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"paraminspect: error: {bad}: {reason}") and result.err.count("\n") == 1


def test_usage_errors() -> None:
    result = run_cli("check", SAMPLES / "mlp.pt", "--expect", SAMPLES / "none.json")
    assert result.code == 2 and "no such file" in result.err
    result = run_cli("check", SAMPLES / "mlp.pt")  # no spec: only the file's own consistency is checked
    assert (result.code, result.out, result.err) == (0, "49 params, 0 file problems\n", "")
    result = run_cli("check", SAMPLES / "mlp.pt", "--expect", SAMPLES / "mlp.pt", "--max-params", "lots")
    assert result.code == 2 and result.err.startswith("paraminspect: error: --max-params expects")


def test_parse_count() -> None:
    assert parse_count("1000000") == 10**6
    assert parse_count("1_000") == 1000
    assert parse_count("110M") == 110 * 10**6
    assert parse_count("7B") == 7 * 10**9
    assert parse_count("1.5k") == 1500
    with pytest.raises(UsageError):
        parse_count("-3")


def test_installed_script(spec: Path) -> None:
    proc = run_script("check", SAMPLES / "mlp.safetensors", "--expect", spec, "-f", "json")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout)["ok"] is True
    proc = run_script("check", SAMPLES / "rgnet.pt", "--expect", spec, "-q")
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "")


def test_trainer_checkpoint_subtree_against_plain_spec(spec: Path) -> None:
    trainer = SAMPLES / "trainer_checkpoint.pt"
    result = run_cli("check", trainer, "--expect", spec)  # the model's state dict is picked automatically
    assert result.code == 0
    assert result.err.startswith(f"paraminspect: note: {trainer}: using the state dict under 'model'")
    assert run_cli("check", trainer, "--expect", spec, "-q") == Result(0, "", "")  # --quiet silences the note
    assert run_cli("check", trainer, "--expect", spec, "--root", "", "-q").code == 1  # the whole file drifts
    code, doc = _check(trainer, "--expect", spec, "--root", "", "model", "--strip-prefix", "model")
    assert code == 0 and doc["counts"]["matching"] == 4 and doc["params"] == 49 and doc["root"] == ""
    code, doc = _check(trainer, "--expect", spec, "--root", "model", "model.2")  # the file's own full names
    assert code == 0 and doc["counts"]["matching"] == 2 and doc["root"] == "model"


def test_over_budget_table_text(tmp_path: Path, spec: Path) -> None:
    result = run_cli("check", SAMPLES / "mlp.pt", "--expect", spec, "--max-params", "48")
    assert result.code == 1
    assert result.out == (
        "0 missing, 0 unexpected, 0 dtype changed, 0 shape changed, 4 matching, 49 params, "
        "48 params allowed (exceeded)\n"
    )
