"""The ``launch`` fixture: ``tritonllm serve`` as a real process tree, cleaned up by pid."""

from __future__ import annotations

import subprocess

import pytest

from tests.serve.processes import descendants, kill_tree, serve_command, wait_for_line
from tritonllm.serve.launcher import Ports


@pytest.fixture
def launch(tmp_path):
    """Start ``tritonllm serve`` in its own process group, wait for "ready", return (proc,
    {pid: cmdline} of its tree); ``proc.startup_log`` holds its stderr up to "ready".
    ``extra``: more serve options. Anything left is SIGKILLed afterwards."""
    started = []

    def start(openai_port: int = 0, *extra: str, ports: Ports | None = None):
        proc = subprocess.Popen(serve_command(ports or Ports.free(), tmp_path / "repo",
                                              openai_port, *extra),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        started.append(proc)
        proc.startup_log = wait_for_line(proc.stderr, "[tritonllm] ready")
        tree = descendants(proc.pid)
        assert any("tritonserver" in cmd for cmd in tree.values()), tree
        assert any("triton_python_backend_stub" in cmd for cmd in tree.values()), tree
        return proc, tree

    yield start
    for proc in started:
        kill_tree(proc.pid)
        proc.wait()
