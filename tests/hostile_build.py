"""Building blocks for the hostile corpus: the Case record, torch-zip writers,
pickles with hand-chosen tensor geometry, and wrappers that copy or patch files."""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path, Path], None]  # (file to write, marker path)
    commands: tuple[str, ...]  # each run as `paraminspect <command> FILE`
    code: int  # expected exit code for every command (scan may differ: scan_code)
    reason: str  # phrase the stderr line must contain ("" when exit 0)
    scan_code: int | None = None  # None: same as ``code``
    scan_reason: str = ""


def torch_zip(path: Path, pkl: bytes, extra: dict[str, bytes] | None = None, top: str = "archive/") -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{top}data.pkl", pkl)
        z.writestr(f"{top}byteorder", "little")
        z.writestr(f"{top}version", "3\n")
        for name, data in (extra or {}).items():
            z.writestr(f"{top}{name}", data)


class _Storage:
    """Pickled as the persistent id of torch storage ``0`` with ``numel`` floats."""

    def __init__(self, numel: int) -> None:
        self.numel = numel


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self) -> tuple[object, ...]:
        return torch._utils._rebuild_tensor_v2, self.args


def tensor_file(path: Path, numel: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
    pkl = tensor_pickle(numel, offset, size, stride)
    torch_zip(path, pkl, {"data/0": b"\0" * min(4 * numel, 4096)})


def tensor_pickle(numel: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """A state dict {'t': tensor} over float storage '0' with the given geometry."""
    storage = _Storage(numel)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel) if isinstance(obj, _Storage) else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"t": _Tensor(storage, offset, size, stride)})
    return buffer.getvalue()


class Call:
    """Pickles as ``func(*args)``, however dangerous ``func`` is."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, ...]:
        return self.func, self.args


def touch(marker: Path) -> str:
    return f"touch {marker}"


def saved(obj_for: Callable[[Path], object], protocol: int = 2) -> Callable[[Path, Path], None]:
    return lambda path, marker: torch_zip(path, pickle.dumps(obj_for(marker), protocol=protocol))


def raw(make: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    return lambda path, marker: torch_zip(path, make(marker))


def from_sample(
    edit: Callable[[zipfile.ZipInfo, bytes], list[tuple[zipfile.ZipInfo | str, bytes]]],
) -> Callable[[Path, Path], None]:
    """Copy a real torch.save file record by record, letting ``edit`` rewrite each one."""

    def build(path: Path, marker: Path) -> None:
        source = path.with_suffix(".src.pt")
        torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}, source)
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                for target, data in edit(info, src.read(info)):
                    dst.writestr(target, data)
        source.unlink()

    return build


def patched(build: Callable[[Path, Path], None], patch: Callable[[bytes], bytes]) -> Callable[[Path, Path], None]:
    def run(path: Path, marker: Path) -> None:
        build(path, marker)
        path.write_bytes(patch(path.read_bytes()))

    return run
