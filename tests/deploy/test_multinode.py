"""A LeaderWorkerSet group as one MPI world: pod names, hosts, the wait command, env parsing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tritonllm.deploy.multinode import PodGroup, group_from_env

ENV = {"LWS_LEADER_ADDRESS": "tritonllm-x-0.tritonllm-x.default", "LWS_GROUP_SIZE": "2",
       "LWS_WORKER_INDEX": "0"}


def test_group_from_lws_env():
    group = group_from_env(ENV, gpus_per_pod=4)
    assert group.pods == ["tritonllm-x-0", "tritonllm-x-0-1"]
    assert group.hosts == ("tritonllm-x-0:4", "tritonllm-x-0-1:4")
    assert group.gpu_count == 8
    assert group.wait_command(600) == ["kubectl", "wait", "--for=condition=Ready",
                                       "--timeout=600s", "pod/tritonllm-x-0-1"]


def test_no_group_outside_a_leaderworkerset_or_of_one_pod():
    assert group_from_env({}, gpus_per_pod=4) is None
    assert group_from_env({**ENV, "LWS_GROUP_SIZE": "1"}, gpus_per_pod=4) is None


@pytest.mark.parametrize("kwargs,field", [(dict(leader="", size=2, gpus_per_pod=1), "leader"),
                                          (dict(leader="a", size=0, gpus_per_pod=1), "size"),
                                          (dict(leader="a", size=2, gpus_per_pod=0),
                                           "gpus_per_pod")])
def test_bad_groups(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PodGroup(**kwargs)


def test_bad_group_size_env():
    with pytest.raises(ValueError, match="LWS_GROUP_SIZE"):
        group_from_env({**ENV, "LWS_GROUP_SIZE": "two"}, gpus_per_pod=4)


def test_worker_process_waits_until_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "tritonllm.cli", "deploy", "worker"],
                            stderr=subprocess.PIPE, text=True)
    assert "worker pod ready" in proc.stderr.readline()
    time.sleep(0.3)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_rsh_agent_runs_the_command_in_the_pod(repo_root, tmp_path):
    """mpirun calls the agent like ssh; it must become ``kubectl exec POD -c triton -- sh -c``.
    A recording ``kubectl`` on PATH stands in for the cluster."""
    recorder = tmp_path / "kubectl"
    recorder.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$OUT"\n')
    recorder.chmod(0o755)
    out = tmp_path / "argv.txt"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "OUT": str(out)}
    agent = repo_root / "deploy" / "bin" / "kubectl-rsh"
    subprocess.run([str(agent), "tritonllm-x-0-1.tritonllm-x.default", "orted", "-mca", "ess",
                    "env"], env=env, check=True)
    assert out.read_text().splitlines() == ["exec", "tritonllm-x-0-1", "--container", "triton",
                                            "--", "/bin/sh", "-c", "orted -mca ess env"]
