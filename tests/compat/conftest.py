"""A second real tritonserver, deployed with ``decoupled_mode`` false (``tritonllm serve
--no-decoupled``): unary ModelInfer and HTTP ``infer`` on the ensemble and on ``tensorrt_llm``."""

from __future__ import annotations


import pytest

from tests.conftest import TEST_ENGINE, ServerInfo
from tritonllm.serve.cpu import CpuDeployment
from tritonllm.serve.launcher import Ports, TritonServer


@pytest.fixture(scope="session")
def unary_server(tmp_path_factory, model_dir) -> ServerInfo:
    work = tmp_path_factory.mktemp("triton-unary")
    deployment = CpuDeployment(model=str(model_dir), engine=TEST_ENGINE, decoupled=False,
                               repo_dir=work / "model_repository")
    log_file = work / "tritonserver.log"
    server = TritonServer(deployment.prepare(), Ports.free(), log_file=log_file)
    server.start()
    try:
        yield ServerInfo(server.http_url, server.grpc_url, server.metrics_url, model_dir,
                         deployment.repo_dir, log_file, TEST_ENGINE)
    finally:
        server.stop()


@pytest.fixture(params=["decoupled", "unary"])
def any_server(request, triton_server, unary_server) -> ServerInfo:
    """Each deployment mode in turn."""
    return {"decoupled": triton_server, "unary": unary_server}[request.param]


