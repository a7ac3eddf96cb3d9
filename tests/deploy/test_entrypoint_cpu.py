"""The entrypoint's CPU path, for real: ``tritonllm deploy entrypoint`` with a CPU profile starts
tritonserver through the same launcher as ``tritonllm serve`` and the OpenAI frontend in front of
it (``serving.openai_port``), serves SmolLM2 on both, and on SIGTERM lets a streaming request
that is in flight finish before it exits 0, the frontend gone with the server.

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

from tritonllm.model_source import DEFAULT_MODEL_NAME
from tritonllm.serve.launcher import Ports, free_port

PROFILE = """\
name: test-cpu
model: {dir: default}
dtype: float16
parallel: {tp_size: 1, pp_size: 1}
limits: {max_batch_size: 4, max_input_len: 256, max_seq_len: 512, max_num_tokens: 256}
target: {gpu: cpu}
engine: {tokens_per_block: 16}
serving: {openai_port: %d}
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


def check_openai(port: int) -> None:
    """The frontend is ready (Triton and the ensemble are) and answers a completion."""
    url = f"http://127.0.0.1:{port}"
    wait_ready_url(f"{url}/health")
    body = {"model": DEFAULT_MODEL_NAME, "prompt": "The capital of France is",
            "max_tokens": 4, "temperature": 0}
    resp = requests.post(f"{url}/v1/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["choices"][0]["text"].strip() and answer["usage"]["completion_tokens"] == 4


def wait_ready_url(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not _ok(url):
        assert time.monotonic() < deadline, f"{url} not 200 after {timeout_s} s"
        time.sleep(0.5)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def openai_port():
    return free_port()


@pytest.fixture
def profile_file(tmp_path, openai_port):
    path = tmp_path / "cpu.yaml"
    path.write_text(PROFILE % openai_port)
    return path


def test_cpu_entrypoint_serves_and_drains_on_sigterm(tmp_path, profile_file, model_dir,
                                                     openai_port):
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
        check_openai(openai_port)

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
    for url in (f"http://127.0.0.1:{ports.http}/v2/health/ready",
                f"http://127.0.0.1:{openai_port}/health"):
        with pytest.raises(requests.ConnectionError):  # server and frontend gone, ports closed
            requests.get(url, timeout=2)
