"""Patterns aimed at torch's own weights_only loader, found by ``scan`` in hand-built pickles:
SETITEM(S) on what is not a dict (PI004), a storage whose declared size is not its record's
(PI005; both refused by torch 2.10+, the fix of CVE-2026-24747), a pickle without PROTO (PI006).
torch 2.13 is the oracle: it refuses the first two, and reads the third."""

from __future__ import annotations

import collections
import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from paraminspect.formats.pickle.scanner import scan_pickle
from tests.conftest import run_cli

TENSOR = b"ctorch._utils\n_rebuild_tensor_v2\n"
OD = b"ccollections\nOrderedDict\n)R"


def _persid(numel: int) -> bytes:
    return b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ" + struct.pack(
        "<i", numel
    )


def _tensor(numel: int, size: int) -> bytes:
    """_rebuild_tensor_v2(storage('0', numel floats), 0, (size,), (1,), False, OrderedDict())"""
    return TENSOR + b"(" + _persid(numel) + b"tQK\x00J" + struct.pack("<i", size) + b"\x85K\x01\x85\x89" + OD + b"tR"


def _zip(path: Path, pkl: bytes, floats: int = 4) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", struct.pack(f"<{floats}f", *range(floats)))
        z.writestr("archive/version", "3\n")
    return path


def _state(value: bytes) -> bytes:
    return b"\x80\x02}X\x01\x00\x00\x00w" + value + b"s."


def _patterns(path: Path) -> tuple[int, list[dict[str, object]], dict[str, object]]:
    result = run_cli("scan", path, "-f", "json", "--explain")
    doc = json.loads(result.out)
    refs = [r for r in doc["files"][0]["references"] if r["kind"] == "pattern"]
    sarif = json.loads(run_cli("scan", path, "-f", "sarif").out)["runs"][0]
    return result.code, refs, sarif


SETITEM_CASES = {
    # SETITEMS into a tensor torch just rebuilt: torch < 2.10 called its __setitem__.
    "tensor": (_state(_tensor(4, 4) + b"(K\x00K\x01u"), "SETITEMS on the result of torch._utils._rebuild_tensor_v2"),
    "list": (b"\x80\x02]K\x00K\x01s.", "SETITEM on a list"),
    "tuple": (b"\x80\x02K\x01\x85K\x00K\x01s.", "SETITEM on a tuple"),
    "torch.Size": (b"\x80\x02ctorch\nSize\nK\x00K\x01s.", "SETITEM on the global torch.Size"),
}


@pytest.mark.parametrize("case", sorted(SETITEM_CASES))
def test_setitem_on_what_is_not_a_dict_is_a_finding(tmp_path: Path, case: str) -> None:
    pkl, name = SETITEM_CASES[case]
    path = _zip(tmp_path / "f.pt", pkl)
    with pytest.raises(pickle.UnpicklingError, match="Can only SETITEM"):
        torch.load(path, weights_only=True)  # torch 2.13 refuses what older torch did
    code, refs, sarif = _patterns(path)
    assert code == 1
    (ref,) = refs
    assert ref["name"] == name and ref["status"] == "unsafe" and ref["rule"] == "PI004"
    assert pkl[ref["positions"][0] : ref["positions"][0] + 1] in (b"s", b"u")  # the opcode's own byte
    assert "CVE-2026-24747" in ref["explanation"]["load"] and "torch 2.10" in ref["explanation"]["load"]
    (result,) = [r for r in sarif["results"] if r["ruleId"] == "PI004"]
    assert result["level"] == "error" and name in result["message"]["text"]


def test_dicts_ordered_dicts_counters_and_dict_subclasses_are_not_findings(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    obj = {
        "sd": torch.nn.Linear(2, 2).state_dict(),
        "count": collections.Counter(a=2),
        "plain": {"a": 1},
        "sub": collections.defaultdict(int, a=1),  # an unsafe global (its own finding), not a pattern
    }
    torch.save(obj, path)
    code, refs, _ = _patterns(path)
    assert refs == [] and code == 1  # defaultdict is outside the allow-list
    torch.save({k: v for k, v in obj.items() if k != "sub"}, path)
    assert _patterns(path)[:2] == (0, [])


@pytest.mark.parametrize("declared, floats", [(1 << 20, 4), (2, 4), (4, 4)])
def test_a_storage_declaring_another_size_than_its_record_is_a_finding(
    tmp_path: Path, declared: int, floats: int
) -> None:
    path = _zip(tmp_path / "s.pt", _state(_tensor(declared, min(declared, floats))), floats)
    if declared == floats:
        torch.load(path, weights_only=True)
        assert _patterns(path)[:2] == (0, [])
        return
    with pytest.raises(RuntimeError, match="does not match expected size"):
        torch.load(path, weights_only=True)
    code, refs, sarif = _patterns(path)
    assert code == 1
    (ref,) = refs
    assert ref["rule"] == "PI005" and ref["opcodes"] == ["BINPERSID"]
    assert ref["name"] == f"storage '0' declares {declared * 4:,} bytes; its record data/0 holds {floats * 4}"
    (result,) = [r for r in sarif["results"] if r["ruleId"] == "PI005"]
    assert result["level"] == "error"
    assert "CVE-2026-24747" in ref["explanation"]["load"]  # type: ignore[index]


@pytest.mark.parametrize("protocol", [0, 1])
def test_a_pickle_without_proto_is_a_finding(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "p.pt"
    torch.save({"w": torch.ones(3)}, path, pickle_protocol=protocol)
    with zipfile.ZipFile(path) as z:
        assert not z.read("p/data.pkl").startswith(b"\x80")
    if protocol == 1:  # torch reads its own protocol-1 file (protocol 0 writes storage ids it cannot read)
        assert torch.equal(torch.load(path, weights_only=False)["w"], torch.ones(3))
    code, refs, sarif = _patterns(path)
    assert code == 1
    (ref,) = refs
    assert ref["rule"] == "PI006" and ref["positions"] == [0]
    assert ref["name"] == "protocol 0/1 pickle (no PROTO opcode in front)"
    (result,) = [r for r in sarif["results"] if r["ruleId"] == "PI006"]
    assert result["level"] == "warning"


def test_torch_save_default_protocol_has_no_pattern() -> None:
    for protocol in (2, 3, 4, 5):
        refs, _ = scan_pickle(pickle.dumps({"a": [1, 2], "b": (3,)}, protocol=protocol))
        assert [r for r in refs if r.kind == "pattern"] == []
