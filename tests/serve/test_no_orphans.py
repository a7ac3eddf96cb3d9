"""``tritonllm serve`` as a real process tree: whatever ends the launcher, no tritonserver, no
backend stub and no frontend stays behind (checked by pid); a server that dies is reported; a
port held by a stale process is named with its pid. Deadlines only detect hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.serve.processes import descendants, serve_command, wait_for_line, wait_gone
from tritonllm.serve.launcher import Ports, free_port


@pytest.fixture
def launch(tmp_path):
    """Start ``tritonllm serve`` in its own process group, wait for "ready", return (proc,
    {pid: cmdline} of its tree); anything left is SIGKILLed afterwards."""
    started = []

    def start(openai_port: int = 0):
        proc = subprocess.Popen(serve_command(Ports.free(), tmp_path / "repo", openai_port),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        started.append(proc)
        wait_for_line(proc.stderr, "[tritonllm] ready")
        tree = descendants(proc.pid)
        assert any("tritonserver" in cmd for cmd in tree.values()), tree
        assert any("triton_python_backend_stub" in cmd for cmd in tree.values()), tree
        return proc, tree

    yield start
    for proc in started:
        for pid in [*descendants(proc.pid), proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def test_kill_9_of_the_launcher_leaves_no_server_stub_or_frontend(launch):
    proc, tree = launch(openai_port=free_port())
    assert any("tritonllm.openai" in cmd for cmd in tree.values()), tree
    proc.kill()
    proc.wait()
    assert wait_gone(tree) == [], {pid: tree[pid] for pid in wait_gone(tree, 1)}


def test_sigterm_to_the_process_group_stops_everything(launch):
    """What ``kill -- -PGID`` on ``make serve`` does; make then forwards a second SIGTERM."""
    proc, tree = launch()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    assert wait_gone(tree) == []


def test_a_killed_tritonserver_makes_serve_exit_non_zero_with_the_reason(launch):
    proc, tree = launch()
    server = next(pid for pid, cmd in tree.items() if "bin/tritonserver" in cmd)
    os.kill(server, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    report = proc.stderr.read()
    assert f"tritonserver (pid {server}) was killed by signal SIGKILL" in report
    assert "last lines of" in report
    assert wait_gone(tree) == []  # its stubs too


def test_a_stale_process_on_a_port_is_named_with_its_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import socket, time; s = socket.socket(); "
                               "s.bind(('127.0.0.1', 0)); s.listen(); "
                               "print(s.getsockname()[1], flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(holder.stdout.readline())
        ports = Ports(free_port(), port, free_port())
        result = subprocess.run(serve_command(ports, tmp_path / "repo"), capture_output=True,
                                text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode != 0
    assert f"port {port} is already in use by pid {holder.pid}" in result.stderr
