"""The CPU engine's Prometheus metrics on the REAL tritonserver's metrics port: kinds (counters
are counters), values that move as requests finish, the KV-cache fraction back at 0 when idle."""

from __future__ import annotations

import time
import uuid

import requests

from tests.helpers import wait_for_idle_cache
from tritonllm.models.metrics import COUNTERS, FINISHED, GAUGES, HISTOGRAMS, KV_USAGE
from tritonllm.serve.metrics import fetch, metric_types, parse_samples

MODEL = 'model="tensorrt_llm"'


def series(samples: dict, name: str, *labels: str) -> float:
    """The value of ``name`` for the engine model (and ``labels``, e.g. 'finished_reason="x"')."""
    found = [v for s, v in samples.items()
             if s.split("{")[0] == name and MODEL in s and all(lb in s for lb in labels)]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


def wait_for_finished(server, before: float, timeout_s: float = 60.0) -> dict:
    """Samples once the finished-requests counter has passed ``before`` (final outputs are
    counted just after they are sent, so the HTTP reply can arrive first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = parse_samples(fetch(server.metrics_url))
        total = sum(v for s, v in samples.items() if s.startswith(FINISHED) and MODEL in s)
        if total > before or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def finished_total(samples: dict) -> float:
    return sum(v for s, v in samples.items() if s.startswith(FINISHED) and MODEL in s)


def test_every_metric_has_its_prometheus_type(triton_server):
    types = metric_types(fetch(triton_server.metrics_url))
    for name in [*COUNTERS.values(), FINISHED]:
        assert name.endswith("_total") and types.get(name) == "counter", (name, types.get(name))
    for name in [*GAUGES.values(), KV_USAGE]:
        assert types.get(name) == "gauge", name
    for name in HISTOGRAMS:
        assert types.get(name) == "histogram", name


def test_counters_and_histograms_move_when_a_request_finishes(triton_server):
    wait_for_idle_cache(triton_server)
    before = parse_samples(fetch(triton_server.metrics_url))
    body = {"text_input": "The capital of France is", "max_tokens": 12, "min_tokens": 12}
    reply = requests.post(f"http://{triton_server.http_url}/v2/models/ensemble/generate",
                          json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    after = wait_for_finished(triton_server, finished_total(before))

    def moved(name, *labels):
        return series(after, name, *labels) - series(before, name, *labels)

    assert moved(FINISHED, 'finished_reason="length"') == 1
    assert moved("tritonllm_generation_tokens_total") == 12
    assert moved("tritonllm_prompt_tokens_total") >= 5  # the prompt, through the chat-free path
    assert moved("tritonllm_engine_steps_total") >= 12
    forward = moved("tritonllm_engine_forward_seconds_total")
    assert 0 < forward < moved("tritonllm_engine_step_seconds_total")
    for name in ("tritonllm_time_to_first_token_seconds", "tritonllm_e2e_request_latency_seconds",
                 "tritonllm_request_queue_time_seconds",
                 "tritonllm_request_time_per_output_token_seconds"):
        assert moved(f"{name}_count") == 1, name
        assert moved(f"{name}_sum") > 0, name
    assert moved("tritonllm_inter_token_latency_seconds_count") == 11  # one per gap


def test_kv_cache_usage_is_a_fraction_that_returns_to_zero(triton_server):
    wait_for_idle_cache(triton_server)
    body = {"text_input": "Write a long story about a river.", "max_tokens": 200,
            "min_tokens": 200, "stream": True}
    url = f"http://{triton_server.http_url}/v2/models/ensemble/generate_stream"
    busy = []
    with requests.post(url, json=body, stream=True, timeout=300) as reply:
        for line in reply.iter_lines():
            if line.startswith(b"data: ") and not busy:
                time.sleep(1)  # the gauges refresh twice a second
                samples = parse_samples(fetch(triton_server.metrics_url))
                busy.append(series(samples, KV_USAGE))
                assert series(samples, "tritonllm_num_requests_running") == 1
    assert 0 < busy[0] < 1
    idle = wait_for_idle_cache(triton_server)
    assert idle["kv_cache_usage"] == 0


def test_prefix_cache_counters_count_a_reused_prompt(triton_server):
    """The same prompt twice: the second finds its full blocks cached (vLLM's meaning: queried
    and hit tokens), computes only the rest, and answers the same."""
    wait_for_idle_cache(triton_server)
    text = (f"Request {uuid.uuid4().hex}: summarise the history of the river that runs through "
            "the old town, its bridges, mills and floods, in one sentence for a visitor.")
    body = {"text_input": text, "max_tokens": 4}
    url = f"http://{triton_server.http_url}/v2/models/ensemble/generate"
    samples, answers = [parse_samples(fetch(triton_server.metrics_url))], []
    for _ in range(2):
        reply = requests.post(url, json=body, timeout=300)
        assert reply.status_code == 200, reply.text
        answers.append(reply.json()["text_output"])
        samples.append(wait_for_finished(triton_server, finished_total(samples[-1])))

    def moved(name, i):
        return series(samples[i + 1], name) - series(samples[i], name)

    prompt = moved("tritonllm_prompt_tokens_total", 0)  # the first computed all of it
    block = triton_server.engine.tokens_per_block
    assert prompt > 2 * block
    assert moved("tritonllm_prefix_cache_queries_total", 0) == prompt
    assert moved("tritonllm_prefix_cache_hits_total", 0) == 0
    hits = moved("tritonllm_prefix_cache_hits_total", 1)
    assert hits == (prompt - 1) // block * block
    assert moved("tritonllm_prefix_cache_queries_total", 1) == prompt
    assert moved("tritonllm_prompt_tokens_total", 1) == prompt - hits
    assert series(samples[-1], "tritonllm_engine_cached_kv_blocks") >= hits // block
    assert answers[0] == answers[1]


def test_guided_requests_and_their_mask_time_are_counted(triton_server):
    wait_for_idle_cache(triton_server)

    def generate(**guide):
        before = parse_samples(fetch(triton_server.metrics_url))
        body = {"text_input": "Spell a word:", "max_tokens": 8, **guide}
        reply = requests.post(f"http://{triton_server.http_url}/v2/models/ensemble/generate",
                              json=body, timeout=300)
        assert reply.status_code == 200, reply.text
        after = wait_for_finished(triton_server, finished_total(before))
        time.sleep(0.6)  # the counters refresh twice a second; the mask time may lag the finish
        after = parse_samples(fetch(triton_server.metrics_url))
        return {name: series(after, name) - series(before, name)
                for name in ("tritonllm_guided_requests_total",
                             "tritonllm_engine_grammar_mask_seconds_total")}

    guided = generate(guided_decoding_guide_type="regex", guided_decoding_guide="[a-z]{2,6}")
    assert guided["tritonllm_guided_requests_total"] == 1
    assert guided["tritonllm_engine_grammar_mask_seconds_total"] > 0
    plain = generate()
    assert plain == {"tritonllm_guided_requests_total": 0,
                     "tritonllm_engine_grammar_mask_seconds_total": 0}
