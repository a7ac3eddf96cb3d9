"""The exposed surface, on real processes: loopback binds by default, Triton's admin APIs need
the key, and the public entry point (the OpenAI frontend) refuses oversized and chunked bodies
and keeps serving."""

from __future__ import annotations

import http.client
import json
import select
import socket
import urllib.error
import urllib.parse
import urllib.request
from multiprocessing import shared_memory
from pathlib import Path

import pytest

from tritonllm.openai.server import FrontendProcess
from tritonllm.openai.settings import FrontendSettings
from tritonllm.serve.launcher import ADMIN_HEADER, Ports, TritonServer, free_port

KEY = "test-admin-key"


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    """A real tritonserver over an empty repository (starts in seconds), default host."""
    work = tmp_path_factory.mktemp("surface")
    (work / "repo").mkdir()
    with TritonServer(work / "repo", Ports.free(), log_file=work / "log", admin_key=KEY) as s:
        yield s


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# 127.0.0.1 in /proc/net/tcp, and as an IPv4-mapped IPv6 address in /proc/net/tcp6 (gRPC)
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}


def _listen_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_every_triton_port_binds_loopback_by_default(bare_server):
    for port in (bare_server.ports.http, bare_server.ports.grpc, bare_server.ports.metrics):
        assert _listen_addresses(port), port
        assert _listen_addresses(port) <= LOOPBACK, port  # not 0.0.0.0 / ::


def test_shared_memory_registration_needs_the_admin_key(bare_server):
    region = shared_memory.SharedMemory(create=True, size=64)
    url = f"http://{bare_server.http_url}/v2/systemsharedmemory/region/r1"
    spec = {"key": f"/{region.name}", "offset": 0, "byte_size": 64}
    try:
        status, text = _post(f"{url}/register", spec)
        assert status == 403 and ADMIN_HEADER in text
        admin = {ADMIN_HEADER: KEY}
        assert _post(f"{url}/register", spec, admin)[0] == 200  # as Triton documents
        status_url = f"http://{bare_server.http_url}/v2/systemsharedmemory/status"
        with urllib.request.urlopen(urllib.request.Request(status_url, headers=admin)) as resp:
            assert json.loads(resp.read())[0]["name"] == "r1"
        assert _post(f"{url}/unregister", {}, admin)[0] == 200
    finally:
        region.close()
        region.unlink()


def test_repository_logging_and_trace_need_the_admin_key(bare_server):
    base = f"http://{bare_server.http_url}/v2"
    for path in ("/repository/index", "/logging", "/trace/setting"):
        assert _post(base + path, {})[0] == 403, path
    assert _post(base + "/repository/index", {}, {ADMIN_HEADER: KEY})[0] == 200


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    """The OpenAI frontend (no Triton behind it: the limit acts before any engine call)."""
    settings = FrontendSettings(triton_url=f"127.0.0.1:{free_port()}", port=free_port())
    log = tmp_path_factory.mktemp("frontend") / "log"
    with FrontendProcess(settings, log_file=log) as process:
        yield process


def _chunked_post(url: str, total: int, chunk: int = 64 * 1024) -> tuple[int, bytes]:
    """POST ``total`` bytes with ``Transfer-Encoding: chunked``; returns (status, body)."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(total // chunk):
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered before the body ended: stop sending
                sock.sendall(b"%x\r\n" % chunk + b"a" * chunk + b"\r\n")
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        try:
            while chunk_in := sock.recv(65536):
                reply += chunk_in
        except ConnectionResetError:
            pass  # closed after the answer
    assert reply, "no answer at all"
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_large_chunked_body_is_refused_and_the_frontend_survives(frontend):
    status, body = _chunked_post(frontend.url, total=3_600_000)
    assert status == 413
    assert "max_body_bytes (1048576 bytes)" in json.loads(body)["error"]["message"]
    with urllib.request.urlopen(f"{frontend.url}/v1/models", timeout=10) as resp:
        assert resp.status == 200


def test_a_declared_oversized_body_is_refused_before_it_is_read(frontend):
    # Only the headers are sent: the refusal must come from the declared length alone (sending
    # the body too races the server closing the connection, a broken pipe on the client).
    url = urllib.parse.urlsplit(frontend.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/completions")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2 << 20))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_a_small_body_still_reaches_the_app(frontend):
    status, text = _post(f"{frontend.url}/v1/completions", {"model": "nope", "prompt": "hi"})
    assert status == 404 and "nope" in text  # parsed by the app: model not found
