"""A stream left early is read to its end before it is cancelled or dropped, and never for
longer than STOP_DRAIN_S (here shortened): against a gRPC call that never ends and an HTTP
server that stops sending mid-stream."""

import socket
import threading
import time

import grpc
import pytest
import requests

from tritonllm.client import _grpc, _http


class EndlessCall:
    """The parts of a gRPC stream call ``_grpc._end`` uses; responses until cancelled."""

    def __init__(self, responses: int | None):
        self.left, self.cancelled = responses, threading.Event()

    def is_active(self) -> bool:
        return not self.cancelled.is_set() and self.left != 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.left == 0:
            raise StopIteration
        if self.cancelled.wait(0.01):
            raise grpc.RpcError("cancelled")
        if self.left is not None:
            self.left -= 1
        return object()

    def cancel(self) -> None:
        self.cancelled.set()


def test_a_stream_that_ends_is_read_to_its_end(monkeypatch):
    monkeypatch.setattr(_grpc, "STOP_DRAIN_S", 5.0)
    call = EndlessCall(responses=3)
    _grpc._end(call)
    assert call.left == 0  # every response was read before the (no-op) cancel


def test_a_stream_that_does_not_end_is_cancelled_after_the_drain_time(monkeypatch):
    monkeypatch.setattr(_grpc, "STOP_DRAIN_S", 0.2)
    call = EndlessCall(responses=None)
    start = time.monotonic()
    _grpc._end(call)
    assert call.cancelled.is_set() and time.monotonic() - start < 2.0


@pytest.fixture
def stalled_stream_url():
    """A server that answers a POST with one SSE event, then sends nothing more."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        event = b'data: {"text_output": "a"}\n\n'
        conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        held.append(conn)  # kept open, silent

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    for conn in held:
        conn.close()
    listener.close()


def test_an_http_stream_that_stalls_is_dropped_after_the_drain_time(monkeypatch,
                                                                   stalled_stream_url):
    monkeypatch.setattr(_http, "STOP_DRAIN_S", 0.2)
    response = requests.post(stalled_stream_url, stream=True, timeout=(5, 60))
    lines = response.iter_lines()
    assert next(lines).startswith(b"data:")
    start = time.monotonic()
    _http._drain(response, lines)
    assert time.monotonic() - start < 2.0  # not the 60 s read timeout
    response.close()
