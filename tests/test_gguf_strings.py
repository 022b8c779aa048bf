"""GGUF string arrays read lazily (formats/ggufstrings.py): every length and edge the
block scan meets, held to gguf-py's GGUFReader; undecodable text refused only when shown."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from paraminspect.formats.gguf import _Cursor
from paraminspect.formats.ggufstrings import BLOCK, SHORT
from paraminspect.formats.opening import open_checkpoint
from tests.conftest import run_cli, run_script
from tests.hostile_gguf import ARRAY, STRING, U32, gguf_bytes, gstr, kv, u32

# Lengths on every side of the patterns' edges: empty, 1, SHORT, SHORT + 1, 255, 256, long;
# multi-byte UTF-8, a NUL inside a string, and runs around the block size.
EDGES = ["", "a", "x" * SHORT, "y" * (SHORT + 1), "z" * 255, "w" * 256, "\u0120" * 700, "a\x00b"]
EDGES.append("\u00e9\u4e2d\U0001f600")


def vocab(n: int, *, edges: bool = True) -> list[str]:
    words = [f"\u0120tok{i}" if i % 3 else f"t{i}" for i in range(n)]
    if edges:
        for k, word in enumerate(EDGES):
            words[(k * 7919) % n] = word
    return words


def write(path: Path, arrays: dict[str, list[str]], *, big: bool = False) -> None:
    endian = gguf.GGUFEndian.BIG if big else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(path, "llama", endianess=endian)
    for key, items in arrays.items():
        writer.add_array(key, items)
        writer.add_uint32(key + ".after", 7)  # a short key right after: the scan must stop at the count
    writer.add_tensor("w", np.arange(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def reference(path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


ARRAYS = {
    # around the block size and its multiples; a vocabulary past the 1 MiB read buffer
    f"test.n{n}": vocab(n, edges=n > 20)
    for n in (0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 3 * BLOCK + 5)
} | {"tokenizer.ggml.tokens": vocab(8000), "test.plain": [f"m{i} n{i}" for i in range(3000)]}
# No block of short elements anywhere (every third long, every third empty): all stepped one by one.
ARRAYS["test.mixed"] = [("q" * 200, "", f"m{i}")[i % 3] for i in range(3 * BLOCK + 7)]


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
def test_string_arrays_match_gguf_reader(tmp_path: Path, big: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.gguf"
    write(path, ARRAYS, big=big)
    want = reference(path)
    # Read 1 KiB at a time: arrays cross hundreds of buffer refills (a real vocabulary, 1 MiB reads, a few).
    monkeypatch.setattr(_Cursor, "CHUNK", 1024)
    meta = open_checkpoint(path).file_metadata
    assert list(meta) == list(want)
    for key, value in want.items():
        kind, got = meta[key]
        if key in ARRAYS:
            assert kind == "[STRING]"
            assert len(got) == len(ARRAYS[key]) == len(value)  # type: ignore[arg-type]
            assert got[:5] == value[:5], key  # type: ignore[index]
            assert list(got) == value == ARRAYS[key], key
        else:
            assert got == value, key


def test_meta_json_is_complete_and_the_table_shows_first_items(tmp_path: Path) -> None:
    path = tmp_path / "v.gguf"
    # (no NUL here: CSV escapes control characters, as it does in names)
    write(path, {"tokenizer.ggml.tokens": [w.replace("\x00", "") for w in vocab(4000)]})
    want = reference(path)["tokenizer.ggml.tokens"]
    doc = json.loads(run_cli("meta", path, "-f", "json").out)
    assert doc["metadata"]["tokenizer.ggml.tokens"] == want
    assert doc["types"]["tokenizer.ggml.tokens"] == "[STRING]"
    row = next(line for line in run_cli("meta", path).out.splitlines() if line.startswith("tokenizer.ggml.tokens"))
    shown = ", ".join(repr(w) for w in want[:5])  # type: ignore[index]
    assert row.split(None, 2)[2] == f"[STRING] \u00d7 4000: {shown}, \u2026"
    rows = list(csv.reader(io.StringIO(run_cli("meta", path, "tokenizer.ggml.tokens", "-f", "csv").out)))
    assert rows[1][:2] == ["tokenizer.ggml.tokens", "[STRING]"]
    assert json.loads(rows[1][2]) == want


def _bad_utf8_file(path: Path, at: int, *, long_items: bool) -> None:
    items = [gstr(f"t{i}") for i in range(2000)]
    if long_items:
        items[1500] = gstr("q" * 300)  # the slow path: not every length is short
    items[at] = gstr(b"ok\xff")
    raw = u32(STRING) + struct.pack("<Q", len(items)) + b"".join(items)
    path.write_bytes(gguf_bytes([kv("tokenizer.ggml.tokens", ARRAY, raw), kv("n", U32, u32(1))]))


@pytest.mark.parametrize(("at", "long_items"), [(0, False), (1000, False), (1000, True)])
def test_invalid_utf8_in_a_vocabulary_is_refused_when_shown(tmp_path: Path, at: int, long_items: bool) -> None:
    path = tmp_path / "bad.gguf"
    _bad_utf8_file(path, at, long_items=long_items)
    # gguf-py's reader reads it too, and fails only when the item is decoded
    reader = gguf.GGUFReader(path)
    with pytest.raises(UnicodeDecodeError):
        reader.fields["tokenizer.ggml.tokens"].contents()
    listed = run_cli("shapes", path)  # no string is decoded to list tensors
    assert listed.code == 0, listed.err
    assert run_cli("meta", path, "n").code == 0
    for args in (["meta", path, "-f", "json"], ["meta", path, "tokenizer.ggml.tokens", "-f", "csv"]):
        result = run_cli(*args)
        assert (result.code, result.out) == (2, "")
        assert result.err == (
            f"paraminspect: error: {path}: GGUF key 'tokenizer.ggml.tokens' item {at:,} is not valid UTF-8 (byte 2)\n"
        )


def test_a_hostile_vocabulary_is_refused_by_the_installed_script_in_bounded_time(tmp_path: Path) -> None:
    """Half a million short strings, then an item that claims 2^63 - 1 bytes: one line, exit 2."""
    path = tmp_path / "h.gguf"
    items = gstr("ab") * 500_000 + struct.pack("<Q", 2**63 - 1)
    path.write_bytes(gguf_bytes([kv("tokenizer.ggml.tokens", ARRAY, u32(STRING) + struct.pack("<Q", 500_001) + items)]))
    result = run_script("shapes", path)  # a 60 s hang guard
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "GGUF key 'tokenizer.ggml.tokens' (9,223,372,036,854,775,807 bytes at byte" in result.stderr
    assert "runs past the end of the file" in result.stderr
