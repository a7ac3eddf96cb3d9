"""The entrypoint's CPU path, for real: ``tritonllm deploy entrypoint`` with a CPU profile starts
tritonserver through the same launcher as ``tritonllm serve``, serves SmolLM2, and on SIGTERM
lets a streaming request that is in flight finish before it exits 0.

This is the one slow test of tests/deploy (a real server start, ~15-30 s).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

from tritonllm.serve.launcher import Ports

PROFILE = """\
name: test-cpu
model: {dir: default}
dtype: float16
parallel: {tp_size: 1, pp_size: 1}
limits: {max_batch_size: 4, max_input_len: 256, max_seq_len: 512, max_num_tokens: 256}
target: {gpu: cpu}
engine: {tokens_per_block: 16}
"""
NEW_TOKENS = 32


def wait_ready(proc: subprocess.Popen, url: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"entrypoint exited early with status {proc.returncode}"
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"server not ready after {timeout_s} s")


def stream_events(http_port: int, first_chunk: threading.Event, events: list) -> None:
    body = {"text_input": "Write a long story about a lighthouse keeper.",
            "max_tokens": NEW_TOKENS, "min_tokens": NEW_TOKENS, "stream": True,
            "id": uuid.uuid4().hex, "return_num_output_tokens": True}
    url = f"http://127.0.0.1:{http_port}/v2/models/ensemble/generate_stream"
    with requests.post(url, json=body, stream=True, timeout=300) as resp:
        events.append({"status": resp.status_code})
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                events.append(json.loads(line[len(b"data: "):]))
                first_chunk.set()
    first_chunk.set()


@pytest.fixture
def profile_file(tmp_path):
    path = tmp_path / "cpu.yaml"
    path.write_text(PROFILE)
    return path


def test_cpu_entrypoint_serves_and_drains_on_sigterm(tmp_path, profile_file, model_dir):
    ports = Ports.free()
    argv = [sys.executable, "-m", "tritonllm.cli", "deploy", "entrypoint",
            f"--profile={profile_file}", f"--http-port={ports.http}",
            f"--grpc-port={ports.grpc}", f"--metrics-port={ports.metrics}",
            f"--repo-dir={tmp_path / 'repo'}", f"--log-file={tmp_path / 'triton.log'}"]
    proc = subprocess.Popen(argv, stderr=open(tmp_path / "entrypoint.log", "wb"))
    try:
        wait_ready(proc, f"http://127.0.0.1:{ports.http}/v2/health/ready")
        # The repository was rendered from the profile's limits.
        config = (tmp_path / "repo" / "preprocessing" / "config.pbtxt").read_text()
        assert '"max_seq_len"' in config and 'string_value: "512"' in config

        first_chunk, events = threading.Event(), []
        client = threading.Thread(target=stream_events, args=(ports.http, first_chunk, events))
        client.start()
        assert first_chunk.wait(120), "no streamed token within 120 s"
        proc.send_signal(signal.SIGTERM)  # mid-request, as `docker stop` / a pod deletion
        client.join(180)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "entrypoint.log").read_text(errors="replace")
    assert events and events[0]["status"] == 200, log
    chunks = events[1:]
    assert all("error" not in e for e in chunks), chunks
    assert chunks[-1]["num_output_tokens"] == NEW_TOKENS, (chunks[-1], log)
    assert "".join(e["text_output"] for e in chunks).strip()
    with pytest.raises(requests.ConnectionError):  # the server is gone, its ports closed
        requests.get(f"http://127.0.0.1:{ports.http}/v2/health/ready", timeout=2)
