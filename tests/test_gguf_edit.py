"""``set-meta`` / ``rm-meta`` on GGUF files written by gguf-py's GGUFWriter, read back by
gguf-py's GGUFReader: every other key/value as it was, with its type; every tensor's
bytes identical and aligned; typed values refused when they do not parse; a failed,
interrupted or killed write leaves the original and nothing else."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from paraminspect.edit.writers import copying
from paraminspect.edit.writers import gguf as gguf_write
from tests.conftest import run_cli
from tests.test_atomic import no_copy_outlives_an_interrupt
from tests.test_formats_gguf import CHAT_TEMPLATE, write_model

NEW_TEMPLATE = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}\u00e9"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "m.gguf"
    write_model(path)
    return path


@pytest.fixture(scope="module")
def big_endian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "m-be.gguf"
    write_model(path, big=True)
    return path


@functools.cache
def fields(path: Path) -> dict[str, tuple[list[str], Any]]:
    """GGUFReader's key/values: key -> (type names, contents)."""
    reader = gguf.GGUFReader(path)
    return {k: ([t.name for t in f.types], f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


@functools.cache
def tensor_bytes(path: Path) -> dict[str, tuple[str, list[int], bytes, int]]:
    reader = gguf.GGUFReader(path)
    align = reader.alignment
    out = {}
    for t in reader.tensors:
        assert t.data_offset % align == 0, t.name
        out[t.name] = (t.tensor_type.name, t.shape.tolist(), np.asarray(t.data).tobytes(), t.data_offset % align)
    return out


@pytest.mark.parametrize("which", ["model", "big_endian"])
def test_chat_template_file_sets_the_template_and_keeps_everything_else(
    which: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(which)
    template = tmp_path / "t.jinja"
    template.write_text(NEW_TEMPLATE, encoding="utf-8")
    out = tmp_path / "out.gguf"
    result = run_cli("set-meta", model, "--chat-template-file", template, "-o", out)
    assert result.code == 0, result.err
    assert result.err.startswith(f"set-meta: wrote {out} (gguf, ")
    before, after = dict(fields(model)), dict(fields(out))
    assert before["tokenizer.chat_template"] == (["STRING"], CHAT_TEMPLATE)
    assert after["tokenizer.chat_template"] == (["STRING"], NEW_TEMPLATE)
    del before["tokenizer.chat_template"], after["tokenizer.chat_template"]
    assert list(after) == list(before)
    for key in before:  # FLOAT32 contents are numpy floats: compare as float32
        assert after[key][0] == before[key][0], key
        np.testing.assert_array_equal(np.asarray(after[key][1], dtype=object), np.asarray(before[key][1], dtype=object))
    assert tensor_bytes(out) == tensor_bytes(model)
    assert gguf.GGUFReader(out).endianess == gguf.GGUFReader(model).endianess


@pytest.mark.parametrize(
    ("key", "text", "want_types", "want"),
    [
        ("llama.context_length", "8192", ["UINT32"], 8192),  # an existing key keeps its type
        ("llama.rope.freq_base", "500000.5", ["FLOAT32"], 500000.5),
        ("tokenizer.ggml.add_bos_token", "false", ["BOOL"], False),
        ("test.i8", "-100", ["INT8"], -100),
        ("general.name", "renamed", ["STRING"], "renamed"),
        ("test.new_count", "12", ["UINT32"], 12),  # a new key: its type read off the value
        ("test.new_negative", "-3", ["INT32"], -3),
        ("test.new_float", "0.25", ["FLOAT32"], 0.25),
        ("test.new_flag", "true", ["BOOL"], True),
        ("test.new_text", "hello world", ["STRING"], "hello world"),
    ],
)
def test_set_meta_values_keep_or_take_a_gguf_type(
    model: Path, tmp_path: Path, key: str, text: str, want_types: list[str], want: Any
) -> None:
    out = tmp_path / "out.gguf"
    result = run_cli("set-meta", model, key, text, "-o", out)
    assert result.code == 0, result.err
    after = fields(out)
    assert after[key][0] == want_types
    assert after[key][1] == want
    assert set(after) == set(fields(model)) | {key}
    assert tensor_bytes(out) == tensor_bytes(model)


def test_explicit_type_and_arrays(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.gguf"
    assert run_cli("set-meta", model, "test.f", "2", "--type", "float64", "-o", out).code == 0
    assert fields(out)["test.f"] == (["FLOAT64"], 2.0)
    arr = tmp_path / "arr.gguf"
    result = run_cli("set-meta", model, "test.langs", '["en", "fr"]', "--type", "[STRING]", "-o", arr)
    assert result.code == 0, result.err
    assert fields(arr)["test.langs"] == (["ARRAY", "STRING"], ["en", "fr"])


def test_rm_meta_in_place(model: Path, tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    shutil.copy(model, path)
    result = run_cli("rm-meta", path, "test.f64", "test.nested", "--in-place")
    assert result.code == 0, result.err
    assert set(fields(model)) - set(fields(path)) == {"test.f64", "test.nested"}
    assert tensor_bytes(path) == tensor_bytes(model)
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["llama.context_length", "big"], "metadata key 'llama.context_length' is a UINT32: 'big' is not one"),
        (["llama.context_length", "-1"], "'-1' is not one (out of range 0..4294967295)"),
        (["test.i8", "300"], "metadata key 'test.i8' is a INT8: '300' is not one (out of range -128..127)"),
        (["llama.rope.freq_base", "1e39"], "'1e39' is not one (too large for float32)"),
        (["tokenizer.ggml.add_bos_token", "maybe"], "'maybe' is not one (true, false, 1 or 0)"),
        (["test.x", "1", "--type", "UINT128"], "--type UINT128: not a GGUF type"),
        (["test.nested", "[[1]]"], "is an array of arrays ([[INT32]]): set-meta cannot set one"),
        (["general.alignment", "64"], "general.alignment cannot be changed"),
    ],
)
def test_bad_values_are_one_line_exit_2_and_write_nothing(
    model: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out.gguf"
    result = run_cli("set-meta", model, *args, "-o", out)
    assert (result.code, result.out) == (2, ""), result.err
    assert result.err.startswith("paraminspect: error: ")
    assert message in result.err and result.err.count("\n") == 1
    assert not out.exists()


def test_split_models_are_refused(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(tmp_path / "s.gguf", "llama", split_max_tensors=1)
    writer.add_tensor("a", np.ones(4, dtype=np.float32))
    writer.add_tensor("b", np.ones(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    first = tmp_path / "s-00001-of-00002.gguf"
    result = run_cli("set-meta", first, "k", "v", "-o", tmp_path / "out.gguf")
    assert result.code == 2
    assert result.err == (
        f"paraminspect: error: {first}: is a split GGUF model (2 files): its metadata is not editable"
        " split by split; merge it first (llama-gguf-split --merge)\n"
    )


def test_other_commands_cannot_write_gguf(model: Path, tmp_path: Path) -> None:
    result = run_cli("rename", model, "blk.=layer.", "-o", tmp_path / "out.gguf")
    assert result.code == 2
    assert "GGUF files are written only by metadata edits of a GGUF file (set-meta, rm-meta)" in result.err
    assert not (tmp_path / "out.gguf").exists()


def test_failed_verification_and_errors_mid_copy_leave_the_original(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.gguf"
    shutil.copy(model, path)
    original = path.read_bytes()
    real = gguf_write.write

    def corrupting(layout, out):  # type: ignore[no-untyped-def]
        crcs = real(layout, out)
        out.seek(len(layout.header) + 40)
        out.write(b"\x7f\x7f")
        return crcs

    monkeypatch.setattr(gguf_write, "write", corrupting)
    result = run_cli("set-meta", path, "general.name", "x", "--in-place")
    assert result.code == 2
    assert "failed verification: checksum" in result.err
    assert path.read_bytes() == original
    monkeypatch.setattr(gguf_write, "write", real)

    def failing(*args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(copying, "copy_range", failing)
    result = run_cli("set-meta", path, "general.name", "x", "--in-place")
    assert result.err == f"paraminspect: error: {path}: cannot write (No space left on device)\n"
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]


SLOW_WRITER = """
import os, sys, time
from paraminspect.edit.writers import copying
real = copying.copy_range
def slow(*args, **kwargs):
    os.write(1, b"chunk\\n")
    time.sleep(0.2)
    return real(*args, **kwargs)
copying.copy_range = slow
from paraminspect.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_gguf_writer_leaves_original_and_no_temp(model: Path, tmp_path: Path, sig: signal.Signals) -> None:
    target = tmp_path / "m.gguf"
    shutil.copy(model, target)
    original = target.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, "set-meta", str(target), "general.name", "x", "--in-place"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(3):
        assert proc.stdout.readline() == "chunk\n"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    time.sleep(0.05)
    assert target.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]


def test_the_plan_reuses_the_header_read_at_open(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layout parsed when the checkpoint was opened is the one the edit uses (no second
    parse), and it is right: unchanged metadata gives exactly the input's header and
    padding, as gguf-py's reader places the data section."""
    from paraminspect.edit.plan import Keep
    from paraminspect.formats import gguf as gguf_read
    from paraminspect.formats.opening import open_checkpoint

    ckpt = open_checkpoint(model)
    assert gguf_read.parsed_layout(ckpt) is not None

    def no_second_parse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the header was parsed again")

    monkeypatch.setattr(gguf_read, "read_layout", no_second_parse)
    tensors = {name: Keep(ref) for name, ref in ckpt.tensors.items()}
    layout = gguf_write.plan_layout(ckpt, tensors, ckpt.file_metadata)
    data_offset = gguf.GGUFReader(model).data_offset
    assert layout.header == model.read_bytes()[:data_offset]
    assert layout.data_start == data_offset


def test_a_wrong_reused_layout_fails_verification(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification parses the written header on its own: had the edit reused another
    file's layout (its key/value spans a few bytes off here), it refuses, writing nothing."""
    from paraminspect.formats import gguf as gguf_read
    from paraminspect.formats.opening import open_checkpoint

    other = tmp_path / "other.gguf"
    write_model(other, template=CHAT_TEMPLATE + " longer")
    other_ckpt = open_checkpoint(other)
    wrong = gguf_read.parsed_layout(other_ckpt)
    assert wrong is not None and wrong.spans != gguf_read.parsed_layout(open_checkpoint(model)).spans  # type: ignore[union-attr]
    monkeypatch.setattr(gguf_read, "parsed_layout", lambda ckpt: wrong)
    path = tmp_path / "m.gguf"
    shutil.copy(model, path)
    original = path.read_bytes()
    result = run_cli("set-meta", path, "general.name", "x", "--in-place")
    assert result.code == 2
    assert "written file failed verification" in result.err and result.err.count("\n") == 1
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["m.gguf", "other.gguf"]


def test_a_changed_kept_key_fails_verification(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key/value copied as its bytes is checked as written: one token of the vocabulary
    changed in the written header (same length, so the file still parses) is refused."""
    path = tmp_path / "m.gguf"
    shutil.copy(model, path)
    original = path.read_bytes()
    real = gguf_write.write
    token = "tok7\u0120x".encode()

    def corrupting(layout, out):  # type: ignore[no-untyped-def]
        crcs = real(layout, out)
        at = layout.header.index(token)
        out.seek(at)
        out.write(b"tok8")
        return crcs

    monkeypatch.setattr(gguf_write, "write", corrupting)
    result = run_cli("set-meta", path, "general.name", "x", "--in-place")
    assert result.code == 2
    assert "failed verification: metadata differs (['tokenizer.ggml.tokens'" in result.err
    assert path.read_bytes() == original


def test_parsed_layouts_end_with_their_checkpoint(model: Path) -> None:
    from paraminspect.formats import gguf as gguf_read
    from paraminspect.formats.opening import open_checkpoint

    before = len(gguf_read._PARSED)
    ckpt = open_checkpoint(model)
    layout = gguf_read.parsed_layout(ckpt)
    assert layout is not None
    assert [t.name for t in layout.tensors] == [t.name for t in gguf.GGUFReader(model).tensors]
    assert len(gguf_read._PARSED) == before + 1
    for opened in ckpt.sources:
        opened.close()
    del ckpt
    import gc

    gc.collect()
    assert len(gguf_read._PARSED) == before


def test_interrupt_inside_submit_still_waits_for_that_copy(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GGUF writer's copy threads, like the safetensors writer's: none outlives a Ctrl-C."""
    target = tmp_path / "m.gguf"
    shutil.copy(model, target)
    no_copy_outlives_an_interrupt(monkeypatch, target, ["set-meta", target, "general.name", "x", "--in-place"])


def test_input_truncated_during_the_copy_is_one_line(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short copy of a shrunk input is a one-line error, and nothing is written."""
    path = tmp_path / "m.gguf"
    shutil.copy(model, path)
    real = copying.copy_range

    def truncating(*args: Any, **kwargs: Any) -> None:
        os.truncate(path, 100)  # inside the header: every tensor's bytes are gone
        real(*args, **kwargs)

    monkeypatch.setattr(copying, "copy_range", truncating)
    result = run_cli("set-meta", path, "general.name", "x", "-o", tmp_path / "out.gguf")
    assert (result.code, result.out) == (2, "")
    assert result.err == f"paraminspect: error: {path}: the file was truncated while it was being read\n"
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]
