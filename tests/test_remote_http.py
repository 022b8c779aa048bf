"""Checkpoints read over HTTP by ranges (issue 15): requests and bytes per format, values
against safetensors/torch.load of the same file, and every failure as one line, exit 2.

Every server runs on 127.0.0.1, started and stopped here (tests/rangeserver.py).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from paraminspect.io import http, ranged
from tests.conftest import ROOT, run_cli
from tests.rangeserver import RangeServer, Settings


def _one_line_error(result, *fragments: str) -> str:  # type: ignore[no-untyped-def]
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("paraminspect: error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def safetensors_with_header(path: Path, header_bytes: int) -> dict[str, np.ndarray]:
    """A valid safetensors file whose JSON header is exactly ``header_bytes`` long (space-padded)."""
    tensors: dict[str, np.ndarray] = {}
    entries: dict[str, object] = {}
    offset, length, i = 0, 2, 0  # "{}"
    while True:
        value = np.full((2, 3), i, dtype=np.float32)
        name = f"layers.{i}.{'w' * 400}"  # long names: few entries, a fast test
        entry = {"dtype": "F32", "shape": [2, 3], "data_offsets": [offset, offset + value.nbytes]}
        piece = len(json.dumps({name: entry}, separators=(",", ":"))) - 2 + (1 if entries else 0)
        if length + piece > header_bytes:
            break
        entries[name], tensors[name] = entry, value
        length += piece
        offset += value.nbytes
        i += 1
    raw = json.dumps(entries, separators=(",", ":")).encode()
    raw += b" " * (header_bytes - len(raw))
    data = b"".join(t.tobytes() for t in tensors.values())
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return tensors


def _names_and_shapes(path: Path) -> dict[str, list[int]]:
    with safe_open(str(path), framework="numpy") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def _shapes_json(result) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    return {row["name"]: row["shape"] for row in doc["tensors"]}


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    with RangeServer(tmp_path) as server:
        yield server


def test_safetensors_100kB_header_one_request(served: RangeServer) -> None:
    file = served.root / "model.safetensors"
    safetensors_with_header(file, 100_000)
    result = run_cli("shapes", served.url("model.safetensors"), "-f", "json")
    assert _shapes_json(result) == _names_and_shapes(file)
    assert served.requests == 1 and served.sent <= ranged.FIRST_READ
    assert json.loads(result.out)["remote"] == {"requests": 1, "bytes": served.sent}


@pytest.mark.parametrize("header", range(99_995, 100_006))
def test_headers_around_100kB(served: RangeServer, header: int) -> None:
    file = served.root / "m.safetensors"
    safetensors_with_header(file, header)
    assert _shapes_json(run_cli("shapes", served.url("m.safetensors"), "-f", "json")) == _names_and_shapes(file)
    assert served.requests == 1


@pytest.mark.parametrize("delta", [-2, -1, 0, 1, 2])
def test_headers_around_the_first_read(served: RangeServer, delta: int) -> None:
    """8 + header bytes up to FIRST_READ: one request; one byte more: a second."""
    header = ranged.FIRST_READ - 8 + delta
    file = served.root / "m.safetensors"
    safetensors_with_header(file, header)
    assert _shapes_json(run_cli("shapes", served.url("m.safetensors"), "-f", "json")) == _names_and_shapes(file)
    assert served.requests == (1 if delta <= 0 else 2)
    assert served.sent <= 8 + header + ranged.MIN_FETCH


def test_one_megabyte_header_two_requests(served: RangeServer) -> None:
    file = served.root / "m.safetensors"
    safetensors_with_header(file, 1_000_000)
    assert _shapes_json(run_cli("shapes", served.url("m.safetensors"), "-f", "json")) == _names_and_shapes(file)
    assert served.requests == 2
    assert served.sent <= file.stat().st_size


def test_get_fetches_only_the_selected_tensor(served: RangeServer) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "big": rng.standard_normal((512, 1024)).astype(np.float32),  # 2 MiB: read directly
        "other": rng.standard_normal((512, 1024)).astype(np.float32),
        "small": np.arange(7, dtype=np.int64),
    }
    save_file(tensors, served.root / "m.safetensors")
    expected = load_file(served.root / "m.safetensors")
    result = run_cli("get", served.url("m.safetensors"), "big", "-f", "json")
    assert result.code == 0, result.err
    got = np.array(json.loads(result.out)["entries"][0]["values"], dtype=np.float32)
    np.testing.assert_array_equal(got, expected["big"])
    assert served.sent <= expected["big"].nbytes + ranged.FIRST_READ
    served.reset()
    result = run_cli("get", served.url("m.safetensors"), "small", "-f", "json")
    assert json.loads(result.out)["entries"][0]["values"] == expected["small"].tolist()
    assert served.requests <= 2


def test_stats_streams_ranges(served: RangeServer) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "w": rng.standard_normal((1024, 1024)).astype(np.float32),
        "b": rng.standard_normal(64).astype(np.float32),
    }
    save_file(tensors, served.root / "m.safetensors")
    expected = load_file(served.root / "m.safetensors")
    result = run_cli("stats", served.url("m.safetensors"), "-f", "json")
    assert result.code == 0, result.err
    rows = {r["name"]: r for r in json.loads(result.out)["tensors"]}
    for name, value in expected.items():
        assert rows[name]["min"] == pytest.approx(float(value.min()))
        assert rows[name]["max"] == pytest.approx(float(value.max()))
        assert rows[name]["mean"] == pytest.approx(float(value.mean()), rel=1e-5, abs=1e-6)
    size = (served.root / "m.safetensors").stat().st_size
    assert served.sent <= size + ranged.FIRST_READ


def test_torch_zip_head_and_tail_then_local_headers(served: RangeServer) -> None:
    torch = pytest.importorskip("torch")
    state = {f"layer{i}.weight": torch.randn(128, 1024) for i in range(4)}  # 512 KiB each
    state["head.bias"] = torch.arange(10, dtype=torch.float32)
    torch.save(state, served.root / "model.pt")
    expected = torch.load(served.root / "model.pt", weights_only=True)
    served.settings.latency = 0.2  # so concurrent requests overlap
    result = run_cli("shapes", served.url("model.pt"), "-f", "json")
    assert _shapes_json(result) == {k: list(v.shape) for k, v in expected.items()}
    heads = [e.range for e in served.log[:2]]
    assert sorted(heads) == sorted([f"bytes=0-{ranged.FIRST_READ - 1}", f"bytes=-{ranged.TAIL_READ}"])
    # then the local headers the head and tail missed: one request each, concurrently
    size = (served.root / "model.pt").stat().st_size
    with zipfile.ZipFile(served.root / "model.pt") as archive:
        offsets = [i.header_offset for i in archive.infolist()]
    missed = [o for o in offsets if o - 24 >= ranged.FIRST_READ and o + 8192 <= size - ranged.TAIL_READ]
    assert missed and served.requests == 2 + len(missed)
    # head and tail together, then the local headers together
    assert served.log[0].overlap + served.log[1].overlap >= 1
    assert len(missed) < 2 or max(e.overlap for e in served.log[2:]) >= 1
    served.settings.latency = 0
    assert served.sent <= ranged.FIRST_READ + ranged.TAIL_READ + len(missed) * (8192 + 24)
    served.reset()
    for name in ("head.bias", "layer1.weight"):
        result = run_cli("get", served.url("model.pt"), name, "-f", "json")
        got = np.array(json.loads(result.out)["entries"][0]["values"], dtype=np.float32)
        np.testing.assert_array_equal(got, expected[name].numpy())


def test_sharded_model_all_shard_headers_concurrently(served: RangeServer) -> None:
    weight_map = {}
    expected = {}
    for shard in range(20):
        name = f"model-{shard + 1:05d}-of-00020.safetensors"
        tensors = {f"layers.{shard}.{k}": np.full((4, 4), shard, np.float32) for k in ("q", "k")}
        save_file(tensors, served.root / name)
        weight_map.update(dict.fromkeys(tensors, name))
        expected.update({k: list(v.shape) for k, v in tensors.items()})
    (served.root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    served.settings.latency = 0.05
    result = run_cli("shapes", served.url("model.safetensors.index.json"), "-f", "json")
    assert _shapes_json(result) == expected
    assert served.requests == 1 + 20  # the index, then one request per shard
    assert served.most_at_once > 1  # the shard headers were fetched concurrently
    served.reset()
    served.settings.latency = 0
    result = run_cli("get", served.url("model.safetensors.index.json"), "layers.13.k", "-f", "json")
    assert json.loads(result.out)["entries"][0]["values"] == np.full((4, 4), 13, np.float32).tolist()


def test_redirect_target_reused(tmp_path: Path) -> None:
    save_file({"w": np.arange(300_000, dtype=np.float32)}, tmp_path / "m.safetensors")
    with RangeServer(tmp_path) as cdn, RangeServer(tmp_path, Settings(redirect="")) as front:
        front.settings.redirect = cdn.base
        result = run_cli("get", front.url("m.safetensors"), "w", "-f", "json")
        assert result.code == 0, result.err
        assert json.loads(result.out)["entries"][0]["values"] == load_file(tmp_path / "m.safetensors")["w"].tolist()
        assert front.requests == 1  # the first range only; later ranges went straight to the target
        assert cdn.requests >= 2 and cdn.sent <= (tmp_path / "m.safetensors").stat().st_size + ranged.FIRST_READ


def test_no_range_support_refused_unless_allowed(served: RangeServer) -> None:
    save_file({"w": np.arange(10, dtype=np.float32)}, served.root / "m.safetensors")
    served.settings.ranges = False
    _one_line_error(run_cli("shapes", served.url("m.safetensors")), "range requests", "--allow-full-download")
    result = run_cli("--allow-full-download", "get", served.url("m.safetensors"), "w", "-f", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["entries"][0]["values"] == list(range(10))


def test_etag_change_between_requests(served: RangeServer) -> None:
    save_file({"w": np.arange(400_000, dtype=np.float32)}, served.root / "m.safetensors")
    served.settings.change_after = 1  # the header request sees one version, the data request another
    _one_line_error(run_cli("get", served.url("m.safetensors"), "w"), "changed", "ETag")


def test_last_modified_change_without_etag(served: RangeServer) -> None:
    save_file({"w": np.arange(400_000, dtype=np.float32)}, served.root / "m.safetensors")
    served.settings.change_after, served.settings.etag = 1, False
    _one_line_error(run_cli("get", served.url("m.safetensors"), "w"), "changed", "Last-Modified")


def test_timeout(served: RangeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    save_file({"w": np.arange(10, dtype=np.float32)}, served.root / "m.safetensors")
    served.settings.latency = 1.5
    monkeypatch.setenv(http.TIMEOUT_VARIABLE, "0.2")
    _one_line_error(run_cli("shapes", served.url("m.safetensors")), "timed out", http.TIMEOUT_VARIABLE)


def test_short_body(served: RangeServer) -> None:
    save_file({"w": np.arange(10, dtype=np.float32)}, served.root / "m.safetensors")
    served.settings.short_by = 10
    _one_line_error(run_cli("shapes", served.url("m.safetensors")), "bytes asked for")


def test_not_found_names_the_url(served: RangeServer) -> None:
    url = served.url("missing.safetensors")
    line = _one_line_error(run_cli("shapes", url), "not found (HTTP 404)")
    assert line.startswith(f"paraminspect: error: {url}: ")


@pytest.mark.parametrize(("setting", "status"), [("token", 401), ("forbidden", 403)])
def test_denied_hints_at_hf_token(
    served: RangeServer, monkeypatch: pytest.MonkeyPatch, setting: str, status: int
) -> None:
    save_file({"w": np.arange(10, dtype=np.float32)}, served.root / "m.safetensors")
    setattr(served.settings, setting, "secret" if setting == "token" else True)
    monkeypatch.setenv("HF_ENDPOINT", served.base)
    _one_line_error(run_cli("shapes", served.url("m.safetensors")), f"HTTP {status}", "HF_TOKEN")


def test_connection_refused(tmp_path: Path) -> None:
    with RangeServer(tmp_path) as gone:
        url = gone.url("m.safetensors")
    _one_line_error(run_cli("shapes", url), "cannot fetch from 127.0.0.1")


def test_credentials_never_printed(served: RangeServer) -> None:
    url = served.url("missing.safetensors").replace("http://", "http://alice:s3cr3t@") + "?signature=T0KEN"
    result = run_cli("shapes", url)
    line = _one_line_error(result, "HTTP 404")
    assert "s3cr3t" not in result.err + result.out and "T0KEN" not in result.err + result.out
    assert "alice" not in line
    assert served.auth_seen[-1] == "Basic " + __import__("base64").b64encode(b"alice:s3cr3t").decode()
    assert served.log[-1].path.endswith("?signature=T0KEN")


def test_verbose_prints_the_cost_and_local_json_has_no_remote_key(served: RangeServer) -> None:
    save_file({"w": np.arange(10, dtype=np.float32)}, served.root / "m.safetensors")
    result = run_cli("-v", "shapes", served.url("m.safetensors"))
    assert result.code == 0
    assert result.err == f"paraminspect: remote: 1 requests, {served.sent:,} bytes fetched\n"
    local = run_cli("-v", "shapes", served.root / "m.safetensors", "-f", "json")
    assert local.err == "" and "remote" not in json.loads(local.out)


def test_commands_for_local_files_only_refuse_urls(served: RangeServer) -> None:
    save_file({"w": np.arange(10, dtype=np.float32), "v": np.zeros(2, np.int8)}, served.root / "m.safetensors")
    _one_line_error(run_cli("drop", served.url("m.safetensors"), "w", "--in-place"), "local files only")
    out = served.root / "out.safetensors"
    result = run_cli("cast", served.url("m.safetensors"), "--dtype", "float16", "-o", out)
    assert result.code == 0, result.err
    assert load_file(out)["w"].tolist() == list(range(10))
    _one_line_error(run_cli("scan", served.url("m.safetensors")), "local files only")


def test_local_start_up_does_not_import_the_http_code(samples: Path) -> None:
    code = (
        "import sys; from paraminspect.cli import main; "
        f"main(['shapes', {str(samples / 'mlp.safetensors')!r}]); "
        "heavy = ('http.client', 'paraminspect.io.http', 'paraminspect.io.ranged', 'paraminspect.io.hub',"
        " 'paraminspect.io.s3', 'ssl', 'boto3', 'botocore', 'fsspec', 's3fs'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_dcp_over_http_reads_like_torch(tmp_path: Path) -> None:
    """A DCP checkpoint by its .metadata URL: the data files are its siblings on the server."""
    pytest.importorskip("torch")
    from tests.test_formats_dcp import TWO_RANKS, _dcp_load, _model_state

    expected = _dcp_load(TWO_RANKS, _model_state())
    with RangeServer(TWO_RANKS) as server:
        for name, value in expected.items():
            result = run_cli("get", server.url(".metadata"), name, "-f", "json")
            assert result.code == 0, result.err
            got = np.array(json.loads(result.out)["entries"][0]["values"], dtype=np.float32)
            np.testing.assert_array_equal(got, value.float().numpy())
        assert {e.path for e in server.log} <= {"/.metadata", "/__0_0.distcp", "/__1_0.distcp"}


def test_diff_remote_against_local(served: RangeServer) -> None:
    a = {"w": np.arange(300_000, dtype=np.float32), "b": np.zeros(3, np.float32)}
    b = {"w": a["w"].copy(), "b": np.array([0, 1, 0], np.float32)}  # one element of b differs
    save_file(a, served.root / "a.safetensors")
    save_file(b, served.root / "b.safetensors")
    same = run_cli("diff", served.url("a.safetensors"), served.root / "a.safetensors", "-q")
    assert same.code == 0, same.err
    result = run_cli("diff", served.url("a.safetensors"), served.url("b.safetensors"), "-f", "json")
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    assert doc["counts"]["values_changed"] == 1 and doc["counts"]["equal"] == 1, doc["counts"]


def test_a_missing_remote_shard_is_named_like_a_local_one(served: RangeServer) -> None:
    """Shards are opened and read concurrently; a failing one is reported in index order,
    as ``shard 'name': ...`` about the index, as for a local folder."""
    weight_map = {}
    for shard in range(4):
        name = f"model-{shard + 1:05d}-of-00004.safetensors"
        weight_map[f"layers.{shard}.w"] = name
        if shard != 2:
            save_file({f"layers.{shard}.w": np.zeros(2, np.float32)}, served.root / name)
    (served.root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    index = served.url("model.safetensors.index.json")
    line = _one_line_error(run_cli("shapes", index), "shard 'model-00003-of-00004.safetensors'", "HTTP 404")
    assert line.startswith(f"paraminspect: error: {index}: ")


def test_sharded_torch_bin_model_over_http_reads_like_torch(served: RangeServer) -> None:
    """``pytorch_model-*.bin`` shards (torch zips: pickles, read by the allow-list unpickler)
    opened and read concurrently, with the limits in force, as torch.load reads them."""
    torch = pytest.importorskip("torch")
    weight_map, expected = {}, {}
    for shard in range(5):
        name = f"pytorch_model-{shard + 1:05d}-of-00005.bin"
        state = {f"layers.{shard}.{k}": torch.full((3, shard + 1), float(shard)) for k in ("w", "b")}
        torch.save(state, served.root / name)
        weight_map.update(dict.fromkeys(state, name))
        expected.update(torch.load(served.root / name, weights_only=True))
    (served.root / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    index = served.url("pytorch_model.bin.index.json")
    assert _shapes_json(run_cli("shapes", index, "-f", "json")) == {k: list(v.shape) for k, v in expected.items()}
    result = run_cli("get", index, "layers.3.b", "-f", "json")
    assert json.loads(result.out)["entries"][0]["values"] == expected["layers.3.b"].tolist()
    from paraminspect import open_checkpoint
    from paraminspect.errors import CheckpointError
    from paraminspect.limits import Limits

    with pytest.raises(CheckpointError, match="opcodes"):  # the limits reach the shard readers' threads
        open_checkpoint(index, limits=Limits(max_pickle_opcodes=10))
