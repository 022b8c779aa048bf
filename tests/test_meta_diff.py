"""``diff`` compares the files' own metadata too (compare/metadiff.py): GGUF key/values
against what gguf-py's GGUFReader reads from both files, safetensors ``__metadata__``
against ``safe_open(...).metadata()``; a difference exits 1 unless ``--no-metadata``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests.conftest import run_cli


def _gguf(path: Path, *, variant: bool) -> None:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("model")
    writer.add_context_length(4096)
    tokens = [f"tok{i}" for i in range(2000)]
    if variant:
        tokens[1234] = "changed"
        writer.add_int32("test.count", 7)  # UINT32 in A: its type changed
        writer.add_string("test.only_b", "b")
    else:
        writer.add_uint32("test.count", 7)
        writer.add_string("test.only_a", "a")
    writer.add_token_list(tokens)
    writer.add_string("general.description", "first" if not variant else "second")
    writer.add_tensor("w", np.arange(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _reader_fields(path: Path) -> dict[str, tuple[str, Any]]:
    out = {}
    for key, field in gguf.GGUFReader(path).fields.items():
        if key.startswith("GGUF."):
            continue
        types = [t.name for t in field.types]
        kind = f"[{types[1]}]" if types[0] == "ARRAY" else types[0]
        out[key] = (kind, field.contents())
    return out


def _expected(a: dict[str, tuple[str, Any]], b: dict[str, tuple[str, Any]]) -> dict[str, str]:
    statuses = {}
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in b:
            statuses[key] = "only_in_a"
        elif key not in a:
            statuses[key] = "only_in_b"
        elif a[key][0] != b[key][0]:
            statuses[key] = "type_changed"
        elif a[key][1] != b[key][1]:
            statuses[key] = "value_changed"
    return statuses


def test_gguf_metadata_differences_match_gguf_reader(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    _gguf(a, variant=False)
    _gguf(b, variant=True)
    want = _expected(_reader_fields(a), _reader_fields(b))
    assert want == {
        "test.count": "type_changed",
        "test.only_a": "only_in_a",
        "tokenizer.ggml.tokens": "value_changed",
        "general.description": "value_changed",
        "test.only_b": "only_in_b",
    }
    result = run_cli("diff", a, b, "-f", "json")
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    meta = doc["metadata"]
    assert (meta["compared"], meta["same"], doc["same"]) == (True, False, False)
    assert doc["counts"]["equal"] == 1  # the tensor is equal: only the metadata differs
    assert {e["key"]: e["status"] for e in meta["entries"]} == want
    by_key = {e["key"]: e for e in meta["entries"]}
    assert by_key["test.count"]["a"] == {"type": "UINT32", "value": 7}
    assert by_key["test.count"]["b"] == {"type": "INT32", "value": 7}
    assert by_key["test.only_a"]["b"] is None
    assert by_key["tokenizer.ggml.tokens"]["b"]["value"] == _reader_fields(b)["tokenizer.ggml.tokens"][1]
    counts = meta["counts"]
    assert counts == {"only_in_a": 1, "only_in_b": 1, "type_changed": 1, "value_changed": 2, "equal": 3}
    table = run_cli("diff", a, b)
    assert table.code == 1
    lines = table.out.splitlines()
    assert any(line.startswith("metadata type changed  test.count") and "UINT32 7" in line for line in lines)
    assert lines[-1].endswith("1 equal, 5 metadata changed")
    tensors_only = run_cli("diff", a, b, "--no-metadata", "-f", "json")
    assert tensors_only.code == 0
    assert json.loads(tensors_only.out)["metadata"]["compared"] is False
    same = run_cli("diff", a, a)
    assert same.code == 0 and "metadata" not in same.out


def _official_metadata(path: Path) -> dict[str, str] | None:
    with safe_open(str(path), framework="numpy") as f:
        return f.metadata()


@pytest.mark.parametrize(
    ("meta_a", "meta_b", "code"),
    [
        ({"format": "pt", "note": "x"}, {"format": "pt", "note": "x"}, 0),
        ({"format": "pt", "note": "x"}, {"format": "pt", "note": "y"}, 1),
        ({"format": "pt"}, {"format": "pt", "ss_network_dim": "16"}, 1),
    ],
)
def test_safetensors_metadata_is_compared_too(
    tmp_path: Path, meta_a: dict[str, str], meta_b: dict[str, str], code: int
) -> None:
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(tensors, str(a), metadata=meta_a)
    save_file(tensors, str(b), metadata=meta_b)
    ref_a, ref_b = _official_metadata(a) or {}, _official_metadata(b) or {}
    result = run_cli("diff", a, b, "-f", "json")
    assert result.code == code, result.err
    doc = json.loads(result.out)["metadata"]
    changed = {k for k in ref_a.keys() | ref_b.keys() if ref_a.get(k) != ref_b.get(k)}
    assert {e["key"] for e in doc["entries"]} == changed
    assert doc["same"] is (not changed)


def test_metadata_of_different_formats_is_not_compared(tmp_path: Path) -> None:
    tensors = {"w": torch.arange(6.0)}
    st, pt = tmp_path / "a.safetensors", tmp_path / "a.pt"
    save_file(tensors, str(st), metadata={"format": "pt"})
    torch.save(tensors, pt)
    result = run_cli("diff", st, pt, "-f", "json")
    assert result.code == 0, result.err
    meta = json.loads(result.out)["metadata"]
    assert meta == {
        "compared": False,
        "reason": "the formats differ (safetensors, torch-zip)",
        "same": None,
        "counts": None,
        "entries": [],
    }
