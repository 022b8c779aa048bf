"""Value policies in ``check`` (--finite, --max-abs, --no-all-zero, --no-constant, --dtype),
on the command line and in the spec file; truths computed with numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paraminspect.compare import policies
from paraminspect.formats.opening import open_checkpoint
from tests.conftest import run_cli, run_script


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(40, 30, generator=g)
    w[17, 4] = float("nan")
    w[31, 2] = float("-inf")
    big = torch.randn(50, generator=g) * 100
    big[[9, 33]] = torch.tensor([2500.0, -4000.0])
    half = (torch.randn(8, 8, generator=g) * 10).to(torch.bfloat16)
    half[5, 6] = float("inf")
    return {
        "w": w,
        "t": w.t(),  # a strided view: indices are the view's
        "big": big,
        "half": half,
        "zero": torch.zeros(6, 7),
        "const": torch.full((3, 4), 0.5),
        "ints": torch.arange(12).reshape(3, 4),
        "flat": torch.tensor([7.0]).expand(9),  # a broadcast view of one element
        "one": torch.tensor([0.0]),  # one element: never "constant"
        "empty": torch.zeros(0, 2),
    }


def _truths(state: dict[str, torch.Tensor], max_abs: float) -> list[tuple[str, str, list[int] | None]]:
    """What each policy should report, from numpy: (name, policy, first offending index)."""
    out: list[tuple[str, str, list[int] | None]] = []
    for name, t in state.items():
        a = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
        if a.size == 0:
            continue
        found = []
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            found.append((name, "finite", np.argwhere(~np.isfinite(a))[0].tolist()))
        if (np.abs(a) > max_abs).any():
            found.append((name, "max_abs", np.argwhere(np.abs(a) > max_abs)[0].tolist()))
        if (a == 0).all():
            found.append((name, "no_all_zero", None))
        if a.size > 1 and (a == a.flat[0]).all():
            found.append((name, "no_constant", None))
        out += found
    return out


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.save(_state(), tmp_path / "m.pt")
    return tmp_path / "m.pt"


def _json(*args: str | Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_cli("check", *args, "--format", "json")
    assert result.err == "", result.err
    return result.code, json.loads(result.out)


def test_every_violation_with_its_first_offending_index(model: Path) -> None:
    code, doc = _json(model, "--finite", "--max-abs", "1000", "--no-all-zero", "--no-constant")
    found = [(v["name"], v["policy"], v["index"]) for v in doc["violations"]]
    assert code == 1 and doc["ok"] is False
    assert found == _truths(_state(), 1000)
    assert ("t", "finite", [2, 31]) in found  # the transposed view's own C order: -inf comes first
    assert doc["spec"] is None and doc["policies"]["max_abs"] == 1000.0


def test_small_chunks_find_the_same_first_index(model: Path) -> None:
    ckpt = open_checkpoint(model)
    rules = policies.Policies(finite=True, max_abs=1000.0, no_all_zero=True, no_constant=True)
    for size in (1, 7, 64):
        outcome = policies.evaluate(ckpt.tensors, rules, chunk_elements=size)
        assert [(v.name, v.policy, v.index) for v in outcome.violations] == _truths(_state(), 1000), size


def test_table_rows_exit_codes_and_a_clean_pass(model: Path, tmp_path: Path) -> None:
    result = run_cli("check", model, "w", "big", "--finite", "--max-abs", "1e3")
    assert result.code == 1
    assert result.out == (
        "status        name    expected     actual\n"
        "------------  ------  -----------  ------------------------\n"
        "not finite    w       finite       nan at [17, 4]\n"
        "over max abs  w       |x| <= 1000  |-inf| > 1000 at [31, 2]\n"
        "over max abs  big     |x| <= 1000  |2500.0| > 1000 at [9]\n"
        "\n"
        "3 policy violations, 2 tensors checked, 1,250 params\n"
    )
    torch.save({"a": torch.randn(3, 3), "b": torch.arange(4.0)}, tmp_path / "ok.pt")
    good = run_script("check", tmp_path / "ok.pt", "--finite", "--no-all-zero", "--no-constant", "--max-abs", "100")
    assert (good.returncode, good.stdout) == (0, "0 policy violations, 2 tensors checked, 13 params\n")
    # Neither a spec nor a policy: only the file's own consistency (issue 13), which a .pt has.
    alone = run_script("check", tmp_path / "ok.pt")
    assert (alone.returncode, alone.stdout) == (0, "13 params, 0 file problems\n")


def test_integer_tensors_are_not_read_for_finite(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    real = policies.iter_chunks

    def spy(ref, chunk_elements):  # type: ignore[no-untyped-def]
        read.append(ref.dtype.name)
        return real(ref, chunk_elements)

    monkeypatch.setattr(policies, "iter_chunks", spy)
    ckpt = open_checkpoint(model)
    policies.evaluate(ckpt.tensors, policies.Policies(finite=True))
    assert "int64" not in read and read  # floats were read, the int tensor was not
    read.clear()
    policies.evaluate(ckpt.tensors, policies.Policies(dtype_rules=(policies.DtypeRule.parse("w:float32"),)))
    assert read == []  # a dtype rule reads no data


def test_dtype_rules_by_selector(model: Path) -> None:
    code, doc = _json(model, "--dtype", "*:float32", "--dtype", "ints:int64")
    expected = [n for n, t in _state().items() if t.dtype != torch.float32]  # every rule holds for every match
    assert code == 1 and [(v["name"], v["policy"]) for v in doc["violations"]] == [(n, "dtype") for n in expected]
    assert _json(model, "--dtype", "w:fp32", "--dtype", "ints:long")[0] == 0  # aliases accepted
    nothing = run_cli("check", model, "--dtype", "nosuch.*:float32")
    assert nothing.code == 2 and "matches no tensor" in nothing.err
    malformed = run_cli("check", model, "--dtype", "float32")
    assert malformed.code == 2 and malformed.err.startswith("paraminspect: error: --dtype expects SELECTOR:DTYPE")


def test_policies_in_the_spec_file(model: Path, tmp_path: Path) -> None:
    shapes = run_cli("shapes", model, "--format", "json")
    spec = json.loads(shapes.out)
    spec["policies"] = {"finite": True, "max_abs": 1000, "dtype": ["half:bfloat16"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    code, doc = _json(model, "--expect", tmp_path / "spec.json")
    assert code == 1 and doc["counts"]["matching"] == len(_state())
    assert [(v["name"], v["policy"], v["index"]) for v in doc["violations"]] == [
        t for t in _truths(_state(), 1000) if t[1] in ("finite", "max_abs")
    ]
    # A spec of policies alone checks no structure; the command line adds to it.
    (tmp_path / "only.json").write_text(json.dumps({"policies": {"no_all_zero": True}}))
    code, doc = _json(model, "--expect", tmp_path / "only.json", "--no-constant")
    assert code == 1 and doc["policies"]["no_all_zero"] and doc["policies"]["no_constant"]
    assert [(v["name"], v["policy"]) for v in doc["violations"]] == [
        (n, p) for n, p, _ in _truths(_state(), 1000) if p in ("no_all_zero", "no_constant")
    ]
    for bad in ({"finite": "yes"}, {"max_abs": -1}, {"dtype": ["x"]}, {"speed": True}, []):
        (tmp_path / "bad.json").write_text(json.dumps({"policies": bad}))
        result = run_cli("check", model, "--expect", tmp_path / "bad.json")
        assert result.code == 2 and result.err.count("\n") == 1 and "bad.json" in result.err, bad


def test_undecodable_tensors_are_reported_unchecked(tmp_path: Path) -> None:
    """A float6 tensor (safetensors F6_E2M3, written by hand: torch has no float6; a
    complex32 tensor would use up torch's warn-once ComplexHalf warning other tests expect)."""
    import struct

    header = json.dumps(
        {
            "q": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]},
            "w": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "f6.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(3) + struct.pack("<2f", 1, 2))
    result = run_cli("check", path, "--finite")
    assert result.code == 0
    assert result.err == "paraminspect: warning: q: cannot decode its values; value policies unchecked\n"
