"""Shared fixtures. ``triton_server`` is a REAL tritonserver process serving the default model
(SmolLM2-135M-Instruct) through the CPU engine, started once per test session.

With ``TRITONLLM_TEST_SERVER`` set (JSON: ``http``, ``grpc``, ``metrics`` as host:port,
``openai`` as a URL, ``model_dir``), ``triton_server`` and ``openai_frontend`` are that running
deployment instead: ``tritonllm deploy gpu-check`` points the live tests at a GPU server so."""

from __future__ import annotations

import dataclasses
import json
import os
import types
from pathlib import Path

import pytest

from tritonllm.deploy.gpu_check import TEST_SERVER_ENV
from tritonllm.engine import EngineConfig
from tritonllm.loadtest.providers import served_model_ids
from tritonllm.model_source import default_model_dir
from tritonllm.serve.cpu import CpuDeployment
from tritonllm.serve.launcher import Ports, TritonServer

# Small enough to start fast, large enough for 8 concurrent requests of a few hundred tokens.
TEST_ENGINE = EngineConfig(max_batch_size=8, max_num_tokens=256, max_input_len=1024,
                           max_seq_len=2048, max_tokens_in_paged_kv_cache=8192)


def external_server() -> dict | None:
    """The running deployment named by ``TRITONLLM_TEST_SERVER`` (None: start our own)."""
    text = os.environ.get(TEST_SERVER_ENV)
    return json.loads(text) if text else None


def pytest_report_header(config):
    """Which dependency set runs: the CPU twin's (`make test`) or the GPU image's
    (`make test-gpuset`)."""
    from importlib.metadata import PackageNotFoundError, version

    names = ("transformers", "tokenizers", "nvidia-modelopt", "torch", "numpy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} absent")
    return "dependency set: " + ", ".join(found)


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    http_url: str
    grpc_url: str
    metrics_url: str
    model_dir: Path
    repo_dir: Path
    log_file: Path
    engine: EngineConfig


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return default_model_dir()


@pytest.fixture(scope="session")
def codec(model_dir):
    from tritonllm.tokenizer import TextCodec

    return TextCodec.from_dir(model_dir)


@pytest.fixture(scope="session")
def hf_model(model_dir):
    """transformers' own model on the default checkpoint: the reference for greedy answers."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def pool_cache_dir(tmp_path_factory) -> Path:
    """The session's cache for load-test prompt pools. Pools are content-addressed (workload,
    tokenizer), so runs with the same workload share one pool; each build is a child process
    that loads the tokenizer, seconds of CPU."""
    return tmp_path_factory.mktemp("pool-cache")


@pytest.fixture
def pool_cache(pool_cache_dir, monkeypatch):
    """Prompt pools go to the session's temporary cache (``TRITONLLM_CACHE``), never the user's;
    the tests pass the model dir in, so the model is not looked up there."""
    monkeypatch.setenv("TRITONLLM_CACHE", str(pool_cache_dir))
    return pool_cache_dir


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory, model_dir) -> ServerInfo:
    external = external_server()
    if external:
        work = tmp_path_factory.mktemp("external")
        yield ServerInfo(external["http"], external["grpc"], f"http://{external['metrics']}"
                         "/metrics", Path(external["model_dir"]), work, work / "none.log",
                         TEST_ENGINE)
        return
    work = tmp_path_factory.mktemp("triton")
    # Two postprocessing instances: every streaming test also proves that streamed text is
    # exact whichever instance decodes each response (tritonllm.models.postprocess).
    deployment = CpuDeployment(model=str(model_dir), engine=TEST_ENGINE,
                               repo_dir=work / "model_repository", postprocessing_instances=2)
    repo = deployment.prepare()
    log_file = work / "tritonserver.log"
    server = TritonServer(repo, Ports.free(), log_file=log_file)
    server.start()
    try:
        yield ServerInfo(server.http_url, server.grpc_url, server.metrics_url, model_dir,
                         repo, log_file, TEST_ENGINE)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def openai_frontend(triton_server, tmp_path_factory):
    """The OpenAI frontend as a child process (as ``tritonllm serve`` starts it) in front of
    the session's tritonserver."""
    from tritonllm.openai import FrontendProcess, FrontendSettings
    from tritonllm.serve.launcher import free_port

    external = external_server()
    if external:
        model = served_model_ids(external["openai"], timeout_s=30)[0]
        yield types.SimpleNamespace(url=external["openai"],
                                    settings=types.SimpleNamespace(model_name=model))
        return

    settings = FrontendSettings(triton_url=triton_server.grpc_url,
                                model_name=triton_server.model_dir.name,
                                tokenizer=str(triton_server.model_dir),
                                host="127.0.0.1", port=free_port(), default_max_tokens=32)
    log = tmp_path_factory.mktemp("openai") / "frontend.log"
    with FrontendProcess(settings, log_file=log) as frontend:
        yield frontend
