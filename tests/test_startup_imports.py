"""What ``shapes`` of a safetensors file imports: only what the header-only path uses.

A module count, not a timing (timings are the benchmarks' job: benchmarks/bench_startup.py).
Each module named here was once imported by ``shapes`` for nothing: the other command
families' CLI modules, the sharded-index reader, csv, base64, the tree and --by-prefix reports,
the renderers of trees, values, histograms and edits and the report types they take.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLES
from tests.hostile_gguf import ARRAY, DATA, ONE_F32, STRING, U32, gguf_bytes, gstr, kv, u32

_PROBE = """
import io, sys, contextlib, json
from paraminspect.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

NOT_FOR_SHAPES = [
    "paraminspect.cli.comparing",
    "paraminspect.cli.editing",
    "paraminspect.compare",
    "paraminspect.formats.sharded",
    "paraminspect.inspect.sizes",
    "paraminspect.inspect.tree",
    "paraminspect.naming.prefixes",
    "paraminspect.output.report",
    "paraminspect.output.charts",
    "paraminspect.output.edits",
    "paraminspect.output.trees",
    "paraminspect.output.values",
    "csv",
    "base64",
]
# A GGUF file loads its own reader only: no other format's, no numpy.
NOT_FOR_GGUF_SHAPES = [
    "paraminspect.formats.safetensors",
    "paraminspect.formats.torchzip",
    "paraminspect.formats.pickle",
    "paraminspect.formats.legacy",
    "numpy",
]


def _imported(*argv: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True, timeout=60)
    result = json.loads(proc.stdout)
    assert result["code"] == 0, proc.stderr
    return set(result["modules"])


def test_shapes_of_a_safetensors_file_imports_nothing_it_does_not_use() -> None:
    modules = _imported("shapes", str(SAMPLES / "mlp.safetensors"))
    assert "paraminspect.formats.safetensors" in modules
    assert sorted(m for m in NOT_FOR_SHAPES if m in modules) == []


def test_shapes_of_a_gguf_file_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    path = tmp_path / "v.gguf"
    tokens = [gstr(f"t{i}") for i in range(1000)]
    vocab = kv("tokenizer.ggml.tokens", ARRAY, u32(STRING) + struct.pack("<Q", len(tokens)) + b"".join(tokens))
    path.write_bytes(gguf_bytes([vocab, kv("general.alignment", U32, u32(32))], ONE_F32, DATA))
    modules = _imported("shapes", str(path))
    assert "paraminspect.formats.gguf" in modules
    assert sorted(m for m in [*NOT_FOR_SHAPES, *NOT_FOR_GGUF_SHAPES] if m in modules) == []


def test_the_other_commands_still_get_what_they_use() -> None:
    """A command imports its own family's module; ``--help`` all of them (it lists every command)."""
    assert "paraminspect.cli.comparing" in _imported("diff", str(SAMPLES / "mlp.pt"), str(SAMPLES / "mlp.pt"))
    assert "paraminspect.inspect.sizes" in _imported("shapes", "--by-prefix", "1", str(SAMPLES / "mlp.pt"))
    assert "paraminspect.output.trees" in _imported("tree", str(SAMPLES / "mlp.pt"))
    assert {"paraminspect.cli.comparing", "paraminspect.cli.editing"} <= _imported("--help")
