"""The GPU acceptance run, up to where a GPU is needed: it refuses cleanly here, its profiles
pass the planner, every check it names exists, and the live tests really follow
TRITONLLM_TEST_SERVER to a running deployment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tritonllm.build.planning import planner

from tritonllm.build import source
from tritonllm.build.profile import from_dict
from tritonllm.deploy import gpu_check
from tritonllm.deploy.node import detect


def test_refuses_with_what_is_missing_on_a_node_without_a_gpu(tmp_path):
    if detect().gpu_count:
        pytest.skip("a GPU node")
    result = subprocess.run([sys.executable, "-m", "tritonllm.cli", "deploy", "gpu-check",
                             "--work-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == gpu_check.EXIT_NOT_A_GPU_NODE
    assert "gpu-check: cannot run here" in result.stderr
    assert "trtllm-build is not on PATH" in result.stderr
    assert "no NVIDIA GPU is visible" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


@pytest.mark.parametrize("mode", sorted(gpu_check.MODES))
def test_each_modes_profile_passes_the_planner(mode, model_dir):
    profile = from_dict(gpu_check.profile_for(mode, model_dir, "H100", openai_port=9100))
    assert profile.quantization.mode == ("fp8" if mode == "fp8" else "none")
    plan = planner.plan(profile, source.model_arch(profile))
    assert plan.ok, plan.problems


def test_every_named_check_is_collected(repo_root):
    tests = sorted({t for checks in gpu_check.MODES.values() for t in checks})
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider", *tests], cwd=repo_root,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert {line.split("[")[0] for line in collected} == set(tests)


def test_live_tests_follow_the_named_server(repo_root, triton_server, openai_frontend):
    server = json.loads(gpu_check.test_server_env(
        _ports(triton_server), int(openai_frontend.url.rsplit(":", 1)[1]),
        triton_server.model_dir))
    env = {**os.environ, gpu_check.TEST_SERVER_ENV: json.dumps(server)}
    test = "tests/openai/test_live.py::test_models_lists_the_served_model"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             test], cwd=repo_root, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 passed" in result.stdout


def _ports(info):
    from tritonllm.serve.launcher import Ports

    port = lambda url: int(url.removesuffix("/metrics").rsplit(":", 1)[1])  # noqa: E731
    return Ports(port(info.http_url), port(info.grpc_url), port(info.metrics_url))
