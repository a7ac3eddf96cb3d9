"""``tritonllm serve`` as a real process tree: whatever ends the launcher, no tritonserver, no
backend stub and no frontend stays behind (checked by pid); a server that dies is reported; a
port held by a stale process is named with its pid. Deadlines only detect hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.serve.processes import serve_command, wait_gone
from tritonllm.serve.launcher import Ports, free_port


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
