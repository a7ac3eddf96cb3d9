"""``tritonllm serve`` starts the OpenAI frontend beside Triton and stops it with the server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import requests

from tests.conftest import TEST_ENGINE
from tests.serve.processes import wait_for_line
from tritonllm.serve.launcher import Ports, free_port


def _serve_command(ports: Ports, openai_port: int, repo_dir) -> list[str]:
    e = TEST_ENGINE
    return [sys.executable, "-m", "tritonllm.cli", "serve", "--http-port", str(ports.http),
            "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
            "--openai-port", str(openai_port), "--repo-dir", str(repo_dir),
            "--kv-cache-tokens", str(e.kv_cache_tokens), "--max-seq-len", str(e.max_seq_len),
            "--max-input-len", str(e.max_input_len), "--num-threads", "1"]


def _wait_ready(proc: subprocess.Popen, url: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready at {url} (serve exited: {proc.poll()})")


def test_serve_starts_the_frontend_and_stops_it_on_sigterm(tmp_path):
    ports, openai_port = Ports.free(), free_port()
    proc = subprocess.Popen(_serve_command(ports, openai_port, tmp_path / "repo"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # The banner, not /health: the frontend answers just before serve prints it.
        banner = wait_for_line(proc.stderr, "Ctrl-C stops the server")
        _wait_ready(proc, f"http://localhost:{openai_port}/health")
        models = requests.get(f"http://localhost:{openai_port}/v1/models", timeout=10).json()
        assert models["data"][0]["id"] == "SmolLM2-135M-Instruct"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    banner += proc.stderr.read()
    assert f"OpenAI  http://127.0.0.1:{openai_port}/v1" in banner  # loopback by default
    for port in (openai_port, ports.http):
        try:
            requests.get(f"http://localhost:{port}/", timeout=2)
            raise AssertionError(f"port {port} still answers after serve stopped")
        except requests.ConnectionError:
            pass
