"""``meta``: a file's own key/values in every format, held to the libraries that wrote them
(safetensors' ``safe_open(...).metadata()``, the index transformers wrote, ``torch.load``
of a Lightning-style ``.ckpt``, DCP's own ``read_metadata``), and the ``metadata`` key
of ``tree``/``shapes`` JSON."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests.conftest import SAMPLES, run_cli, run_script


def _official_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="numpy") as f:
        return f.metadata() or {}


def _header_order(path: Path) -> list[str]:
    """The ``__metadata__`` keys in the order the file holds them (json keeps it)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return list(json.loads(raw[8 : 8 + length]).get("__metadata__", {}))


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.safetensors"
    save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(path), metadata={"format": "pt"})
    return path


def test_meta_table_json_csv_markdown_are_exact(small: Path) -> None:
    assert _official_metadata(small) == {"format": "pt"}
    table = run_cli("meta", small)
    assert (table.code, table.err) == (0, "")
    assert table.out == "key     type    value\n------  ------  -------\nformat  str     pt\n"
    doc = run_cli("meta", small, "-f", "json")
    assert json.loads(doc.out) == {
        "file": str(small),
        "format": "safetensors",
        "metadata": _official_metadata(small),
        "types": {"format": "str"},
    }
    assert run_cli("meta", small, "-f", "csv").out == "key,type,value\nformat,str,pt\n"
    assert run_cli("meta", small, "-f", "markdown").out == (
        "| key    | type   | value   |\n|--------|--------|---------|\n| format | str    | pt      |\n"
    )


def test_meta_of_every_key_matches_safe_open_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "lora.safetensors"
    metadata = {"ss_network_dim": "16", "format": "pt", "modelspec.title": "tiny", "ss_tag_frequency": "{}"}
    save_file({"a": torch.zeros(1)}, str(path), metadata=metadata)
    rows = list(csv.DictReader(io.StringIO(run_cli("meta", path, "-f", "csv").out)))
    assert [r["key"] for r in rows] == _header_order(path)
    assert {r["key"]: r["value"] for r in rows} == _official_metadata(path)
    assert {r["type"] for r in rows} == {"str"}


def test_keys_select_by_exact_name_glob_and_prefix(tmp_path: Path) -> None:
    path = tmp_path / "lora.safetensors"
    metadata = {"ss_network_dim": "16", "ss_lr": "1e-4", "format": "pt", "modelspec.title": "tiny"}
    save_file({"a": torch.zeros(1)}, str(path), metadata=metadata)

    def keys(*patterns: str) -> set[str]:
        result = run_cli("meta", path, *patterns, "-f", "json")
        assert result.code == 0, result.err
        return set(json.loads(result.out)["metadata"])

    assert keys("format") == {"format"}
    assert keys("ss_*") == {"ss_network_dim", "ss_lr"}
    assert keys("modelspec") == {"modelspec.title"}
    assert keys("-e", "^ss_n") == {"ss_network_dim"}
    bad = run_cli("meta", path, "formt")
    assert (bad.code, bad.out) == (2, "")
    assert bad.err == f"paraminspect: error: {path}: no metadata key matches 'formt'; did you mean 'format'?\n"


def test_long_values_are_summarised_in_tables_and_whole_in_json(tmp_path: Path) -> None:
    template = "{% for message in messages %}" + "x" * 5000 + "{% endfor %}"
    path = tmp_path / "long.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={"chat_template": template})
    table = run_cli("meta", path).out
    line = table.splitlines()[2]
    assert line == "chat_template  str     {% for message in messages %}" + "x" * 31 + "… (5,041 chars)"
    assert json.loads(run_cli("meta", path, "-f", "json").out)["metadata"] == _official_metadata(path)
    assert run_cli("meta", path, "-f", "csv").out.splitlines()[1] == f"chat_template,str,{template}"


def test_long_lists_show_type_length_and_first_items(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2)}, str(tmp_path / "s1.safetensors"))
    tokens = [f"tok{i}" for i in range(151_000)]
    index = {
        "metadata": {"total_size": 8, "tokens": tokens, "nested": {"k": [1, 2]}},
        "weight_map": {"a": "s1.safetensors"},
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    table = run_cli("meta", tmp_path)
    assert table.code == 0, table.err
    assert table.out == (
        "key         type    value\n"
        "----------  ------  --------------------------------------------------------\n"
        "total_size  int     8\n"
        "tokens      list    list × 151000: 'tok0', 'tok1', 'tok2', 'tok3', 'tok4', …\n"
        "nested      dict    {'k': [1, 2]}\n"
    )
    doc = json.loads(run_cli("meta", tmp_path, "-f", "json").out)
    assert doc["metadata"] == index["metadata"]
    assert doc["types"] == {"total_size": "int", "tokens": "list", "nested": "dict"}


def test_control_characters_are_escaped_in_tables_and_real_in_json(tmp_path: Path) -> None:
    path = tmp_path / "evil.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={"k\x1b[31m": "v\nline\x07"})
    table = run_cli("meta", path).out
    assert "\x1b" not in table and "\x07" not in table
    assert "k\\x1b[31m  str     v\\nline\\x07" in table
    assert json.loads(run_cli("meta", path, "-f", "json").out)["metadata"] == _official_metadata(path)


def test_a_file_without_metadata_says_so_on_stderr() -> None:
    result = run_cli("meta", SAMPLES / "mlp.pt")
    assert result.code == 0
    assert result.out == "key    type    value\n-----  ------  -------\n"
    assert result.err == f"paraminspect: note: {SAMPLES / 'mlp.pt'}: no file metadata (torch-zip)\n"
    assert json.loads(run_cli("meta", SAMPLES / "mlp.pt", "-f", "json").out)["metadata"] == {}
    bad = run_cli("meta", SAMPLES / "mlp.pt", "format")
    assert bad.code == 2
    assert (
        bad.err
        == f"paraminspect: error: {SAMPLES / 'mlp.pt'}: no metadata key matches 'format': the file has no metadata\n"
    )


def _hparams() -> dict[str, Any]:
    return {"lr": 0.001, "hidden": 16, "name": "tiny", "layers": [4, 8], "dropout": None, "opt": {"betas": (0.9, 0.99)}}


@pytest.mark.parametrize("zip_format", [True, False])
def test_lightning_hyper_parameters_match_torch_load(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "epoch=3.ckpt"
    checkpoint = {
        "epoch": 3,
        "global_step": 40,
        "state_dict": {"layer.weight": torch.ones(2, 2)},
        "hyper_parameters": _hparams(),
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    reference = torch.load(path, weights_only=False)["hyper_parameters"]
    doc = json.loads(run_cli("meta", path, "-f", "json").out)
    assert doc["metadata"] == json.loads(json.dumps(reference))  # tuples as JSON lists
    assert doc["types"] == {k: type(v).__name__ for k, v in reference.items()}
    assert run_cli("meta", path, "lr").out == "key    type    value\n-----  ------  -------\nlr     float   0.001\n"


@pytest.mark.slow  # Lightning's import and Trainer take ~20 s; the test-made .ckpt above runs by default
def test_real_lightning_checkpoint(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")

    class Tiny(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, lr: float = 0.01, width: int = 3, tag: str = "t") -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(width, 1)

        def training_step(self, batch: Any, _index: int) -> torch.Tensor:
            return self.layer(batch[0]).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 3)), batch_size=1)
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(Tiny(lr=0.5, width=3, tag="run-1"), data)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    reference = torch.load(path, weights_only=False)["hyper_parameters"]
    result = run_script("meta", path, "-f", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["metadata"] == dict(reference) == {"lr": 0.5, "width": 3, "tag": "run-1"}


def test_sharded_index_metadata_is_what_transformers_wrote(tmp_path: Path) -> None:
    from tests.matrix.writers_libs import tiny_llama

    tiny_llama(tied=False).save_pretrained(tmp_path, max_shard_size="10KB")
    written = json.loads((tmp_path / "model.safetensors.index.json").read_text())["metadata"]
    doc = json.loads(run_cli("meta", tmp_path, "-f", "json").out)
    assert doc["format"] == "sharded-safetensors"
    assert doc["metadata"] == written
    assert set(written) == {"total_size", "total_parameters"}
    assert doc["types"] == {"total_size": "int", "total_parameters": "int"}


def test_dcp_metadata_matches_the_reader_of_torch(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    directory = tmp_path / "dcp"
    dcp.save({"model": {"w": torch.ones(2)}, "step": 7}, checkpoint_id=str(directory))
    reference = dcp.FileSystemReader(str(directory)).read_metadata()
    doc = json.loads(run_cli("meta", directory, "-f", "json").out)
    assert doc["format"] == "dcp"
    metadata = doc["metadata"]
    assert metadata["version"] == reference.version
    assert metadata["planner_data"] == json.loads(json.dumps(reference.planner_data))
    storage = reference.storage_meta
    assert storage is not None
    assert metadata["storage_meta.checkpoint_id"] == str(storage.checkpoint_id)
    assert metadata["storage_meta.save_id"] == storage.save_id
    assert doc["types"]["version"] == "str"


def test_tree_and_shapes_json_carry_the_metadata(tmp_path: Path, small: Path) -> None:
    path = tmp_path / "noted.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={"note": "hello", "format": "pt"})
    for command in ("tree", "shapes"):
        doc = json.loads(run_cli(command, path, "-f", "json").out)
        assert doc["metadata"] == _official_metadata(path) == {"note": "hello", "format": "pt"}
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "hyper_parameters": {"lr": 0.1}}, ckpt)
    result = run_cli("shapes", ckpt, "-f", "json")  # the state dict is picked; the metadata is the file's
    assert json.loads(result.out)["metadata"] == {"lr": 0.1}
    assert json.loads(run_cli("tree", SAMPLES / "mlp.pt", "-f", "json").out)["metadata"] == {}


def test_unreadable_input_is_one_line_exit_2(tmp_path: Path, small: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(small.read_bytes()[:-3])
    for command in (["meta", broken], ["meta", tmp_path / "absent.safetensors"]):
        result = run_cli(*command)
        assert (result.code, result.out) == (2, "")
        assert result.err.startswith(f"paraminspect: error: {command[1]}: ") and result.err.count("\n") == 1


def test_tensors_and_objects_among_hyper_parameters_are_shown_not_dumped(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "run.ckpt"
    hparams = {"args": argparse.Namespace(lr=0.1), "class_weights": torch.ones(3, dtype=torch.float16)}
    torch.save({"state_dict": {"w": torch.ones(1)}, "hyper_parameters": hparams}, path)
    reference = torch.load(path, weights_only=False)["hyper_parameters"]
    weights = reference["class_weights"]
    dtype = str(weights.dtype).removeprefix("torch.")
    doc = json.loads(run_cli("meta", path, "-f", "json").out)
    assert doc["metadata"] == {
        "args": f"<object argparse.{type(reference['args']).__name__}>",
        "class_weights": f"tensor {dtype} {list(weights.shape)}",
    }
    assert doc["types"] == {"args": "argparse.Namespace", "class_weights": "Tensor"}
    rows = list(csv.DictReader(io.StringIO(run_cli("meta", path, "-f", "csv").out)))
    assert [r["value"] for r in rows] == ["<object argparse.Namespace>", "tensor float16 [3]"]
