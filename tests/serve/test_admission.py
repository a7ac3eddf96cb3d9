"""Admission control against a real tritonserver whose engine holds one running and one
waiting request (``max_batch_size=1``, ``max_queue_size=1``): a burst beyond the queue is
refused at once with a "server busy" error naming the limit (gRPC UNAVAILABLE; Triton 2.51's
HTTP generate answers every model error with 400, so the client classifies by the message),
the admitted requests complete with the right answer, the refusals are counted, and the
server keeps serving."""

from __future__ import annotations

import concurrent.futures

import pytest
import requests

from tests.conftest import TEST_ENGINE
from tests.helpers import wait_for_idle_cache
from tritonllm.client import Client, ServerBusyError
from tritonllm.serve.cpu import CpuDeployment
from tritonllm.serve.launcher import Ports, TritonServer
from tritonllm.serve.metrics import engine_stats

PROMPT = "The capital of France is"
# Long enough that a burst sent at once finds the first request still running (~2 s here);
# each admitted one runs alone (max_batch_size=1), so every token is paid in wall time.
BURST_TOKENS = 48


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, model_dir):
    import dataclasses

    engine = dataclasses.replace(TEST_ENGINE, max_batch_size=1, max_num_tokens=256,
                                 max_queue_size=1)
    work = tmp_path_factory.mktemp("triton-admission")
    deployment = CpuDeployment(model=str(model_dir), engine=engine,
                               repo_dir=work / "model_repository")
    with TritonServer(deployment.prepare(), Ports.free(), log_file=work / "log") as server:
        yield server


def generate(server, max_tokens: int) -> requests.Response:
    body = {"text_input": PROMPT, "max_tokens": max_tokens, "exclude_input_in_output": True,
            "min_tokens": max_tokens}
    return requests.post(f"http://{server.http_url}/v2/models/ensemble/generate", json=body,
                         timeout=300)


def test_a_burst_beyond_the_queue_is_refused_and_the_rest_served(small_server):
    before = engine_stats(small_server.metrics_url)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: generate(small_server, BURST_TOKENS), range(6)))
    served = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if "max_queue_size: server busy" in r.text]
    assert len(served) + len(refused) == 6, [r.text for r in replies]
    assert len(served) >= 2 and refused, [r.status_code for r in replies]
    assert all("Maximum queue size of 1" in r.text for r in refused)
    assert len({r.json()["text_output"] for r in served}) == 1  # greedy: equal answers
    after = wait_for_idle_cache(small_server)
    assert after["rejected"] - before["rejected"] == len(refused)
    assert after["completed"] - before["completed"] == len(served)
    assert generate(small_server, 4).status_code == 200  # and it keeps serving


def test_the_client_raises_server_busy_for_a_refusal(small_server):
    def ask(_):
        with Client(protocol="grpc", url=small_server.grpc_url) as client:
            try:
                return client.generate(PROMPT, max_tokens=BURST_TOKENS,
                                       min_tokens=BURST_TOKENS).text
            except ServerBusyError as exc:
                return exc

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        results = list(pool.map(ask, range(5)))
    busy = [r for r in results if isinstance(r, ServerBusyError)]
    assert busy and len(busy) < 5
    assert "max_queue_size" in busy[0].message


def test_triton_request_timeout_ends_a_running_request_and_frees_its_cache(small_server):
    import tritonclient.grpc as grpcclient

    from tests.compat import wire

    before = wait_for_idle_cache(small_server)
    errors = []
    client = grpcclient.InferenceServerClient(small_server.grpc_url)
    client.start_stream(callback=lambda result, error: errors.append(error))
    try:  # Triton's per-request timeout (microseconds) reaches the engine through the ensemble
        client.async_stream_infer("ensemble", wire.inputs(grpcclient, {
            "text_input": wire.text(PROMPT), "max_tokens": wire.i32(1000),
            "min_tokens": wire.i32(1000)}), timeout=1_500_000)
    finally:
        client.stop_stream()  # returns once the request has ended
    assert errors and "timeout of 1.5 s expired" in str(errors[-1])
    after = wait_for_idle_cache(small_server, before["cancelled"] + 1)
    assert after["free_kv_tokens"] == after["total_kv_tokens"]
    assert after["cancelled"] == before["cancelled"] + 1
