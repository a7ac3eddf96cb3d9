"""Error mapping: HTTP statuses, gRPC codes and error bodies become the client's exceptions,
carrying the server's message."""

import asyncio
import socket

import pytest

from tritonllm.client import (
    AsyncClient,
    Client,
    ConnectionError,
    InvalidRequestError,
    ServerBusyError,
    ServerError,
    TimeoutError,
)
from tritonllm.client._errors import error_from_grpc, error_from_http
from tritonllm.client._http import error_from_body


@pytest.mark.parametrize("status, cls", [
    (400, InvalidRequestError), (422, InvalidRequestError), (404, ServerError),
    (500, ServerError), (503, ServerBusyError),
])
def test_http_status_picks_the_class_and_keeps_message_and_status(status, cls):
    error = error_from_http(status, "top_p: must be in (0, 1], got 2.0")
    assert type(error) is cls
    assert error.message == "top_p: must be in (0, 1], got 2.0"
    assert error.http_status == status and error.grpc_code is None
    assert str(error) == f"[{status}] top_p: must be in (0, 1], got 2.0"


@pytest.mark.parametrize("code", [None, "UNAVAILABLE"])
def test_a_full_queue_is_server_busy(code):
    ours = "in ensemble 'ensemble', max_queue_size: server busy, 8 requests already waiting " \
           "(Maximum queue size of 8 reached; Exceeds maximum queue size); retry later"
    tritons = "Exceeds maximum queue size"
    for message in (ours, tritons):
        error = error_from_grpc(code, message)
        assert type(error) is ServerBusyError and isinstance(error, ServerError)


def test_an_in_band_internal_error_is_the_servers_fault():
    error = error_from_grpc(None, "in ensemble 'ensemble', internal error: RuntimeError('x')")
    assert type(error) is ServerError


@pytest.mark.parametrize("code, cls", [
    ("INVALID_ARGUMENT", InvalidRequestError), ("OUT_OF_RANGE", InvalidRequestError),
    ("INTERNAL", ServerError), ("NOT_FOUND", ServerError), ("UNIMPLEMENTED", ServerError),
    ("UNAVAILABLE", ConnectionError), ("DEADLINE_EXCEEDED", TimeoutError),
    (None, InvalidRequestError),  # in-band: the request's fault (admission or a named field)
])
def test_grpc_code_picks_the_class(code, cls):
    error = error_from_grpc(code, "message")
    assert type(error) is cls
    if isinstance(error, ServerError):
        assert error.grpc_code == code and error.message == "message"


@pytest.mark.parametrize("body", [
    b'{"error":"max_tokens: must be >= 1, got 0"}',
    b'data: {"error":"max_tokens: must be >= 1, got 0"}\n\n',
])
def test_error_bodies_json_or_sse_yield_the_server_message(body):
    error = error_from_body(400, body)
    assert isinstance(error, InvalidRequestError)
    assert error.message == "max_tokens: must be >= 1, got 0"


def test_a_non_json_error_body_is_kept_as_text():
    error = error_from_body(502, b"<html>Bad Gateway</html>\n")
    assert type(error) is ServerError and error.message == "<html>Bad Gateway</html>"


@pytest.fixture
def closed_port():
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_no_server_is_a_connection_error_sync(protocol, closed_port):
    with Client(protocol=protocol, url=f"127.0.0.1:{closed_port}", connect_timeout=2) as client:
        with pytest.raises(ConnectionError):
            client.generate("hi", max_tokens=1)
        with pytest.raises(ConnectionError):
            list(client.stream("hi", max_tokens=1))
        with pytest.raises(ConnectionError):
            client.health()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_no_server_is_a_connection_error_async(protocol, closed_port):
    async def scenario():
        async with AsyncClient(protocol=protocol, url=f"127.0.0.1:{closed_port}",
                               connect_timeout=2) as client:
            with pytest.raises(ConnectionError):
                await client.generate("hi", max_tokens=1)
            with pytest.raises(ConnectionError):
                [chunk async for chunk in client.stream("hi", max_tokens=1)]
            with pytest.raises(ConnectionError):
                await client.ready()

    asyncio.run(scenario())


@pytest.fixture
def silent_server():
    """A local socket that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_server_that_never_answers_is_a_timeout(protocol, silent_server):
    url = f"127.0.0.1:{silent_server}"
    with Client(protocol=protocol, url=url, timeout=0.5, connect_timeout=0.5) as client:
        with pytest.raises(TimeoutError):
            client.generate("hi", max_tokens=1)

    async def scenario():
        async with AsyncClient(protocol=protocol, url=url, timeout=0.5,
                               connect_timeout=0.5) as client:
            with pytest.raises(TimeoutError):
                await client.generate("hi", max_tokens=1)

    asyncio.run(scenario())
