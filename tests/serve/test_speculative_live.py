"""n-gram speculative decoding behind a real tritonserver: a deployment with
``speculative_decoding_mode=ngram`` streams over gRPC and answers HTTP generate with the greedy
text of the session's server without speculation, its requests' perf outputs count their drafts,
and /metrics counts the deployment's."""

from __future__ import annotations

import dataclasses

import pytest
import requests

from tests.conftest import TEST_ENGINE
from tritonllm.client import Client
from tritonllm.serve.cpu import CpuDeployment
from tritonllm.serve.launcher import Ports, TritonServer
from tritonllm.serve.metrics import engine_stats

# A prompt whose continuation repeats what it has already said: drafts get accepted.
PROMPT = ("Repeat after me: one two three four five, one two three four five, one two three "
          "four five,")
TOKENS = 24


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory, model_dir):
    engine = dataclasses.replace(TEST_ENGINE, speculative_decoding_mode="ngram")
    work = tmp_path_factory.mktemp("triton-speculative")
    deployment = CpuDeployment(model=str(model_dir), engine=engine,
                               repo_dir=work / "model_repository")
    with TritonServer(deployment.prepare(), Ports.free(), log_file=work / "log") as server:
        yield server


def generate(url: str, **extra) -> dict:
    body = {"text_input": PROMPT, "max_tokens": TOKENS, "min_tokens": TOKENS,
            "exclude_input_in_output": True, **extra}
    reply = requests.post(f"http://{url}/v2/models/ensemble/generate", json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_streamed_and_whole_text_equal_the_server_without_speculation(spec_server,
                                                                      triton_server):
    expected = generate(triton_server.http_url)["text_output"]
    before = engine_stats(spec_server.metrics_url)
    assert generate(spec_server.http_url)["text_output"] == expected
    with Client(protocol="grpc", url=spec_server.grpc_url) as client:
        streamed = "".join(chunk.text for chunk in client.stream(
            PROMPT, max_tokens=TOKENS, min_tokens=TOKENS))
    assert streamed == expected
    after = engine_stats(spec_server.metrics_url)
    assert after["spec_accepted_tokens"] > before.get("spec_accepted_tokens", 0.0)


def test_perf_outputs_count_the_requests_drafts(spec_server):
    reply = generate(spec_server.http_url, return_perf_metrics=True)
    drafted, accepted = reply["total_draft_tokens"], reply["total_accepted_draft_tokens"]
    assert 0 < accepted <= drafted
    assert reply["acceptance_rate"] == pytest.approx(accepted / drafted, rel=1e-6)
