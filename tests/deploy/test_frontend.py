"""The OpenAI frontend beside the server in a container (tritonllm.deploy.frontend): its
settings per profile and both decoupled modes, what the entrypoint's dry run says it would
start, the profile key, and, with real processes, that it stops with the server both ways."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tritonllm.gpu_stack import TENSORRT_LLM_VERSION
from tritonllm.build.profile import ServingSpec, load_profile
from tritonllm.deploy import frontend
from tritonllm.deploy.entrypoint import EntrypointOptions, describe, plan_gpu, run
from tritonllm.deploy.node import NodeFacts
from tritonllm.model_source import DEFAULT_MODEL_NAME
from tritonllm.openai.settings import DEFAULT_PORT
from tritonllm.serve.launcher import Ports, free_port

H100 = NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA H100 80GB HBM3", "9.0", 8)
GPU_PROFILES = ["build/llama-3.1-8b-fp8-h100.yaml", "build/llama-3.1-70b-fp8-tp4-h100.yaml"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONLLM_CACHE", str(tmp_path / "cache"))


def with_serving(profile, **serving):
    """``profile`` with some serving keys changed (validated again; its YAML path kept)."""
    return dataclasses.replace(profile, serving=dataclasses.replace(profile.serving, **serving))


def test_profile_default_is_the_frontends_port():
    assert ServingSpec().openai_port == DEFAULT_PORT == 9000


@pytest.mark.parametrize("port", [-1, 65536])
def test_bad_openai_port_names_the_field(port):
    with pytest.raises(ValueError, match=r"serving\.openai_port"):
        ServingSpec(openai_port=port)


@pytest.mark.parametrize("path", GPU_PROFILES)
@pytest.mark.parametrize("decoupled", [True, False])
def test_gpu_plan_runs_the_frontend_in_front_of_the_ensemble(repo_root, path, decoupled):
    profile = with_serving(load_profile(repo_root / path), decoupled=decoupled)
    ports = Ports(8100, 8101, 8102)
    plan = plan_gpu(profile, H100, EntrypointOptions(ports=ports), {})
    settings = plan.frontend
    assert settings.port == 9000 and settings.host == "0.0.0.0"
    assert settings.triton_url == "127.0.0.1:8101" and settings.triton_model == "ensemble"
    assert settings.decoupled is decoupled
    assert settings.model_name == profile.model_path().name  # e.g. Llama-3.1-8B-Instruct
    report = describe(plan, EntrypointOptions()).splitlines()
    assert report[-1].startswith(f"OpenAI frontend :9000 (model {settings.model_name!r}, "
                                 f"decoupled {str(decoupled).lower()}): ")
    assert f"--decoupled {decoupled}" in report[-1] and "-m tritonllm.openai" in report[-1]


def test_multinode_leader_runs_one_frontend(repo_root):
    profile = load_profile(repo_root / "deploy/profiles/llama-3.1-70b-bf16-tp4pp2-a100.yaml")
    env = {"LWS_LEADER_ADDRESS": "tritonllm-m-0.tritonllm-m.ns", "LWS_GROUP_SIZE": "2"}
    facts = NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA A100-SXM4-40GB", "8.0", 4)
    plan = plan_gpu(profile, facts, EntrypointOptions(gpus_per_pod=4), env)
    report = describe(plan, EntrypointOptions())
    assert report.count("tritonllm.openai") == 1  # beside mpirun, not one per rank
    assert "tritonllm.openai" not in " ".join(plan.launch.command())


def test_port_zero_runs_no_frontend(repo_root):
    profile = with_serving(load_profile(repo_root / GPU_PROFILES[0]), openai_port=0)
    plan = plan_gpu(profile, H100, EntrypointOptions(), {})
    assert plan.frontend is None
    assert describe(plan, EntrypointOptions()).endswith("OpenAI frontend: none "
                                                        "(serving.openai_port: 0)")


@pytest.mark.parametrize("decoupled", [True, False])
def test_cpu_dry_run_names_the_frontend(tmp_path, capsys, decoupled):
    path = tmp_path / "cpu.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: cpu
        model: {{dir: default}}
        limits: {{max_batch_size: 4, max_input_len: 256, max_seq_len: 512, max_num_tokens: 256}}
        target: {{gpu: cpu}}
        serving: {{decoupled: {str(decoupled).lower()}, openai_port: 9100}}
        """))
    assert run(EntrypointOptions(profile=str(path), dry_run=True), {}) == 0
    out = capsys.readouterr().out
    assert f"decoupled={decoupled}" in out  # the CPU twin's repository follows the profile
    assert (f"OpenAI frontend :9100 (model {DEFAULT_MODEL_NAME!r}, decoupled "
            f"{str(decoupled).lower()})") in out
    assert "--default-max-tokens 256" in out  # max_seq_len - max_input_len


def test_no_profile_is_the_cpu_twin_with_the_default_frontend():
    settings = frontend.frontend_settings(None, Ports(), decoupled=True)
    assert (settings.port, settings.model_name) == (DEFAULT_PORT, DEFAULT_MODEL_NAME)
    assert settings.tokenizer.endswith(DEFAULT_MODEL_NAME)  # token texts for logprobs


def test_a_gpu_profile_gives_the_frontend_its_tokenizer(tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text(textwrap.dedent("""\
        name: gpu
        model: {dir: /models/Llama-3.1-8B-Instruct, architecture: llama-3.1-8b,
                tokenizer_dir: /models/tok}
        limits: {max_batch_size: 4, max_input_len: 256, max_seq_len: 512, max_num_tokens: 256}
        target: {gpu: H100}
        """))
    settings = frontend.frontend_settings(load_profile(path), Ports(), decoupled=True)
    assert settings.tokenizer == "/models/tok"


# --- real processes: the frontend stops with the server, and the server with it ------------

SUPERVISE = """\
import sys
from tritonllm.deploy.frontend import run_with_frontend
from tritonllm.openai.settings import FrontendSettings
settings = FrontendSettings(triton_url="127.0.0.1:1", host="127.0.0.1", port=int(sys.argv[1]))
server = [sys.executable, "-c", "import time; print('server up', flush=True); time.sleep(600)"]
sys.exit(run_with_frontend(settings, server, None, kill_after_s=30))
"""


def frontend_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (the frontend child)."""
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True)
    return int(out.stdout.split("pid=")[1].split(",")[0])


def wait_for_line(proc: subprocess.Popen, text: str) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"{text!r} never printed: {''.join(lines)}")


def test_sigterm_stops_server_then_frontend():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISE, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(proc, "server up")  # printed once the frontend answers
        pid = frontend_pid(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM  # the server's status: ended by the signal
    finally:
        proc.kill()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_dead_frontend_stops_the_server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISE, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(proc, "server up")
        os.kill(frontend_pid(port), signal.SIGKILL)
        lines = wait_for_line(proc, "stopping the server")
        assert proc.wait(60) != 0, "".join(lines)
    finally:
        proc.kill()
