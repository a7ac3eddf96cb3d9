"""``tritonllm serve`` when something dies or a client walks away, on a real process tree.

- The engine's stub is SIGKILLed while requests stream: Triton 2.51 would keep reporting ready
  and leave the requests hanging (see tritonllm.serve.watchdog); serve must notice, say which
  stub died, stop the server (the streams then fail with a connection error instead of hanging)
  and exit with EXIT_UNHEALTHY, leaving no process behind.
- SIGTERM with an abandoned ``generate_stream``: serve exits 0 within the grace period plus the
  launcher's kill margin, stopping the OpenAI frontend it started beside Triton, leaving no
  stub or frontend behind and no port open.

Deadlines here detect hangs only (the machine is shared); none asserts a speed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading

import requests

from tests.serve.processes import wait_gone
from tritonllm.client import Client, ConnectionError, GenerationOptions, TritonLLMError
from tritonllm.client._http import generate_path, json_body
from tritonllm.client._request import build_request
from tritonllm.model_source import DEFAULT_MODEL_NAME
from tritonllm.serve.cpu import EXIT_UNHEALTHY
from tritonllm.serve.launcher import KILL_MARGIN_S, Ports, free_port

HANG_S = 300
LONG = dict(max_tokens=1500, min_tokens=1500)  # never ends on its own during the test
GRACE_S = 5
TEARDOWN_S = 30  # serve stopping the frontend and exiting, on a busy 2-core machine


def engine_stub(tree: dict[int, str]) -> int:
    return next(pid for pid, cmd in tree.items()
                if "triton_python_backend_stub" in cmd and "tensorrt_llm/1/model.py" in cmd)


class Stream(threading.Thread):
    """One long streamed request; ``outcome``: "completed" or the client's exception."""

    def __init__(self, protocol: str, url: str):
        super().__init__(daemon=True)
        self.protocol, self.url = protocol, url
        self.first_chunk = threading.Event()
        self.outcome: object = None

    def run(self) -> None:
        try:
            with Client(protocol=self.protocol, url=self.url, timeout=HANG_S) as client:
                for _ in client.stream("Tell me a long story about a lighthouse.", **LONG):
                    self.first_chunk.set()
            self.outcome = "completed"
        except TritonLLMError as exc:
            self.outcome = exc


def test_a_killed_engine_stub_fails_the_streams_and_serve_exits_with_the_reason(launch):
    ports = Ports.free()
    proc, tree = launch(0, ports=ports)
    stub = engine_stub(tree)
    streams = [Stream("http", f"127.0.0.1:{ports.http}"),
               Stream("grpc", f"127.0.0.1:{ports.grpc}")]
    for stream in streams:
        stream.start()
    assert all(stream.first_chunk.wait(HANG_S) for stream in streams)

    os.kill(stub, signal.SIGKILL)

    code = exit_code(proc)
    report = proc.stderr.read()
    assert code == EXIT_UNHEALTHY, report
    assert f"model instance tensorrt_llm_0_0 (pid {stub}) died" in report, report
    for stream in streams:
        stream.join(HANG_S)
        assert not stream.is_alive()
        assert isinstance(stream.outcome, ConnectionError), (stream.protocol, stream.outcome)
    assert wait_gone(tree) == []


def exit_code(proc) -> int | None:
    """serve's exit status; None (after killing it, so its output can be read) on a hang."""
    try:
        return proc.wait(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def abandon_a_stream(http_port: int) -> None:
    """Start a long ``generate_stream``, read its first event, close the connection."""
    request = build_request("ensemble", "Tell me a long story.", GenerationOptions(**LONG),
                            stream=True, chat=False, request_id=None)
    body = json.dumps(json_body(request)).encode()
    head = (f"POST {generate_path('ensemble', True)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", http_port), timeout=HANG_S) as sock:
        sock.sendall(head.encode() + body)
        received = b""
        while b"data:" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the stream: {received!r}"
            received += chunk


def test_sigterm_with_an_abandoned_stream_exits_within_the_grace_period(launch):
    """Also ``serve``'s OpenAI frontend: started beside Triton, stopped with it on SIGTERM."""
    ports, openai_port = Ports.free(), free_port()
    proc, tree = launch(openai_port, "--grace-period", str(GRACE_S), ports=ports)
    assert any("tritonllm.openai" in cmd for cmd in tree.values()), tree
    models = requests.get(f"http://127.0.0.1:{openai_port}/v1/models", timeout=10).json()
    assert models["data"][0]["id"] == DEFAULT_MODEL_NAME
    abandon_a_stream(ports.http)

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=GRACE_S + KILL_MARGIN_S + TEARDOWN_S) == 0
    banner = proc.stderr.read()  # the rest of the ready banner, then the stop
    assert f"OpenAI  http://127.0.0.1:{openai_port}/v1" in banner  # loopback by default
    assert wait_gone(tree) == []
    assert engine_stub(tree) in tree  # it was there, and is gone now
    for port in (openai_port, ports.http):
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            raise AssertionError(f"port {port} still answers after serve stopped")
        except requests.ConnectionError:
            pass
