"""``diff``: classification, tolerance, NaN rules and value statistics, with torch as the oracle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paraminspect import open_checkpoint
from paraminspect.compare import elementwise as compare
from paraminspect.compare.diff import Status
from paraminspect.compare.diff import compare as diff_rows
from paraminspect.compare.elementwise import compare_tensors
from paraminspect.compare.tolerance import Tolerance
from paraminspect.data import arrays as tensors
from tests.conftest import SAMPLES, Result, run_cli, run_script


def _save(path: Path, tensors: dict[str, object]) -> Path:
    torch.save(tensors, path)
    return path


def _json(*args: str | Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_cli("diff", *args, "--format", "json")
    assert result.err == ""
    return result.code, json.loads(result.out)


def _by_name(document: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {e["name"]: e for e in document["entries"]}


@pytest.fixture
def base() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"w": torch.randn(16, 8), "b": torch.randn(8), "steps": torch.arange(10)}


def test_identical_files_exit_0(tmp_path: Path, base: dict[str, torch.Tensor]) -> None:
    a = _save(tmp_path / "a.pt", base)
    b = _save(tmp_path / "b.pt", {k: v.clone() for k, v in base.items()})
    result = run_cli("diff", a, b)
    assert (result.code, result.err) == (0, "")
    assert result.out == "0 only in A, 0 only in B, 0 dtype changed, 0 shape changed, 0 values changed, 3 equal\n"
    assert run_cli("diff", a, b, "--atol", "0", "--rtol", "0", "--quiet").code == 0


def test_one_element_changed_by_1e7_caught_exactly_passed_with_tolerance(
    tmp_path: Path, base: dict[str, torch.Tensor]
) -> None:
    changed = {k: v.clone() for k, v in base.items()}
    changed["w"][3, 5] = 1.0
    base = {**base, "w": base["w"].clone()}
    base["w"][3, 5] = 1.0 + 1e-7  # representable: float32 spacing at 1.0 is 1.19e-7
    a, b = _save(tmp_path / "a.pt", base), _save(tmp_path / "b.pt", changed)
    delta = float(base["w"][3, 5].double() - changed["w"][3, 5].double())
    assert delta != 0

    code, doc = _json(a, b, "--atol", "0", "--rtol", "0")
    assert code == 1
    w = _by_name(doc)["w"]
    assert w["status"] == "values_changed"
    assert (w["differing"], w["index"]) == (1, [3, 5])
    assert w["max_abs_diff"] == pytest.approx(abs(delta), rel=1e-12)
    assert w["max_rel_diff"] == pytest.approx(abs(delta), rel=1e-12)  # |b| == 1
    assert (w["a_value"], w["b_value"]) == (float(base["w"][3, 5]), 1.0)
    assert doc["counts"] == {
        "only_in_a": 0,
        "only_in_b": 0,
        "dtype_changed": 0,
        "shape_changed": 0,
        "values_changed": 1,
        "equal": 2,
        "tied_alias": 0,
    }
    assert doc["same"] is False

    code, doc = _json(a, b, "--atol", "1e-6")
    assert code == 0
    w = _by_name(doc)["w"]
    # equal within tolerance, but the distance is still reported
    assert (w["status"], w["differing"], w["index"]) == ("equal", 0, [3, 5])
    assert w["max_abs_diff"] == pytest.approx(abs(delta), rel=1e-12)
    assert run_cli("diff", a, b).code == 0  # default rtol 1e-5 covers it too


def test_exact_table_text_for_one_change(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.pt", {"x": torch.tensor([1.0, 2.0, 3.0]), "n": torch.tensor([1, 2])})
    b = _save(tmp_path / "b.pt", {"x": torch.tensor([1.0, 2.5, 3.0]), "n": torch.tensor([1, 2]), "extra": 7})
    result = run_cli("diff", a, b)
    assert result.code == 1
    assert result.out == (
        "status          name    A            B              differing    max abs diff    max rel diff  at\n"
        "--------------  ------  -----------  -----------  -----------  --------------  --------------  ----\n"
        "values changed  x       float32 [3]  float32 [3]            1             0.5             0.2  [1]\n"
        "only in B       extra                7\n"
        "\n"
        "0 only in A, 1 only in B, 0 dtype changed, 0 shape changed, 1 values changed, 1 equal\n"
    )


def test_extra_missing_shape_and_dtype_changes(tmp_path: Path) -> None:
    a = _save(
        tmp_path / "a.pt",
        {"same": torch.ones(2), "gone": torch.ones(3), "grown": torch.ones(4), "cast": torch.ones(5), "epoch": 3},
    )
    b = _save(
        tmp_path / "b.pt",
        {
            "same": torch.ones(2),
            "grown": torch.ones(4, 2),
            "cast": torch.ones(5, dtype=torch.float16),
            "new": torch.zeros(1),
            "epoch": 4,
        },
    )
    code, doc = _json(a, b)
    assert code == 1
    status = {e["name"]: e["status"] for e in doc["entries"]}
    assert status == {
        "same": "equal",
        "gone": "only_in_a",
        "grown": "shape_changed",
        "cast": "dtype_changed",
        "epoch": "values_changed",
        "new": "only_in_b",
    }
    assert [e["name"] for e in doc["entries"]] == ["same", "gone", "grown", "cast", "epoch", "new"]
    entries = _by_name(doc)
    assert entries["cast"]["a"] == {"kind": "tensor", "dtype": "float32", "shape": [5]}
    assert entries["cast"]["b"] == {"kind": "tensor", "dtype": "float16", "shape": [5]}
    assert entries["epoch"]["b"] == {"kind": "value", "type": "int", "value": 4}
    assert entries["gone"]["b"] is None and entries["new"]["a"] is None
    assert entries["grown"]["differing"] is None  # values of different shapes are not compared
    assert sum(doc["counts"].values()) == 6


def test_pt_against_safetensors_of_same_weights_is_equal() -> None:
    for name in ("mlp", "rgnet", "tied"):
        code, doc = _json(SAMPLES / f"{name}.pt", SAMPLES / f"{name}.safetensors", "--atol", "0", "--rtol", "0")
        assert code == 0, name
        assert doc["a"]["format"] == "torch-zip" and doc["b"]["format"] == "safetensors"
        assert all(e["status"] == "equal" and e["max_abs_diff"] == 0 for e in doc["entries"])


def test_dataparallel_prefix(tmp_path: Path, base: dict[str, torch.Tensor]) -> None:
    ddp = _save(tmp_path / "ddp.pt", {f"module.{k}": v for k, v in base.items()})
    plain = _save(tmp_path / "plain.pt", base)
    assert run_cli("diff", ddp, plain, "-q").code == 1
    code, doc = _json(ddp, plain, "--strip-prefix", "module.")
    assert code == 0
    assert _by_name(doc)["w"]["a_name"] == "module.w" and _by_name(doc)["w"]["b_name"] == "w"
    assert run_cli("diff", ddp, plain, "--rename-a", "module=", "-q").code == 0
    assert run_cli("diff", plain, ddp, "--rename-a", "=module", "-q").code == 0
    assert run_cli("diff", ddp, plain, "--rename-b", "module=", "-q").code == 1  # wrong side


def test_nan_same_position_equal_by_default_different_position_differs(tmp_path: Path) -> None:
    nan = math.nan
    a = _save(tmp_path / "a.pt", {"x": torch.tensor([1.0, nan, 3.0, -0.0])})
    same = _save(tmp_path / "same.pt", {"x": torch.tensor([1.0, nan, 3.0, 0.0])})
    moved = _save(tmp_path / "moved.pt", {"x": torch.tensor([nan, 2.0, 3.0, 0.0])})
    # bytes differ (sign of zero), values are equal
    assert run_cli("diff", a, same, "--atol", "0", "--rtol", "0").code == 0
    code, doc = _json(a, same, "--no-equal-nan")
    x = _by_name(doc)["x"]
    assert (code, x["differing"], x["index"], x["max_abs_diff"]) == (1, 1, [1], "nan")
    code, doc = _json(a, moved)
    x = _by_name(doc)["x"]
    assert (code, x["status"], x["differing"], x["index"]) == (1, "values_changed", 2, [0])
    assert x["max_abs_diff"] == "nan" and x["a_value"] == 1.0 and x["b_value"] == "nan"


def test_nan_payloads_differ_in_bytes_but_are_equal(tmp_path: Path) -> None:
    x = torch.tensor([1.0, math.nan])
    y = x.clone()
    y.view(torch.int32)[1] = 0x7FC00001  # another quiet NaN
    a, b = _save(tmp_path / "a.pt", {"x": x}), _save(tmp_path / "b.pt", {"x": y})
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "b.pt").read_bytes()
    assert run_cli("diff", a, b, "--atol", "0", "--rtol", "0").code == 0


def test_bf16_and_int_tensors(tmp_path: Path) -> None:
    torch.manual_seed(1)
    w = torch.randn(64, 3).to(torch.bfloat16)
    w2 = w.clone()
    w2[10, 1] = w2[10, 1] * 2 + 1
    big = torch.tensor([2**62, 5, -7], dtype=torch.int64)
    big2 = torch.tensor([2**62 + 1, 5, -9], dtype=torch.int64)
    a = _save(tmp_path / "a.pt", {"w": w, "i": big, "u": torch.tensor([1, 2], dtype=torch.uint8)})
    b = tmp_path / "b.safetensors"
    save_file({"w": w2, "i": big2, "u": torch.tensor([1, 2], dtype=torch.uint8)}, b)
    code, doc = _json(a, b)  # default tolerance: ints still compare exactly
    entries = _by_name(doc)
    assert code == 1
    assert entries["w"]["differing"] == 1 and entries["w"]["index"] == [10, 1]
    expected = (w2[10, 1].double() - w[10, 1].double()).abs().item()
    assert entries["w"]["max_abs_diff"] == expected
    assert entries["i"]["differing"] == 2
    assert entries["i"]["max_abs_diff"] == 2 and entries["i"]["index"] == [2]
    assert entries["u"]["status"] == "equal"


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int8, torch.complex64]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("view", ["contiguous", "transposed"])
def test_statistics_match_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, view: str) -> None:
    """Small chunks force many chunk boundaries; transposed views take the decode path."""
    monkeypatch.setattr(compare, "RAW_CHUNK_BYTES", 64)
    monkeypatch.setattr(compare, "DECODE_ELEMENTS", 7)
    torch.manual_seed(2)
    a = (torch.randn(23, 9, dtype=torch.float64) * 50).to(dtype)
    b = a.clone()
    flat = b.view(-1)
    for i in (0, 17, 100, 206):
        flat[i] = flat[i] + (3 if dtype.is_floating_point or dtype.is_complex else 1) * (i + 1) / 7
    b[5, 5] = a[5, 5] + (1e-4 * a[5, 5] if dtype.is_floating_point else 0)
    if view == "transposed":
        a, b = a.t(), b.t()
    torch.save({"t": a}, tmp_path / "a.pt")
    torch.save({"t": b}, tmp_path / "b.pt")
    ra = open_checkpoint(tmp_path / "a.pt").tensors["t"]
    rb = open_checkpoint(tmp_path / "b.pt").tensors["t"]
    tol = Tolerance(atol=1e-3, rtol=1e-3)
    stats = compare_tensors(ra, rb, tol)

    wide = torch.complex128 if dtype.is_complex else torch.float64
    da, db = a.to(wide), b.to(wide)
    diff = (da - db).abs()
    if dtype.is_floating_point or dtype.is_complex:
        close = torch.isclose(da, db, rtol=tol.rtol, atol=tol.atol, equal_nan=True)
    else:
        close = a == b
    assert stats.differing == int((~close).sum())
    assert stats.max_abs == pytest.approx(diff.max().item(), rel=1e-12)
    rel = torch.where(diff == 0, torch.zeros_like(diff), diff / db.abs())
    assert stats.max_rel == pytest.approx(rel.max().item(), rel=1e-12)
    at = tuple(stats.index or [])
    assert diff[at].item() == pytest.approx(diff.max().item(), rel=1e-12)


def test_bytes_path_decodes_only_differing_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare, "RAW_CHUNK_BYTES", 4096)
    monkeypatch.setattr(compare, "DECODE_ELEMENTS", 128)
    monkeypatch.setattr(compare, "FEW_ELEMENTS", 0)  # the numpy path (test_differing.py covers the other)
    a = torch.arange(100_000, dtype=torch.float32)
    b = a.clone()
    b[54_321] = -1
    b[99_999] = 99_990  # in the last, shorter chunk (relative difference 9e-5)
    torch.save({"t": a}, tmp_path / "a.pt")
    save_file({"t": b}, tmp_path / "b.safetensors")
    decoded: list[int] = []
    original = compare.decode_bytes

    def counting(ref: object, raw: bytes) -> object:
        decoded.append(len(raw))
        return original(ref, raw)  # type: ignore[arg-type]

    monkeypatch.setattr(compare, "decode_bytes", counting)
    rows = diff_rows(open_checkpoint(tmp_path / "a.pt"), open_checkpoint(tmp_path / "b.safetensors"))
    assert rows[0].status is Status.VALUES
    assert rows[0].stats is not None and rows[0].stats.index == [54_321] and rows[0].stats.max_abs == 54_322
    assert rows[0].stats.differing == 2
    assert decoded == [512, 512, 128, 128]  # one slice per side and difference


def test_structure_reads_no_tensor_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _save(tmp_path / "a.pt", {"w": torch.zeros(1000), "v": torch.ones(3), "e": 1})
    b = _save(tmp_path / "b.pt", {"w": torch.ones(1000), "v": torch.ones(4), "e": 2})
    assert run_cli("diff", a, b, "-q").code == 1

    refuse_data_reads(monkeypatch)
    code, doc = _json(a, b, "--structure")
    assert code == 1 and doc["structure_only"] is True
    assert {e["name"]: e["status"] for e in doc["entries"]} == {"w": "equal", "v": "shape_changed", "e": "equal"}
    trapped = run_cli("diff", a, b)  # the trap is live (an unexpected exception: exit 3)
    assert trapped.code == 3 and "tensor data was read" in trapped.err


def test_structure_on_corrupt_data(tmp_path: Path) -> None:
    """Overwrite a tensor's bytes in place: --structure cannot notice, a value diff does."""
    save_file({"w": torch.zeros(256)}, tmp_path / "a.safetensors")
    data = bytearray((tmp_path / "a.safetensors").read_bytes())
    data[-8:] = b"\xff" * 8  # two NaNs
    (tmp_path / "b.safetensors").write_bytes(bytes(data))
    assert run_cli("diff", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--structure").code == 0
    code, doc = _json(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert code == 1 and _by_name(doc)["w"]["differing"] == 2


def test_selectors_restrict_names(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.pt", {"enc.w": torch.ones(2), "dec.w": torch.ones(2)})
    b = _save(tmp_path / "b.pt", {"enc.w": torch.ones(2), "dec.w": torch.zeros(2)})
    assert run_cli("diff", a, b, "enc", "-q").code == 0
    assert run_cli("diff", a, b, "*.w", "-q").code == 1
    code, doc = _json(a, b, "enc")
    assert code == 0 and [e["name"] for e in doc["entries"]] == ["enc.w"]
    result = run_cli("diff", a, b, "nothing")
    assert result.code == 2 and result.err == "paraminspect: error: no name in either file matches 'nothing'\n"


def test_rename_collision_is_a_usage_error(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.pt", {"module.w": torch.ones(1), "w": torch.ones(1)})
    result = run_cli("diff", a, a, "--strip-prefix", "module")
    assert result.code == 2
    assert result.err == f"paraminspect: error: {a}: names 'module.w' and 'w' both map to 'w'\n"


def test_bad_input_is_exit_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("diff", SAMPLES / "mlp.pt", tmp_path / "missing.pt")
    assert (result.code, result.out) == (2, "")
    assert result.err == f"paraminspect: error: {tmp_path / 'missing.pt'}: no such file\n"
    torch.save({"w": torch.ones(100_000)}, tmp_path / "a.pt")
    torch.save({"w": torch.zeros(100_000)}, tmp_path / "b.pt")
    a = open_checkpoint(tmp_path / "a.pt")  # opened fine, then the data vanishes
    with open(tmp_path / "a.pt", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(Exception, match="truncated"):
        diff_rows(a, open_checkpoint(tmp_path / "b.pt"))


def test_non_tensor_leaves_and_placeholders() -> None:
    code, doc = _json(SAMPLES / "trainer_checkpoint.pt", SAMPLES / "trainer_checkpoint.pt", "--root", "")
    assert code == 0
    entries = _by_name(doc)
    assert entries["args"]["a"] == {
        "kind": "value",
        "type": "argparse.Namespace",
        "value": "<object argparse.Namespace>",
    }
    assert entries["optimizer.param_groups.0.betas"]["status"] == "equal"


def test_installed_script_and_no_torch(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(3)}, tmp_path / "a.pt")
    torch.save({"w": torch.tensor([1.0, 1.0, 2.0])}, tmp_path / "b.pt")
    proc = run_script("diff", tmp_path / "a.pt", tmp_path / "b.pt", "-f", "json")
    assert proc.returncode == 1 and proc.stderr == ""
    assert json.loads(proc.stdout)["counts"]["values_changed"] == 1
    proc = run_script("diff", tmp_path / "a.pt", tmp_path / "a.pt", "-q")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    (tmp_path / "spec.json").write_text(run_cli("shapes", tmp_path / "a.pt", "-f", "json").out)
    code = (
        "import sys; from paraminspect.cli import main; "
        f"rc = main(['diff', {str(tmp_path / 'a.pt')!r}, {str(tmp_path / 'b.pt')!r}, '-q']); "
        f"assert main(['check', {str(tmp_path / 'b.pt')!r}, '--expect', {str(tmp_path / 'spec.json')!r}, '-q']) == 0; "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    import subprocess
    import sys

    proc2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc2.returncode == 1, proc2.stderr


def test_patterns_may_name_original_names() -> None:
    """Selecting the trainer checkpoint's 'model' subtree, compared under its mapped names."""
    trainer, mlp = SAMPLES / "trainer_checkpoint.pt", SAMPLES / "mlp.pt"
    code, doc = _json(trainer, mlp, "model", "--rename-a", "model=", "--root", "")
    assert code == 1  # different seeds
    assert [(e["name"], e["a_name"], e["status"]) for e in doc["entries"]] == [
        ("0.weight", "model.0.weight", "values_changed"),
        ("0.bias", "model.0.bias", "values_changed"),
        ("2.weight", "model.2.weight", "values_changed"),
        ("2.bias", "model.2.bias", "values_changed"),
    ]
    code, doc = _json(trainer, mlp, "model", "--rename-a", "model=", "--structure", "--root", "")
    assert code == 0 and doc["counts"]["equal"] == 4


def test_json_schema_is_fixed() -> None:
    code, doc = _json(SAMPLES / "mlp.pt", SAMPLES / "tied.pt", "--atol", "0", "--rtol", "0")
    assert code == 1
    assert list(doc) == ["a", "b", "structure_only", "tolerance", "same", "counts", "entries", "metadata"]
    assert doc["a"] == {"file": str(SAMPLES / "mlp.pt"), "format": "torch-zip", "root": ""}
    assert list(doc["metadata"]) == ["compared", "reason", "same", "counts", "entries"]  # issue 13
    assert doc["tolerance"] == {"atol": 0.0, "rtol": 0.0, "equal_nan": True}
    keys = ["name", "status", "a_name", "b_name", "a", "b", "differing", "max_abs_diff", "max_rel_diff", "index"]
    keys += ["a_value", "b_value", "tied_to"]
    keys += ["rel_l2", "cosine", "nmse", "rel_mean_abs", "frac_differing"]  # issue 16: appended, the rest unchanged
    for entry in doc["entries"]:
        assert list(entry) == keys
        assert entry["status"] in doc["counts"]
        for side in ("a", "b"):
            assert entry[side] is None or entry[side]["kind"] in ("tensor", "value")
    statuses = [e["status"] for e in doc["entries"]]
    assert {s: statuses.count(s) for s in doc["counts"]} == doc["counts"]


@pytest.mark.parametrize("equal_nan", [True, False])
def test_special_values_follow_torch_isclose(tmp_path: Path, equal_nan: bool) -> None:
    inf, nan = math.inf, math.nan
    pairs = [(inf, inf), (inf, -inf), (1.0, inf), (inf, 1.0), (-inf, -inf), (nan, nan), (nan, 1.0), (1.0, nan)]
    pairs += [(0.0, 0.0), (-0.0, 0.0), (1.0, 1.0 + 1e-9), (0.0, 1e-9), (1e-3, 2e-3), (5.0, -5.0)]
    a = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    b = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    torch.save({"t": a}, tmp_path / "a.pt")
    torch.save({"t": b}, tmp_path / "b.pt")
    stats = compare_tensors(
        open_checkpoint(tmp_path / "a.pt").tensors["t"],
        open_checkpoint(tmp_path / "b.pt").tensors["t"],
        Tolerance(equal_nan=equal_nan),
    )
    close = torch.isclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=equal_nan)
    assert stats.differing == int((~close).sum())
    assert stats.max_abs != stats.max_abs  # NaN against a number: the largest difference is NaN
    assert stats.index == ([6] if equal_nan else [5])  # the first such position


def test_bool_and_float8_tensors(tmp_path: Path) -> None:
    flags = torch.tensor([True, False, True, True])
    fp8 = torch.tensor([0.5, 1.0, -2.0]).to(torch.float8_e4m3fn)
    torch.save({"m": flags, "q": fp8}, tmp_path / "a.pt")
    save_file({"m": torch.tensor([True, True, True, False]), "q": fp8.clone()}, tmp_path / "b.safetensors")
    code, doc = _json(tmp_path / "a.pt", tmp_path / "b.safetensors")
    entries = _by_name(doc)
    assert code == 1
    assert (entries["m"]["differing"], entries["m"]["max_abs_diff"], entries["m"]["index"]) == (2, 1, [1])
    assert (entries["m"]["a_value"], entries["m"]["b_value"]) == (False, True)
    assert entries["q"]["status"] == "equal"


def test_state_dict_root_is_chosen_per_side() -> None:
    trainer, mlp = SAMPLES / "trainer_checkpoint.pt", SAMPLES / "mlp.pt"
    result = run_cli("diff", trainer, mlp, "--structure")
    assert result.code == 0  # A's 'model' subtree against B's whole file
    assert result.err.startswith(f"paraminspect: note: {trainer}: using the state dict under 'model'")
    assert run_cli("diff", trainer, mlp, "--structure", "-q") == Result(0, "", "")
    assert run_cli("diff", trainer, mlp, "--structure", "-q", "--root", "").code == 1
    assert run_cli("diff", trainer, mlp, "--structure", "-q", "--root-a", "model").code == 0
    doc = json.loads(run_cli("diff", trainer, mlp, "-f", "json", "--structure").out)
    assert doc["a"]["root"] == "model" and doc["b"]["root"] == ""
    first = doc["entries"][0]
    assert (first["name"], first["a_name"], first["b_name"]) == ("0.weight", "model.0.weight", "0.weight")
    assert run_cli("diff", trainer, mlp, "model.0.weight", "-q").code == 1  # selected by A's own full name
    result = run_cli("diff", trainer, mlp, "--root-b", "model")
    assert result.code == 2 and result.err.count("\n") == 1


def test_dcp_tensors_in_pieces_against_a_pt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sharded pieces (assembled chunk by chunk) against contiguous tensors: the decode path."""
    from tests.data.make_dcp_2ranks import state

    monkeypatch.setattr(compare, "DECODE_ELEMENTS", 4)  # chunk boundaries inside rows and pieces
    model = state()["model"]
    assert isinstance(model, dict)
    torch.save(model, tmp_path / "same.pt")
    changed = {k: v.clone() for k, v in model.items()}
    changed["proj.weight"][3, 6] = 100
    torch.save(changed, tmp_path / "changed.pt")
    dcp = SAMPLES.parent / "tests" / "data" / "dcp_2ranks"
    code, doc = _json(dcp, tmp_path / "same.pt", "--atol", "0", "--rtol", "0", "--root-a", "model")
    assert code == 0 and doc["counts"]["equal"] == 4
    code, doc = _json(dcp, tmp_path / "changed.pt", "--atol", "0", "--rtol", "0", "--root-a", "model")
    proj = _by_name(doc)["proj.weight"]
    assert (code, proj["differing"], proj["index"], proj["a_value"], proj["b_value"]) == (1, 1, [3, 6], 27.0, 100.0)


def test_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    evil = "w\x1b[31m\nred"
    a = _save(tmp_path / "a.pt", {evil: torch.ones(1), "v": "x\x07"})
    b = _save(tmp_path / "b.pt", {})
    result = run_cli("diff", a, b)
    assert result.code == 1 and "\x1b" not in result.out and "\x07" not in result.out
    assert "w\\x1b[31m\\nred" in result.out
    code, doc = _json(a, b)
    assert code == 1 and doc["entries"][0]["name"] == evil  # JSON carries the exact name


def refuse_data_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of reading tensor data fail the test."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("tensor data was read")

    for module, names in (
        (tensors, ("iter_raw_chunks", "iter_chunks", "read_array", "decode_bytes")),
        (compare, ("iter_raw_chunks", "iter_chunks", "decode_bytes")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(compare.Comparer, "compare", refuse)
