"""The entrypoint's decisions without a GPU: which path (CPU twin or GPU), node checks against
the profile, multi-node groups, and the dry-run report of what would run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tritonllm.gpu_stack import TENSORRT_LLM_VERSION
from tritonllm.build.profile import load_profile
from tritonllm.deploy import cache
from tritonllm.build import source
from tritonllm.build.planning import planner
from tritonllm.build.repo_values import cpu_deployment
from tritonllm.deploy.entrypoint import (DeployError, EntrypointOptions,
                                         describe, plan_gpu, run)
from tritonllm.deploy.multinode import RSH_AGENT
from tritonllm.deploy.node import NodeFacts
from tritonllm.serve.cpu import CpuDeployment

H100x4 = NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA H100 80GB HBM3", "9.0", 4)
A100x4 = NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA A100-SXM4-40GB", "8.0", 4)
LWS_ENV = {"LWS_LEADER_ADDRESS": "tritonllm-m-0.tritonllm-m.ns", "LWS_GROUP_SIZE": "2"}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONLLM_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tp4(repo_root):
    return load_profile(repo_root / "build" / "llama-3.1-70b-fp8-tp4-h100.yaml")


@pytest.fixture
def tp4pp2(repo_root):
    return load_profile(repo_root / "deploy" / "profiles" / "llama-3.1-70b-bf16-tp4pp2-a100.yaml")


def test_no_tensorrt_llm_means_no_gpu_path(tp4):
    facts = NodeFacts(None, None, None, 0)
    with pytest.raises(DeployError, match="TensorRT-LLM is not installed"):
        plan_gpu(tp4, facts, EntrypointOptions(), {})


def test_another_tensorrt_llm_minor_release_is_refused_unless_allowed(tp4):
    other = NodeFacts("1.2.1", "NVIDIA H100 80GB HBM3", "9.0", 4)
    with pytest.raises(DeployError, match=f"this node has TensorRT-LLM 1.2.1; tritonllm targets "
                                          f"{TENSORRT_LLM_VERSION}"):
        plan_gpu(tp4, other, EntrypointOptions(), {})
    assert plan_gpu(tp4, other, EntrypointOptions(),
                    {"TRITONLLM_ALLOW_OTHER_TENSORRT_LLM": "1"}).root.name == "trtllm-1.2.1-sm90"


def test_too_few_gpus_names_tp_and_pp(tp4):
    two = NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA H100 80GB HBM3", "9.0", 2)
    with pytest.raises(DeployError, match=r"needs 4 GPUs \(tp_size=4 x pp_size=1\) but this "
                                          r"node has 2"):
        plan_gpu(tp4, two, EntrypointOptions(), {})


def test_single_node_plan(tp4):
    plan = plan_gpu(tp4, H100x4, EntrypointOptions(exit_timeout_s=45), {})
    assert plan.decision.action == cache.BUILD and plan.group is None
    assert plan.launch.world_size == 4 and not plan.launch.hosts
    assert plan.root.name == "trtllm-1.1.0-sm90"
    report = describe(plan, EntrypointOptions())
    assert "engine cache: build" in report
    assert f"{tp4.source} --output-dir {plan.build_dir}" in report
    assert "launch (world size 4): mpirun --allow-run-as-root -n 1" in report
    assert "--exit-timeout-secs=45" in report


def test_multinode_plan_from_lws_env(tp4pp2):
    plan = plan_gpu(tp4pp2, A100x4, EntrypointOptions(gpus_per_pod=4), LWS_ENV)
    assert plan.group.pods == ["tritonllm-m-0", "tritonllm-m-0-1"]
    argv = plan.launch.command()
    assert argv[2:7] == ["--host", "tritonllm-m-0:4,tritonllm-m-0-1:4", "--mca",
                         "plm_rsh_agent", RSH_AGENT]
    assert argv.count(":") == 7  # eight ranks


def test_multinode_needs_the_group(tp4pp2):
    with pytest.raises(DeployError, match="needs 8 GPUs .* this node has 4"):
        plan_gpu(tp4pp2, A100x4, EntrypointOptions(gpus_per_pod=4), {})
    two = NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA A100-SXM4-40GB", "8.0", 2)
    with pytest.raises(DeployError, match="gpus_per_pod is 4 but this pod sees 2"):
        plan_gpu(tp4pp2, two, EntrypointOptions(gpus_per_pod=4), LWS_ENV)


def test_cpu_profile_maps_to_the_serve_deployment(repo_root):
    profile = load_profile(repo_root / "build" / "smollm2-cpu.yaml")
    deployment = cpu_deployment(profile)
    limits = profile.limits
    assert (deployment.engine.max_batch_size, deployment.engine.max_num_tokens,
            deployment.engine.max_input_len, deployment.engine.max_seq_len) == (
        limits.max_batch_size, limits.max_num_tokens, limits.max_input_len, limits.max_seq_len)
    assert deployment.engine.tokens_per_block == profile.engine.tokens_per_block
    plan = planner.plan(profile, source.model_arch(profile))
    assert deployment.engine.max_tokens_in_paged_kv_cache == plan.kv_tokens  # as the build's
    assert deployment.triton_max_batch_size == profile.triton_max_batch_size
    assert deployment.engine.enable_kv_cache_reuse == profile.serving.enable_kv_cache_reuse
    assert deployment.engine.max_queue_size == profile.serving.max_queue_size
    assert cpu_deployment(None) == CpuDeployment()  # no profile: exactly `tritonllm serve`


def test_profile_from_env_and_dry_run(repo_root, capsys):
    env = {"TRITONLLM_PROFILE": str(repo_root / "build" / "smollm2-cpu.yaml")}
    assert run(EntrypointOptions(dry_run=True), env) == 0
    out = capsys.readouterr().out
    assert "CPU twin: CpuDeployment(" in out and "model=None," in out  # the cached default


def test_cli_refuses_a_gpu_profile_on_this_machine(repo_root):
    result = subprocess.run([sys.executable, "-m", "tritonllm.cli", "deploy", "entrypoint",
                             "--profile", str(repo_root / "build" / "llama-3.1-8b-fp8-h100.yaml"),
                             "--dry-run"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "tritonllm: error: TensorRT-LLM is not installed here" in result.stderr


@pytest.mark.parametrize("kwargs,field", [(dict(exit_timeout_s=-1), "exit_timeout_s"),
                                          (dict(gpus_per_pod=-2), "gpus_per_pod"),
                                          (dict(worker_wait_s=0), "worker_wait_s")])
def test_bad_options(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EntrypointOptions(**kwargs)
