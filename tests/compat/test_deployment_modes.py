"""Both deployment modes against real tritonservers: decoupled (streams) and not (unary
ModelInfer / HTTP infer), with inflight batching intact in both."""

from __future__ import annotations

import concurrent.futures
import time

import requests

from tests.compat import wire
from tests.helpers import engine_metrics, hf_greedy, wait_for_idle_cache

PROMPT = "The capital of France is"


def test_http_generate_works_in_both_modes_with_top_p_zero(any_server, codec, hf_model):
    # top_p 0.0 is "unset" for TensorRT-LLM's backend (inflight_batcher_llm_client's default).
    body = {"text_input": PROMPT, "max_tokens": 8, "top_k": 1, "top_p": 0.0,
            "exclude_input_in_output": True}
    reply = requests.post(f"http://{any_server.http_url}/v2/models/ensemble/generate",
                          json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    assert reply.json()["text_output"] == codec.decode(hf_greedy(hf_model, codec.encode(PROMPT), 8))


def test_http_infer_on_the_unary_deployment(unary_server, codec, hf_model):
    expected = codec.decode(hf_greedy(hf_model, codec.encode(PROMPT), 8))
    result = wire.infer(unary_server, "http", "ensemble", {
        "text_input": wire.text(PROMPT), "max_tokens": wire.i32(8),
        "exclude_input_in_output": wire.flag(True)})
    assert result.as_numpy("text_output")[0].decode() == expected


def settled_idle_metrics(server, timeout_s: float = 60.0) -> dict:
    """Idle engine metrics whose finished counts have stopped moving: a request is counted just
    after its reply is sent, so the previous test's last one can still be on its way."""
    deadline = time.monotonic() + timeout_s
    metrics = wait_for_idle_cache(server)
    while time.monotonic() < deadline:
        time.sleep(0.6)  # past one refresh of the engine's stats (twice a second)
        again = wait_for_idle_cache(server)
        if all(again[k] == metrics[k] for k in ("completed", "cancelled", "failed")):
            return again
        metrics = again
    return metrics


def test_concurrent_unary_requests_share_decode_steps(unary_server):
    before = settled_idle_metrics(unary_server)
    values = {"text_input": wire.text(PROMPT), "max_tokens": wire.i32(48),
              "exclude_input_in_output": wire.flag(True)}
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(wire.infer, unary_server, "grpc", "ensemble", values)
                   for _ in range(6)]
        texts = {f.result().as_numpy("text_output")[0] for f in futures}
    after = wait_for_idle_cache(unary_server)
    assert len(texts) == 1  # greedy: six equal answers
    assert after["completed"] - before["completed"] == 6
    # Unary requests join the running batch: decode steps served several of them at once.
    assert after["steps_with_multiple_decodes"] > before["steps_with_multiple_decodes"]
    assert after["max_running_seen"] >= 2
    assert engine_metrics(unary_server)["free_kv_tokens"] == after["total_kv_tokens"]


def test_openai_frontend_on_the_unary_deployment(unary_server, codec, hf_model, tmp_path):
    import openai

    from tritonllm.openai import FrontendProcess, FrontendSettings
    from tritonllm.serve.launcher import free_port

    settings = FrontendSettings(triton_url=unary_server.grpc_url, decoupled=False,
                                model_name="m", host="127.0.0.1", port=free_port())
    expected = codec.decode(hf_greedy(hf_model, codec.encode(PROMPT), 8))
    with FrontendProcess(settings, log_file=tmp_path / "frontend.log") as frontend, \
            openai.OpenAI(base_url=f"{frontend.url}/v1", api_key="unused", max_retries=0,
                          timeout=300) as sdk:
        ask = dict(model="m", prompt=PROMPT, max_tokens=8, temperature=0)
        assert sdk.completions.create(**ask).choices[0].text == expected
        chunks = list(sdk.completions.create(stream=True, **ask))
        assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
