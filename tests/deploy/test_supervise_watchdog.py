"""The container supervisor over a real tritonserver: a killed engine stub ends it with
EXIT_UNHEALTHY and the reason (Kubernetes then restarts the container). Deadlines detect hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.conftest import TEST_ENGINE
from tests.serve.processes import descendants, kill_tree, wait_gone
from tritonllm.serve.cpu import CpuDeployment
from tritonllm.serve.launcher import Ports, TritonServer, server_env
from tritonllm.serve.watchdog import EXIT_UNHEALTHY, for_command

HANG_S = 300
SUPERVISOR = ("import sys; from tritonllm.deploy.supervise import run_forwarding_signals; "
              "sys.exit(run_forwarding_signals(sys.argv[1:]))")


def test_for_command_watches_tritonserver_at_its_http_port():
    assert for_command(1, ["/x/tritonserver", "--http-port=8123"]).ready_url == \
        "http://127.0.0.1:8123/v2/health/ready"
    assert for_command(1, ["mpirun", "-n", "1", "/x/tritonserver"]).ready_url.endswith(":8000"
                                                                                      "/v2/health/ready")
    assert for_command(1, ["sleep", "5"]) is None


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never ready")


def test_a_killed_stub_ends_the_supervisor_with_the_reason(tmp_path, model_dir):
    repo = CpuDeployment(model=str(model_dir), engine=TEST_ENGINE,
                         repo_dir=tmp_path / "repo").prepare()
    # Only the engine model is loaded: the stub that dies is the point, and the tokenizer
    # models' stubs would add seconds of start-up (transformers imports) to no purpose.
    server = TritonServer(repo, Ports.free(), extra_args=("--model-control-mode=explicit",
                                                          "--load-model=tensorrt_llm"))
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, *server.command()],
                            env=server_env(), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_ready(f"http://{server.http_url}/v2/health/ready")
        tree = descendants(proc.pid)
        stub = next(pid for pid, cmd in tree.items() if "tensorrt_llm/1/model.py" in cmd)
        time.sleep(2)  # past the supervisor's first check after ready (1 s polls)
        os.kill(stub, signal.SIGKILL)
        assert proc.wait(timeout=HANG_S) == EXIT_UNHEALTHY
        assert f"tensorrt_llm_0_0 (pid {stub}) died" in proc.stderr.read()
        assert wait_gone(tree) == []
    finally:
        kill_tree(proc.pid)
        proc.wait()
