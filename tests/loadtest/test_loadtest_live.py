"""End to end against the REAL tritonserver (the session fixture ``triton_server``).

Each run is short (seconds, a few users, a few output tokens: the CPU model makes ~20 tok/s in
total here). The server's own counters are the reference: Triton's
``nv_inference_request_success`` and the CPU engine's ``tritonllm_generation_tokens_total``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tritonllm.cli import main as tritonllm_main
from tritonllm.loadtest.report import load_summary, read_samples
from tritonllm.loadtest.runner import LOADTEST_DIR, LocustRun
from tritonllm.loadtest.slo import SLO_FAILED_EXIT_CODE
from tritonllm.serve.launcher import free_port

IN_TOKENS, OUT_TOKENS = 24, 6
WORKLOAD = f"input_tokens={IN_TOKENS},output_tokens={OUT_TOKENS},num_prompts=8"


def loopback(url: str) -> str:
    return url.replace("localhost", "127.0.0.1")


def counter(metrics_url: str, name: str, model: str) -> float:
    text = urllib.request.urlopen(loopback(metrics_url), timeout=10).read().decode()
    match = re.search(rf'^{name}\{{model="{model}"[^}}]*\}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {model} not on the metrics endpoint"
    return float(match.group(1))


class ServerCounts:
    """Deltas of the server's counters over a run (counters settle just after the last reply)."""

    def __init__(self, server, model="ensemble"):
        self.url, self.model = server.metrics_url, model
        self.before = self._read()

    def _read(self):
        return (counter(self.url, "nv_inference_request_success", self.model),
                counter(self.url, "tritonllm_generation_tokens_total", "tensorrt_llm"))

    def delta(self, expected_requests: int) -> tuple[int, int]:
        deadline = time.monotonic() + 10
        while True:
            now = self._read()
            requests = int(now[0] - self.before[0])
            if requests >= expected_requests or time.monotonic() > deadline:
                return requests, int(now[1] - self.before[1])
            time.sleep(0.2)


def check_run(out: Path, counts: ServerCounts, user_kind: str) -> dict:
    doc = load_summary(out)
    records = read_samples(out / "samples.jsonl")
    summary = doc["summary"]
    assert summary["failed"] == 0, summary["errors"]
    assert summary["requests"] == len(records) >= 2
    server_requests, server_tokens = counts.delta(summary["requests"])
    assert summary["requests"] == server_requests
    assert summary["output_tokens_total"] == server_tokens
    for r in records:
        assert r.user == user_kind
        assert r.output_tokens == OUT_TOKENS and r.input_tokens == IN_TOKENS
        if r.streamed:
            assert 0 < r.ttft <= r.e2e
            assert sum(r.chunk_tokens) <= r.output_tokens
    return doc


def test_headless_stream_run_matches_the_server(triton_server, tmp_path, pool_cache):
    """Via the CLI: HTTP SSE user, closed loop, every report file; an unmeetable SLO -> exit 3."""
    out = tmp_path / "run"
    counts = ServerCounts(triton_server)
    code = tritonllm_main([
        "loadtest", "run", "--user", "http-stream",
        "--host", "http://" + loopback(triton_server.http_url), "-u", "2", "-t", "6s",
        "--workload", WORKLOAD, "--model-dir", str(triton_server.model_dir),
        "--slo", "ttft=1us,attainment=50%", "--out", str(out), "--", "--only-summary"])
    assert code == SLO_FAILED_EXIT_CODE
    doc = check_run(out, counts, "http_stream")
    assert doc["slo"]["good"] == 0 and not doc["slo"]["passed"]
    for name in ("summary.md", "ttft_itl.png", "latency_over_time.png",
                 "throughput_over_time.png", "locust.html", "locust_stats.csv"):
        assert (out / name).stat().st_size > 0, name
    latency = doc["summary"]["latency_ms"]
    assert latency["ttft"]["count"] == doc["summary"]["requests"]
    assert latency["itl"]["count"] == sum(len(r.itl) for r in read_samples(out / "samples.jsonl"))


@pytest.mark.parametrize("user, kind, model, rate", [
    ("http", "http_generate", "ensemble", 1.5),      # open loop: Poisson arrivals
    ("engine", "grpc_engine", "tensorrt_llm", 0.0),  # closed loop
])
def test_generate_and_engine_users(triton_server, tmp_path, pool_cache, user, kind, model, rate):
    host = loopback(triton_server.grpc_url if user == "engine" else
                    "http://" + triton_server.http_url)
    run = LocustRun(out_dir=str(tmp_path), user=user, host=host, users=2, run_time="6s",
                    workload=WORKLOAD, request_rate=rate, model_dir=str(triton_server.model_dir),
                    slo="e2e=10m", extra_args=("--only-summary", "--server-metrics",
                                               triton_server.metrics_url))
    counts = ServerCounts(triton_server, model)
    done = subprocess.run(run.command(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = check_run(tmp_path, counts, kind)
    assert doc["slo"]["passed"]
    server = doc["run"]["server"]  # what the engine counted over the run
    assert server["generated_tokens"] == doc["summary"]["output_tokens_total"]
    assert server["steps"] > 0 and server["spec_drafts"] == 0
    assert server["spec_acceptance_rate"] is None  # speculation is off on this server


def test_distributed_master_and_two_workers(triton_server, tmp_path, pool_cache):
    """gRPC streaming user; workers get only -f and --worker: the options and the prompt pool
    come from the master; the merged summary must count every request the server served."""
    port = free_port()
    locustfile = str(LOADTEST_DIR / "grpc_stream.py")
    locust = [sys.executable, "-m", "locust", "-f", locustfile]
    master = locust + [
        "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", "2", "--headless", "-u", "2", "-r", "2", "-t", "8s",
        "--stop-timeout", "60", "-H", loopback(triton_server.grpc_url), "--workload", WORKLOAD,
        "--model-dir", str(triton_server.model_dir), "--report-dir", str(tmp_path),
        "--progress-interval", "3", "--only-summary"]
    worker = locust + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                       "--model-dir", str(triton_server.model_dir)]
    counts = ServerCounts(triton_server)
    procs = [subprocess.Popen(master, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    procs += [subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for _ in range(2)]
    try:
        log, _ = procs[0].communicate(timeout=240)
        for proc in procs[1:]:
            proc.wait(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert procs[0].returncode == 0, log[-3000:]
    assert "2 workers connected" in log and "no final samples" not in log
    doc = check_run(tmp_path, counts, "grpc_stream")
    assert doc["run"]["workload"] == f"input {IN_TOKENS}, output {OUT_TOKENS} tokens"
    assert json.loads((tmp_path / "summary.json").read_text())["summary"]["succeeded"] >= 4


def test_grpc_stream_user_in_open_loop_keeps_every_stream_answered(triton_server, tmp_path,
                                                                   pool_cache):
    """Open loop faster than the server: more gRPC streams open at once than gevent's default
    threadpool holds (10), where grpcio waits for each channel's events. Every request the
    server finished must reach the report, answered."""
    run = LocustRun(out_dir=str(tmp_path), user="grpc", host=loopback(triton_server.grpc_url),
                    users=2, run_time="3s", workload="input_tokens=24,output_tokens=32",
                    request_rate=10.0, stop_timeout=30, model_dir=str(triton_server.model_dir),
                    extra_args=("--only-summary",))
    counts = ServerCounts(triton_server)
    done = subprocess.run(run.command(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = load_summary(tmp_path)["summary"]
    assert summary["failed"] == 0, summary["errors"]
    assert summary["requests"] == counts.delta(summary["requests"])[0] >= 20
    records = read_samples(tmp_path / "samples.jsonl")
    events = sorted([(r.start, 1) for r in records] + [(r.start + r.e2e, -1) for r in records])
    open_at_once = max(sum(step for _, step in events[:i + 1]) for i in range(len(events)))
    assert open_at_once > 10  # beyond gevent's default pool, or this test proves nothing
