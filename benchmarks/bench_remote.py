"""Benchmark: shapes of the 405B-shaped 191-shard model on a fake Hub with 50 ms latency.

The sparse model of bench_sharded.py is served by the tests' range server
(tests/rangeserver.py) behind HF_ENDPOINT, each request delayed 50 ms; side by side:
``paraminspect shapes hf://org/llama-405b`` and
``huggingface_hub.get_safetensors_metadata("org/llama-405b")``, each run
``BENCH_ROUNDS`` times (interleaved, so both see the same machine load), best and
median wall time, requests (per shard) and bytes as the server counted them, and the
ratio. Target: paraminspect <= 1.5 s and <= 2 requests per shard.

    .venv/bin/python benchmarks/bench_remote.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sharded import WORKDIR, build  # noqa: E402

from tests.rangeserver import RangeServer, Settings  # noqa: E402

LATENCY = float(os.environ.get("BENCH_LATENCY", "0.05"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SHARDS = 191
TARGET_S = 1.5


def main() -> None:
    hub = WORKDIR.parent / "paraminspect-fake-hub"
    (hub / "org").mkdir(parents=True, exist_ok=True)
    repo = hub / "org" / "llama-405b"
    if not repo.exists():
        repo.symlink_to(build(WORKDIR))
    with RangeServer(hub, Settings(hub=True, latency=LATENCY)) as server:
        env = {
            **os.environ,
            "HF_ENDPOINT": server.base,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(hub / ".hf-home"),
        }
        env.pop("HF_TOKEN", None)
        contenders = [
            (
                "paraminspect shapes",
                [str(Path(sys.executable).parent / "paraminspect"), "-v", "shapes", "hf://org/llama-405b"],
            ),
            (
                "huggingface_hub.get_safetensors_metadata",
                [sys.executable, "-c", "import huggingface_hub as h; h.get_safetensors_metadata('org/llama-405b')"],
            ),
        ]
        times: dict[str, list[float]] = {label: [] for label, _ in contenders}
        cost: dict[str, tuple[int, int, str]] = {}
        for _ in range(ROUNDS):
            for label, command in contenders:
                server.reset()
                start = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=600)
                times[label].append(time.perf_counter() - start)
                status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
                cost[label] = (server.requests, server.sent, status)
        for label, _ in contenders:
            requests, sent, status = cost[label]
            best, median = min(times[label]), statistics.median(times[label])
            print(
                f"{label}: best {best:.2f} s, median {median:.2f} s, {requests} requests"
                f" ({requests / SHARDS:.2f} per shard), {sent:,} bytes ({status})"
            )
        ours, theirs = (statistics.median(times[label]) for label, _ in contenders)
        verdict = "within" if ours <= TARGET_S and cost[contenders[0][0]][0] <= 2 * SHARDS else "OVER"
        print(f"ratio (median): huggingface_hub / paraminspect = {theirs / ours:.1f}x; target {TARGET_S} s: {verdict}")


if __name__ == "__main__":
    main()
