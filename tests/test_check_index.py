"""``check`` on a sharded index: ``total_size``/``total_parameters`` against the shards
(computed as transformers computes them, checked on a real ``save_pretrained``), and
weight-map entries against what each shard holds; each problem one row, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import run_cli, run_script

INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A tiny Llama sharded by transformers' save_pretrained, and its parameter count."""
    from tests.matrix.writers_libs import tiny_llama

    directory = tmp_path_factory.mktemp("pretrained")
    model = tiny_llama(tied=False)
    model.save_pretrained(directory, max_shard_size="10KB")
    return directory, sum(p.numel() for p in model.parameters())


def _copy(source: Path, target: Path, edit: dict[str, object] | None = None) -> Path:
    """The checkpoint directory at ``target``, its index changed by ``edit`` (None: unchanged)."""
    target.mkdir()
    for file in source.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    if edit is not None:
        index = json.loads((target / INDEX).read_text())
        index.update(edit)
        (target / INDEX).write_text(json.dumps(index))
    return target


def _index(directory: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((directory / INDEX).read_text())


def test_transformers_totals_are_what_the_shards_hold(pretrained: tuple[Path, int]) -> None:
    directory, parameters = pretrained
    index = _index(directory)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    stored = {name: t for shard in shards for name, t in load_file(str(directory / shard)).items()}
    # The rule check applies, held to the files transformers wrote:
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in stored.values())
    assert index["metadata"]["total_parameters"] == parameters == sum(t.numel() for t in stored.values())
    result = run_script("check", directory)
    assert (result.returncode, result.stdout, result.stderr) == (0, "6,736 params, 0 file problems\n", "")


def test_tied_model_saved_by_transformers_passes(tmp_path: Path) -> None:
    from tests.matrix.writers_libs import tiny_llama

    tiny_llama(tied=True).save_pretrained(tmp_path, max_shard_size="10KB")
    result = run_cli("check", tmp_path, "-f", "json")
    assert result.code == 0, result.out
    assert json.loads(result.out)["file_problems"] == []


def test_wrong_total_size_is_one_failing_row(pretrained: tuple[Path, int], tmp_path: Path) -> None:
    directory, parameters = pretrained
    real = _index(directory)["metadata"]["total_size"]
    broken = _copy(directory, tmp_path / "m", {"metadata": {"total_size": real + 4, "total_parameters": parameters}})
    result = run_cli("check", broken)
    assert result.code == 1
    assert result.out == (
        "status              name        expected    actual\n"
        "------------------  ----------  ----------  -------------------------\n"
        f"total_size differs  total_size  {real + 4:<10}  {real} bytes in the shards\n"
        "\n"
        "6,736 params, 1 file problems\n"
    )
    doc = json.loads(run_cli("check", broken, "-f", "json").out)
    assert doc["ok"] is False
    assert doc["file_problems"] == [
        {
            "check": "total_size",
            "name": "total_size",
            "expected": str(real + 4),
            "actual": f"{real} bytes in the shards",
        }
    ]
    assert run_cli("check", broken, "-q").code == 1


def test_total_parameters_above_the_stored_elements_fails(pretrained: tuple[Path, int], tmp_path: Path) -> None:
    directory, parameters = pretrained
    size = _index(directory)["metadata"]["total_size"]
    over = _copy(directory, tmp_path / "over", {"metadata": {"total_size": size, "total_parameters": parameters + 1}})
    doc = json.loads(run_cli("check", over, "-f", "json").out)
    assert [p["check"] for p in doc["file_problems"]] == ["total_parameters"]
    # Fewer parameters than stored elements is what buffers (stored, not parameters) look like.
    under = _copy(directory, tmp_path / "under", {"metadata": {"total_size": size, "total_parameters": parameters - 8}})
    assert run_cli("check", under).code == 0
    text = _copy(directory, tmp_path / "text", {"metadata": {"total_size": size, "total_parameters": "many"}})
    assert run_cli("check", text).code == 1


def test_weight_map_against_the_shards_one_row_each(pretrained: tuple[Path, int], tmp_path: Path) -> None:
    directory, _ = pretrained
    weight_map = dict(_index(directory)["weight_map"])
    moved, dropped = "model.norm.weight", "lm_head.weight"
    home = weight_map[moved]
    elsewhere = next(s for s in sorted(set(weight_map.values())) if s != home)
    weight_map[moved] = elsewhere  # listed for a shard that lacks it (its own shard holds it unlisted)
    weight_map["model.ghost.weight"] = home  # listed, held by no shard
    dropped_home = weight_map.pop(dropped)  # held by a shard, listed nowhere
    broken = _copy(directory, tmp_path / "m", {"weight_map": weight_map})
    doc = json.loads(run_cli("check", broken, "-f", "json").out)
    assert doc["ok"] is False
    problems = {(p["check"], p["name"], p["expected"], p["actual"]) for p in doc["file_problems"]}
    assert problems == {
        ("missing_from_shard", moved, f"in {elsewhere}", "absent"),
        ("not_in_index", moved, f"listed for {elsewhere}", f"in {home}"),
        ("missing_from_shard", "model.ghost.weight", f"in {home}", "absent"),
        ("not_in_index", dropped, "not listed", f"in {dropped_home}"),
    }
    assert len(doc["file_problems"]) == 4
    # Reading still works: every tensor a shard holds where the index can find it (or unlisted) is there.
    shapes = run_cli("shapes", broken, "-f", "json")
    assert shapes.code == 0
    names = {t["name"] for t in json.loads(shapes.out)["tensors"]}
    assert dropped in names and moved not in names and "model.ghost.weight" not in names
    # ... but never silently: every other command says the input disagrees with itself;
    # check, which lists the problems, does not say it twice; --quiet says nothing.
    warning = f"paraminspect: warning: {broken / 'model.safetensors.index.json'}: the index and its shards disagree"
    assert shapes.err.startswith(warning + " (4 problems); 'paraminspect check' lists them\n")
    for args in (("stats", broken), ("diff", broken, broken), ("convert", broken, tmp_path / "out.safetensors")):
        assert warning in run_cli(*args).err, args
    assert warning not in run_cli("check", broken).err
    assert run_cli("diff", broken, broken, "--quiet").err == ""


def test_index_problems_join_a_spec_check(pretrained: tuple[Path, int], tmp_path: Path) -> None:
    directory, parameters = pretrained
    spec = tmp_path / "spec.json"
    spec.write_text(run_cli("shapes", directory, "-f", "json").out)
    assert run_cli("check", directory, "--expect", spec).code == 0
    size = _index(directory)["metadata"]["total_size"]
    broken = _copy(directory, tmp_path / "m", {"metadata": {"total_size": size - 1, "total_parameters": parameters}})
    result = run_cli("check", broken, "--expect", spec)
    assert result.code == 1
    assert result.out.endswith(
        "0 missing, 0 unexpected, 0 dtype changed, 0 shape changed, 21 matching, 6,736 params, 1 file problems\n"
    )


def test_index_problems_are_sarif_findings(pretrained: tuple[Path, int], tmp_path: Path) -> None:
    directory, parameters = pretrained
    size = _index(directory)["metadata"]["total_size"]
    broken = _copy(directory, tmp_path / "m", {"metadata": {"total_size": size + 4, "total_parameters": parameters}})
    result = run_cli("check", broken, "-f", "sarif")
    assert result.code == 1
    (run,) = json.loads(result.out)["runs"]
    assert [(r["ruleId"], r["level"]) for r in run["results"]] == [("PI107", "error")]
    assert "total_size differs" in run["results"][0]["message"]["text"]
