"""Checkpoints in S3 (issue 15), through moto's S3 server on 127.0.0.1, started here.

The server is moto's own WSGI app behind werkzeug (what ``moto_server`` runs), with a
request log in front of it so requests and bytes can be counted; objects are written
with boto3 and expected values come from safetensors, torch.load and dcp_to_torch_save.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests.conftest import ROOT, run_cli
from tests.test_remote_companions import mlx_8bit_g32
from tests.test_remote_http import _names_and_shapes, _one_line_error, _shapes_json, safetensors_with_header

boto3 = pytest.importorskip("boto3")
moto_app = pytest.importorskip("moto.moto_server.werkzeug_app")
serving = pytest.importorskip("werkzeug.serving")

from paraminspect.io import ranged  # noqa: E402


@dataclass
class Logged:
    method: str
    path: str  # /bucket/key
    query: str
    range: str | None
    status: int
    sent: int


@dataclass
class S3Server:
    """moto's S3 on 127.0.0.1:<free port>, each request logged (see the module docstring)."""

    log: list[Logged] = field(default_factory=list)
    deny: bool = False  # answer every request 403 AccessDenied, as S3 does without a grant

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        backend = moto_app.DomainDispatcherApplication(moto_app.create_backend_app)
        self._server = serving.make_server(
            "127.0.0.1", 0, self._logged(backend), threaded=True, request_handler=moto_app.MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _logged(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            status = [0]

            def starting(line: str, headers: Any, *rest: Any) -> Any:
                status[0] = int(line.split(maxsplit=1)[0])
                return start_response(line, headers, *rest)

            if self.deny:
                body = b'<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
                starting("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
                chunks = [body]
            else:
                chunks = list(app(environ, starting))
            entry = Logged(
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO", ""),
                environ.get("QUERY_STRING", ""),
                environ.get("HTTP_RANGE"),
                status[0],
                sum(len(c) for c in chunks),
            )
            with self._lock:  # logged before the body goes out: a client with its bytes may look at once
                self.log.append(entry)
            yield from chunks

        return wrapped

    def __enter__(self) -> S3Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self.log.clear()

    def reads(self) -> list[Logged]:
        """The GETs of objects (not listings, not the test's own uploads)."""
        return [e for e in self.log if e.method == "GET" and "list-type" not in e.query]

    @property
    def sent(self) -> int:
        return sum(e.sent for e in self.reads())


@pytest.fixture(scope="module")
def moto_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


_buckets = itertools.count()


@dataclass
class Bucket:
    name: str
    client: Any
    server: S3Server

    def put(self, key: str, data: bytes | Path) -> str:
        body = data.read_bytes() if isinstance(data, Path) else data
        self.client.put_object(Bucket=self.name, Key=key, Body=body)
        return f"s3://{self.name}/{key}"

    def put_tree(self, folder: Path, prefix: str) -> str:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.put(f"{prefix}/{file.relative_to(folder)}", file)
        return f"s3://{self.name}/{prefix}"


@pytest.fixture
def bucket(moto_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    client = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    name = f"ckpt-{next(_buckets)}"
    client.create_bucket(Bucket=name)
    moto_server.reset()
    moto_server.deny = False
    return Bucket(name, client, moto_server)


def test_safetensors_header_in_one_ranged_get(bucket: Bucket, tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    safetensors_with_header(file, 100_000)
    url = bucket.put("run/model.safetensors", file)
    bucket.server.reset()
    result = run_cli("shapes", url, "-f", "json")
    assert _shapes_json(result) == _names_and_shapes(file)
    reads = bucket.server.reads()
    assert [(e.path, e.range) for e in reads] == [(f"/{bucket.name}/run/model.safetensors", "bytes=0-262143")]
    assert len(bucket.server.log) == 1  # no HEAD, no listing
    assert bucket.server.sent <= ranged.FIRST_READ
    assert json.loads(result.out)["remote"] == {"requests": 1, "bytes": bucket.server.sent}


def test_get_fetches_only_the_selected_tensor(bucket: Bucket, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "big": rng.standard_normal((512, 1024)).astype(np.float32),
        "other": rng.standard_normal((512, 1024)).astype(np.float32),
        "small": np.arange(7, dtype=np.int64),
    }
    save_file(tensors, tmp_path / "m.safetensors")
    expected = load_file(tmp_path / "m.safetensors")
    url = bucket.put("m.safetensors", tmp_path / "m.safetensors")
    bucket.server.reset()
    result = run_cli("get", url, "big", "-f", "json")
    assert result.code == 0, result.err
    got = np.array(json.loads(result.out)["entries"][0]["values"], dtype=np.float32)
    np.testing.assert_array_equal(got, expected["big"])
    assert bucket.server.sent <= expected["big"].nbytes + ranged.FIRST_READ
    assert all(e.range and e.status == 206 for e in bucket.server.reads())  # ranges only, never the object


def _sharded(folder: Path, shards: int) -> dict[str, list[int]]:
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {f"layers.{shard}.{k}": np.full((4, shard + 1), shard, np.float32) for k in ("q", "k")}
        save_file(tensors, folder / name)
        weight_map.update(dict.fromkeys(tensors, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    expected: dict[str, list[int]] = {}
    for name in sorted(set(weight_map.values())):
        expected.update(_names_and_shapes(folder / name))
    return expected


@pytest.mark.parametrize("slash", ["/", ""])
def test_sharded_model_under_a_prefix_reads_like_a_folder(bucket: Bucket, tmp_path: Path, slash: str) -> None:
    expected = _sharded(tmp_path / "step", 6)
    url = bucket.put_tree(tmp_path / "step", "run/step-1000")
    bucket.put("run/step-10000/other.bin", b"not this one")  # a sibling prefix sharing the name's start
    bucket.server.reset()
    result = run_cli("shapes", url + slash, "-f", "json")
    assert _shapes_json(result) == expected
    listings = [e for e in bucket.server.log if "list-type" in e.query]
    assert len(listings) == 1 and "prefix=run%2Fstep-1000%2F" in listings[0].query
    assert len(bucket.server.reads()) == 1 + 6  # the index, then one ranged GET per shard
    assert all(e.range for e in bucket.server.reads()[1:])


def test_dcp_directory_under_a_prefix_reads_like_torch(bucket: Bucket) -> None:
    pytest.importorskip("torch")
    from tests.test_formats_dcp import TWO_RANKS, _dcp_load, _model_state

    expected = _dcp_load(TWO_RANKS, _model_state())
    url = bucket.put_tree(TWO_RANKS, "dcp/step-1")
    for name, value in expected.items():
        result = run_cli("get", url, name, "-f", "json")
        assert result.code == 0, result.err
        got = np.array(json.loads(result.out)["entries"][0]["values"], dtype=np.float32)
        np.testing.assert_array_equal(got, value.float().numpy())


def test_diff_two_prefixes(bucket: Bucket, tmp_path: Path) -> None:
    a = {"w": np.arange(12, dtype=np.float32), "b": np.zeros(3, np.float32)}
    b = {"w": a["w"].copy(), "b": np.array([0, 1, 0], np.float32), "extra": np.ones(2, np.float32)}
    save_file(a, tmp_path / "a.safetensors")
    save_file(b, tmp_path / "b.safetensors")
    bucket.put("run/step-1/model.safetensors", tmp_path / "a.safetensors")
    bucket.put("run/step-2/model.safetensors", tmp_path / "b.safetensors")
    base = f"s3://{bucket.name}/run"
    result = run_cli("diff", f"{base}/step-1/", f"{base}/step-2/", "--structure", "-f", "json")
    assert result.code == 1, result.err
    assert json.loads(result.out)["counts"]["only_in_b"] == 1
    values = run_cli("diff", f"{base}/step-1", tmp_path / "b.safetensors", "-f", "json")
    assert json.loads(values.out)["counts"]["values_changed"] == 1, values.out


def test_missing_key_and_bucket_name_the_url(bucket: Bucket) -> None:
    url = f"s3://{bucket.name}/nothing/model.safetensors"
    line = _one_line_error(run_cli("shapes", url), "not found (HTTP 404)")
    assert line.startswith(f"paraminspect: error: {url}: ")
    gone = "s3://no-such-bucket-here/model.safetensors"
    line = _one_line_error(run_cli("shapes", gone), "not found (HTTP 404)", "no bucket 'no-such-bucket-here'")
    assert line.startswith(f"paraminspect: error: {gone}: ")
    _one_line_error(run_cli("shapes", f"s3://{bucket.name}/nothing-here/"), "no checkpoint in it")


def test_denied_hints_at_credentials(bucket: Bucket, tmp_path: Path) -> None:
    save_file({"w": np.arange(4, dtype=np.float32)}, tmp_path / "m.safetensors")
    url = bucket.put("m.safetensors", tmp_path / "m.safetensors")
    bucket.server.deny = True
    try:
        _one_line_error(run_cli("shapes", url), "access denied (HTTP 403", "AWS_ACCESS_KEY_ID")
    finally:
        bucket.server.deny = False


def test_changed_object_between_requests(bucket: Bucket, tmp_path: Path) -> None:
    from paraminspect import open_checkpoint
    from paraminspect.errors import CheckpointError

    save_file({"w": np.arange(400_000, dtype=np.float32)}, tmp_path / "m.safetensors")
    url = bucket.put("m.safetensors", tmp_path / "m.safetensors")
    ckpt = open_checkpoint(url)
    save_file({"w": np.arange(400_000, dtype=np.float32)[::-1].copy()}, tmp_path / "m.safetensors")
    bucket.put("m.safetensors", tmp_path / "m.safetensors")  # same size, other bytes: another ETag
    source = ckpt.sources[0]
    with pytest.raises(CheckpointError, match="ETag changed"):
        source.pread(ckpt.tensors["w"].storage.offset, 1 << 20)


def test_without_the_extra_the_error_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['botocore'] = None; from paraminspect.cli import main; "
        "sys.exit(main(['shapes', 's3://bucket/model.safetensors']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "paraminspect: error: s3://bucket/model.safetensors: reading s3:// needs botocore,"
        " which is not installed (pip install 'paraminspect[s3]')"
    ]


def test_invalid_s3_url() -> None:
    _one_line_error(run_cli("shapes", "s3://B_ad/x.safetensors"), "not a valid s3:// URL")


def test_quantization_config_in_an_s3_prefix(bucket: Bucket, tmp_path: Path) -> None:
    mlx_8bit_g32(tmp_path)
    url = bucket.put_tree(tmp_path, "mlx")
    row = json.loads(run_cli("shapes", "-f", "json", url + "/").out)["tensors"][0]
    assert (row["logical_dtype"], row["scheme"]) == ("int8", "mlx g32")
    assert [e.path for e in bucket.server.reads()].count(f"/{bucket.name}/mlx/config.json") == 1
    bucket.server.reset()
    (tmp_path / "config.json").unlink()
    bare = bucket.put_tree(tmp_path, "bare")  # no config: the listing says so, no request for it
    run_cli("shapes", "-f", "json", bare + "/")
    assert all("config.json" not in e.path for e in bucket.server.log)
