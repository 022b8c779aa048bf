"""Builders for the hostile-input corpus: every file is generated, none is committed.

Each :class:`Case` names a file, the commands to point at it and what must
happen: the exit code and a phrase of the one stderr line. Pickles that try to
run code aim at the marker path they are given; the test asserts it never appears.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from tests.hostile_build import (
    Call,
    Case,
    from_sample,
    patched,
    raw,
    saved,
    tensor_file,
    tensor_pickle,
    torch_zip,
    touch,
)
from tests.hostile_export import EXPORT_CASES
from tests.hostile_gguf import GGUF_HOSTILE
from tests.hostile_numpy import NUMPY_CASES
from tests.hostile_onnx import ONNX_CASES
from tests.hostile_safetensors import SAFETENSORS_JSON_QUIRKS, SAFETENSORS_OFFICIAL

# ---------------------------------------------------------------- pickles that try to run code


def _getattr_chain(marker: Path) -> bytes:
    # getattr(__import__('os'), 'system')('touch MARKER'), spelled in protocol-0 opcodes.
    cmd = touch(marker).encode()
    return b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'" + cmd + b"'\ntR."


def _inst(marker: Path) -> bytes:
    return b"(S'" + touch(marker).encode() + b"'\nios\nsystem\n."


def _newobj_build(marker: Path) -> bytes:
    # An object whose __setstate__ is set to os.system by one BUILD, then "called" by a second.
    cmd = touch(marker).encode()
    return (
        b"\x80\x02cargparse\nNamespace\n)\x81N}X\x0c\x00\x00\x00__setstate__cos\nsystem\ns\x86b"
        + b"X"
        + struct.pack("<I", len(cmd))
        + cmd
        + b"b."
    )


def _ext_codes(marker: Path) -> bytes:
    return b"\x80\x02\x82\x01(X\x04\x00\x00\x00truetR."


def _persistent_not_storage(marker: Path) -> bytes:
    return b"\x80\x02}X\x01\x00\x00\x00a(X\x04\x00\x00\x00evilX\x07\x00\x00\x00payloadtQs."


def _bytearray_gigabytes(marker: Path) -> bytes:
    return b"\x80\x02cbuiltins\nbytearray\n\x8a\x05\x00\x00\x00\x80\x00\x85R."  # bytearray(2**31)


def _storage_gigabytes(marker: Path) -> bytes:
    return b"\x80\x02ctorch\nFloatStorage\n\x8a\x05\x00\x00\x00\x00\x01\x85R."  # FloatStorage(2**32)


def _memo_bomb(marker: Path) -> bytes:
    # LONG_BINPUT 2**31-1: CPython's C unpickler would size its memo array to 2**32 slots (32 GiB).
    return b"\x80\x02]r\xff\xff\xff\x7f."


def _set_bomb(marker: Path) -> bytes:
    # 4.7 million EMPTY_SETs: 4.7 MB of pickle, over 1 GiB of sets once unpickled.
    return b"\x80\x04(" + b"\x8f" * 4_700_000 + b"l."


def _deep(marker: Path) -> bytes:
    n = 200_000
    return b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."


def _deep_values(kind: str) -> Callable[[Path], bytes]:
    """100,000-deep nesting inside one leaf value or key, which str() would recurse through."""
    n = 100_000
    bodies = {
        "frozenset": b"\x80\x04}X\x01\x00\x00\x00a" + b"(" * n + b"\x91" * n + b"s.",
        "tuple_key": b"\x80\x02}N" + b"\x85" * n + b"K\x01s.",
        "slice": b"\x80\x02}X\x01\x00\x00\x00a" + b"cbuiltins\nslice\n" * n + b"N" + b"\x85R" * n + b"s.",
    }
    return lambda marker: bodies[kind]


def _self_ref(marker: Path) -> bytes:
    return b"\x80\x02}X\x01\x00\x00\x00x]q\x00h\x00as."  # {'x': l} with l = [l]


def _dag(marker: Path) -> bytes:
    out = b"\x80\x02]q\x00"
    for i in range(1, 65):
        out += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
    return out + b"."


# ---------------------------------------------------------------- zip tricks


def _duplicate(path: Path, marker: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
            z.writestr("archive/data.pkl", pickle.dumps({"a": Call(os.system, touch(marker))}, protocol=2))
            z.writestr("archive/version", "3\n")


def _rename_local(data: bytes) -> bytes:
    at = data.index(b"archive/data.pkl")  # the first occurrence is the local header's copy
    return data[:at] + b"archive/data.pkz" + data[at + 16 :]


def _set_encrypted(data: bytes) -> bytes:
    out = bytearray(data)
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := out.find(signature, start)) >= 0:
            out[at + flag_at] |= 0x01
            start = at + 4
    return bytes(out)


def _future_zip_version(data: bytes) -> bytes:
    at = data.index(b"PK\x01\x02")  # central directory: "version needed to extract" = 6.4
    return data[: at + 6] + bytes([64]) + data[at + 7 :]


def _compressed(path: Path, marker: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
        z.writestr("archive/version", "3\n", zipfile.ZIP_STORED)  # the version torch.save writes, stored


def _deflate_bomb(path: Path, marker: Path) -> None:
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", tensor_pickle(1 << 24, 0, (1 << 24,), (1,)), zipfile.ZIP_STORED)
        z.writestr("archive/version", "3\n", zipfile.ZIP_STORED)
        with z.open("archive/data/0", "w", force_zip64=True) as fh:
            for _ in range(64):  # 64 MiB of zeros, about 64 KiB on disk
                fh.write(chunk)


def _no_top_folder(path: Path, marker: Path) -> None:
    torch_zip(path, pickle.dumps({"a": 1}, protocol=2), top="")


def _torchscript(path: Path, marker: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jit is deprecated; its files are still around
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))


def _legacy_tar(path: Path, marker: Path) -> None:
    # The pre-1.0 torch format: a tar of 'sys_info', 'pickle', 'storages', 'tensors'.
    with tarfile.open(path, "w") as tar:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            payload = pickle.dumps(Call(os.system, touch(marker)), protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def _drop_storage(info: zipfile.ZipInfo, data: bytes) -> list[tuple[zipfile.ZipInfo | str, bytes]]:
    return [] if info.filename.endswith("/data/0") else [(info.filename, data)]


def _short_storage(info: zipfile.ZipInfo, data: bytes) -> list[tuple[zipfile.ZipInfo | str, bytes]]:
    return [(info.filename, data[:5] if info.filename.endswith("/data/0") else data)]


def _record(name: str, value: bytes) -> Callable[[zipfile.ZipInfo, bytes], list[tuple[zipfile.ZipInfo | str, bytes]]]:
    def edit(info: zipfile.ZipInfo, data: bytes) -> list[tuple[zipfile.ZipInfo | str, bytes]]:
        return [(info.filename, value if info.filename.endswith(f"/{name}") else data)]

    return edit


def _setitems_on_tensor(marker: Path) -> bytes:
    """SETITEMS into the tensor _rebuild_tensor_v2 just built (torch < 2.10 called its __setitem__)."""
    pkl = tensor_pickle(4, 0, (4,), (1,))
    assert pkl[-2:] in (b"s.", b"u.")  # the state dict's SETITEM(S), then STOP: the tensor is on top
    return pkl[:-2] + b"(K\x00K\x01u" + pkl[-2:]


def _numpy_short(marker: Path) -> bytes:
    """``{'a': int64 array of shape (4,)}`` holding 8 bytes, as numpy's __reduce__ lays it out."""
    minus_one = b"J\xff\xff\xff\xff"
    dtype = b"cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNN" + minus_one * 2 + b"K\x00tb"
    data = b"c_codecs\nencode\nX\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00X\x06\x00\x00\x00latin1\x86R"
    head = b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nX\x01\x00\x00\x00b"
    array = head + b"X\x06\x00\x00\x00latin1\x86R\x87R(K\x01K\x04\x85" + dtype + b"\x89" + data + b"tb"
    return b"\x80\x02}X\x01\x00\x00\x00a" + array + b"s."


def corpus() -> list[Case]:
    """Every hostile file with the outcome each command must have."""
    scan_unsafe = {"scan_code": 1, "scan_reason": "globals outside the allow-list"}
    scan_ambiguous = {"scan_code": 1, "scan_reason": "ambiguous archive: "}
    scan_pattern = {"scan_code": 1, "scan_reason": "hold patterns aimed at torch's weights_only loader"}
    cases = [
        # Pickles reaching for code: shown as inert placeholders (or refused), flagged by scan.
        Case(
            "global_os_system",
            saved(lambda m: {"x": Call(os.system, touch(m))}),
            ("tree", "shapes"),
            0,
            "",
            **scan_unsafe,
        ),
        Case(
            "stack_global_eval",
            saved(lambda m: {"x": Call(eval, f"open({str(m)!r}, 'w')")}, 4),
            ("tree",),
            0,
            "",
            **scan_unsafe,
        ),
        Case("inst_os_system", raw(_inst), ("tree",), 0, "", **scan_unsafe),
        Case("getattr_chain", raw(_getattr_chain), ("tree",), 2, "calls the result of builtins.getattr", **scan_unsafe),
        Case("newobj_build_setstate", raw(_newobj_build), ("tree",), 0, "", **scan_unsafe),
        Case("ext_codes", raw(_ext_codes), ("tree",), 2, "unregistered extension code", **scan_unsafe),
        Case(
            "persistent_id_not_storage",
            raw(_persistent_not_storage),
            ("tree",),
            2,
            "persistent id is not a storage",
            **scan_unsafe,
        ),
        Case("bytearray_2gib", raw(_bytearray_gigabytes), ("tree",), 0, "", **scan_unsafe),
        # Patterns aimed at torch's own weights_only loader (scan rules PI004, PI006): refused or read inertly.
        Case(
            "setitems_on_tensor",
            lambda p, m: torch_zip(p, _setitems_on_tensor(m), {"data/0": bytes(16)}),
            ("tree",),
            2,
            "malformed pickle data",
            **scan_pattern,
        ),
        Case("protocol1_no_proto", raw(lambda m: b"}X\x01\x00\x00\x00wK\x01s."), ("tree",), 0, "", **scan_pattern),
        # A numpy array whose bytes do not fill its shape (numpy refuses it too); its globals are numpy data.
        Case("numpy_array_short_data", raw(_numpy_short), ("tree",), 2, "numpy array data is 8 bytes", scan_code=0),
        Case("storage_call_16gib", raw(_storage_gigabytes), ("tree",), 2, "malformed pickle data", scan_code=0),
        Case(
            "huge_storage_numel",
            lambda p, m: tensor_file(p, 1 << 40, 0, (4,), (1,)),
            ("tree",),
            2,
            "needs 4,398,046,511,104 bytes but its record holds",
            scan_code=1,  # a storage size torch.save never writes (rule PI005)
            scan_reason=scan_pattern["scan_reason"],
        ),
        # Zip tricks.
        # Archives torch's reader could read differently: refused, and a finding for scan (exit 1).
        Case("duplicate_entries", _duplicate, ("tree", "scan"), 2, "appears twice", **scan_ambiguous),
        Case(
            "local_name_mismatch",
            patched(raw(lambda m: pickle.dumps({"a": 1}, protocol=2)), _rename_local),
            ("tree", "scan"),
            2,
            "differs between local header",
            **scan_ambiguous,
        ),
        Case(
            "encryption_bit",
            patched(raw(lambda m: pickle.dumps({"a": 1}, protocol=2)), _set_encrypted),
            ("tree", "scan"),
            2,
            "encrypted",
        ),
        # Python's zipfile refused "version needed 6.4"; torch's reader ignores the field, and so do we.
        Case(
            "zip_version_6_4",
            patched(raw(lambda m: pickle.dumps({"a": 1}, protocol=2)), _future_zip_version),
            ("tree", "scan"),
            0,
            "",
        ),
        Case("compressed_records", _compressed, ("tree", "scan"), 2, "compressed"),
        Case("deflate_bomb", _deflate_bomb, ("tree",), 2, "compressed", scan_code=0),
        Case("missing_storage_record", from_sample(_drop_storage), ("tree",), 2, "has no record", scan_code=0),
        Case(
            "record_shorter_than_storage",
            from_sample(_short_storage),
            ("tree",),
            2,
            "but its record holds 5",
            scan_code=1,  # a storage size torch.save never writes (rule PI005)
            scan_reason=scan_pattern["scan_reason"],
        ),
        Case("no_top_folder", _no_top_folder, ("tree", "scan"), 2, "outside the archive folder"),
        # TorchScript: its weights listed, its code never run; scan flags the __torch__ classes and the code.
        Case(
            "torchscript_archive",
            _torchscript,
            ("tree", "shapes", "scan"),
            0,
            "",
            scan_code=1,
            scan_reason="hold globals outside the allow-list, code",
        ),
        Case("legacy_tar_format", _legacy_tar, ("tree", "scan"), 2, "not a recognised checkpoint"),
        # Records torch.load refuses before it unpickles: refused, and scan is inconclusive.
        Case(
            "byteorder_garbage",
            from_sample(_record("byteorder", b"middle")),
            ("tree", "scan"),
            2,
            "unknown byteorder record 'middle'",
        ),
        # The version record as torch's reader reads it (like C's stoull, 1 to 10): a file torch
        # refuses to open is refused, and scan calls it inconclusive (exit 2), never clean.
        Case(
            "version_from_the_future",
            from_sample(_record("version", b"99\n")),
            ("tree", "scan"),
            2,
            "archive format version 99 (version record 'version_from_the_future.src/version': '99') is newer",
        ),
        Case(
            "version_missing",
            from_sample(lambda info, data: [] if info.filename.endswith("/version") else [(info.filename, data)]),
            ("tree", "scan"),
            2,
            "archive has no version record",
        ),
        Case("version_not_a_number", from_sample(_record("version", b"v3")), ("tree", "scan"), 2, "no version number"),
        Case(
            "version_spaced_signed_trailing", from_sample(_record("version", b" \t+10 junk")), ("tree", "scan"), 0, ""
        ),
        Case(
            "byteorder_with_newline",  # torch.load compares the bytes exactly
            from_sample(_record("byteorder", b"little\n")),
            ("tree", "scan"),
            2,
            "unknown byteorder record 'little\\n'",
        ),
        # Tensor geometry.
        Case(
            "view_past_storage",
            lambda p, m: tensor_file(p, 4, 2, (4,), (1,)),
            ("tree",),
            2,
            "runs past its storage",
            scan_code=0,
        ),
        Case(
            "negative_stride",
            lambda p, m: tensor_file(p, 4, 3, (4,), (-1,)),
            ("tree",),
            2,
            "negative entry",
            scan_code=0,
        ),
        Case(
            "huge_shape_zero_strides",
            lambda p, m: tensor_file(p, 1, 0, (1 << 40, 1 << 40), (0, 0)),
            ("tree", "shapes"),
            2,
            "elements in total, over the",
            scan_code=0,
        ),
        Case(
            "numel_times_itemsize_overflows",
            lambda p, m: tensor_file(p, 1, 0, (2**63 - 1,) * 4, (0,) * 4),
            ("shapes",),
            2,
            "about 2^251 elements",
            scan_code=0,
        ),
        Case(
            "dim_over_int64",
            lambda p, m: tensor_file(p, 1, 0, (2**64,), (0,)),
            ("shapes",),
            2,
            "does not fit in 64 bits",
            scan_code=0,
        ),
        # Structure.
        Case("memo_index_bomb", raw(_memo_bomb), ("tree",), 2, "memo slot 2147483647 at byte 3 is out of range"),
        Case(
            "set_bomb",
            raw(_set_bomb),
            ("tree",),
            2,
            "pickle would build more than 134,217,728 bytes",
            scan_code=2,
            scan_reason="more than 1,000,000 opcodes",
        ),
        Case("nesting_200000_deep", raw(_deep), ("tree",), 2, "nesting deeper than 1000 levels", scan_code=0),
        *(
            Case(
                f"deep_{kind}_value",
                raw(_deep_values(kind)),
                ("tree", "shapes"),
                2,
                "nests deeper than 100",
                scan_code=0,
            )
            for kind in ("frozenset", "tuple_key", "slice")
        ),
        Case("self_referencing_list", raw(_self_ref), ("tree",), 0, "", scan_code=0),
        Case(
            "dag_bomb_2_pow_64",
            raw(_dag),
            ("tree", "shapes"),
            2,
            "expands to more than 200,000 entries",
            scan_code=0,
        ),
    ]
    for table in (SAFETENSORS_OFFICIAL, SAFETENSORS_JSON_QUIRKS, GGUF_HOSTILE):
        for name, (build, reason) in table.items():
            cases.append(Case(name, build, ("tree", "shapes", "scan"), 2, reason))
    for name, (build, commands, code, reason, scan_code) in NUMPY_CASES.items():
        cases.append(Case(name, build, commands, code, reason, scan_code=scan_code))
    for name, (build, commands, code, reason) in ONNX_CASES.items():
        cases.append(Case(name, build, commands, code, reason, scan_code=0 if commands == ("stats",) else None))
    for name, (build, commands, code, reason, scan_code, scan_reason) in EXPORT_CASES.items():
        cases.append(Case(name, build, commands, code, reason, scan_code=scan_code, scan_reason=scan_reason))
    return cases
