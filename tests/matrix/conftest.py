"""The matrix's files: each writer runs once per session, on first use.

A case id names the writer and layout (``dcp-state-dict``); tests are
parametrised over (case, command), so a failure names both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.matrix import writers_libs, writers_torch
from tests.matrix.cases import Case, write_changed
from tests.matrix.reference import Flat, read

Writer = Callable[[Path], dict[str, Case]]

# case id -> the writer that makes it. Ids are listed here (not discovered) so
# collection imports no writer library.
CASES: dict[str, Writer] = {
    **dict.fromkeys(
        (
            "torch-state-dict",
            "torch-whole-module",
            "torch-optimizer",
            "torch-legacy",
            "torch-dtypes",
            "torch-views",
            "safetensors-dtypes",
        ),
        writers_torch.write_torch,
    ),
    **dict.fromkeys(("dcp-state-dict", "dcp-model-optimizer", "dcp-tensors-in-items"), writers_torch.write_dcp),
    **dict.fromkeys(
        (
            "transformers-safetensors-tied",
            "transformers-sharded",
            "transformers-bin-tied",
            "transformers-sharded-bin",
            "transformers-moe",
        ),
        writers_libs.write_transformers,
    ),
    **dict.fromkeys(("diffusers-unet", "diffusers-vae-fp16"), writers_libs.write_diffusers),
    **dict.fromkeys(
        ("accelerate-state-model", "accelerate-state-optimizer", "accelerate-state-rng", "accelerate-save-model"),
        writers_libs.write_accelerate,
    ),
    "peft-lora": writers_libs.write_peft,
    **dict.fromkeys(("lightning-fit", "lightning-save-checkpoint"), writers_libs.write_lightning),
}
SLOW_CASES: dict[str, Writer] = {"dcp-two-ranks": writers_torch.write_dcp_two_ranks}


class Matrix:
    """Lazily built cases and their reference readings, shared by the whole session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: dict[str, Case] = {}
        self.references: dict[Path, Flat] = {}
        self.failed: dict[Writer, BaseException] = {}

    def case(self, case_id: str) -> Case:
        writer = {**CASES, **SLOW_CASES}[case_id]
        if writer in self.failed:  # one writer's failure, reported once per case, not re-run
            raise RuntimeError(f"{writer.__name__} failed") from self.failed[writer]
        if case_id not in self.cases:
            directory = self.root / writer.__name__
            directory.mkdir()
            try:
                self.cases.update(writer(directory))
            except BaseException as error:
                self.failed[writer] = error
                raise
        case = self.cases[case_id]
        if case.changed is None:
            target = case.path.parent / f"changed-{case.path.name}"
            case = self.cases[case_id] = Case(case.path, write_changed(case.path, target), case.drop_unknown)
        return case

    def reference(self, path: Path) -> Flat:
        if path not in self.references:
            self.references[path] = read(path)
        return self.references[path]


@pytest.fixture(scope="session")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    return Matrix(tmp_path_factory.mktemp("matrix"))
