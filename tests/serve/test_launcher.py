"""The launcher's own decisions, without starting a server (the server tests start real ones)."""

from __future__ import annotations

import socket
import sys

import pytest

from tritonllm.serve.launcher import Ports, LaunchError, TritonServer, backend_dir, server_env


def test_backend_dir_holds_the_python_backend_and_this_interpreters_stub():
    python = backend_dir() / "python"
    assert (python / "libtriton_python.so").is_file()
    assert (python / "triton_python_backend_stub").is_file()
    assert f"py{sys.version_info.major}.{sys.version_info.minor}" in str(backend_dir())


def test_environment_puts_this_venv_first_and_the_bundled_libraries_on_the_path():
    env = server_env()
    assert env["PATH"].split(":")[0] == str(__import__("pathlib").Path(sys.executable).parent)
    assert "nvidia_pytriton.libs" in env["LD_LIBRARY_PATH"]


def test_command_line_names_every_port_and_the_repository(tmp_path):
    server = TritonServer(tmp_path, Ports(1, 2, 3))
    command = " ".join(server.command())
    for flag in (f"--model-repository={tmp_path}", "--http-port=1", "--grpc-port=2",
                 "--metrics-port=3", "--backend-directory="):
        assert flag in command


def test_a_busy_port_is_refused_with_a_hint(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        server = TritonServer(tmp_path, Ports(busy, busy + 1, busy + 2))
        with pytest.raises(LaunchError, match=f"port {busy} is already in use"):
            server.start(timeout_s=5)


def test_a_broken_repository_fails_fast_with_the_log(tmp_path):
    (tmp_path / "repo" / "broken").mkdir(parents=True)
    (tmp_path / "repo" / "broken" / "config.pbtxt").write_text('name: "broken" backend: "nope"')
    server = TritonServer(tmp_path / "repo", Ports.free(), log_file=tmp_path / "log")
    with pytest.raises(LaunchError, match="exited with status"):
        server.start(timeout_s=60)
    assert (tmp_path / "log").read_text()
