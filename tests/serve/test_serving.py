"""End to end against a real tritonserver serving SmolLM2 through the CPU engine.

No mock anywhere: HTTP generate / generate_stream and gRPC bidirectional streams into the
``ensemble`` (and the ``tensorrt_llm`` step directly), compared with transformers' own greedy
``generate`` on the same checkpoint.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import triton_to_np_dtype

from tests.helpers import engine_metrics, hf_greedy, wait_for_idle_cache

PROMPTS = [
    "The capital of France is",
    "Write a haiku about the sea.",
    "def fibonacci(n):",
    "List three primary colors:",
    "Explain in one sentence why the sky is blue.",
]


# --- request helpers -------------------------------------------------------------------------

def http_generate(server, body: dict, stream: bool = False):
    endpoint = "generate_stream" if stream else "generate"
    url = f"http://{server.http_url}/v2/models/ensemble/{endpoint}"
    return requests.post(url, json=body, stream=stream, timeout=300)


def http_stream_texts(server, body: dict) -> list[str]:
    body = {**body, "id": uuid.uuid4().hex, "incremental_detokenize": True}
    return plain_sse_texts(server, body)


def grpc_inputs(values: dict) -> list:
    inputs = []
    for name, (value, dtype) in values.items():
        array = np.array(value, dtype=triton_to_np_dtype(dtype))
        array = array.reshape(1, -1) if array.ndim <= 1 else array
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


class GrpcStream:
    """One gRPC bidirectional stream; collects every response (or error) in a queue."""

    def __init__(self, server):
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.results: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.results.put((result, error)))

    def send(self, model: str, values: dict, request_id: str, parameters: dict | None = None):
        self.client.async_stream_infer(model, grpc_inputs(values), request_id=request_id,
                                       parameters=parameters,
                                       enable_empty_final_response=True)

    def close(self, cancel: bool = False):
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


def ensemble_values(prompt: str, max_tokens: int, **extra) -> dict:
    values = {"text_input": ([prompt], "BYTES"), "max_tokens": ([max_tokens], "INT32"),
              "exclude_input_in_output": ([True], "BOOL")}
    for name, value in extra.items():
        dtype = {bool: "BOOL", int: "INT32", float: "FP32"}[type(value)]
        values[name] = ([value], dtype)
    return values


def grpc_collect(stream: GrpcStream, n_requests: int, timeout: float = 300.0) -> dict:
    """request id -> list of (time, text, final) until every request got its final response."""
    texts: dict[str, list] = {}
    done = 0
    deadline = time.monotonic() + timeout
    while done < n_requests:
        result, error = stream.results.get(timeout=max(1.0, deadline - time.monotonic()))
        assert error is None, error
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        text_array = result.as_numpy("text_output")
        text = b"".join(text_array.reshape(-1)).decode() if text_array is not None else ""
        texts.setdefault(response.id, []).append((time.monotonic(), text, final))
        done += final
    return texts


# --- correctness -----------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_http_and_grpc_equal_transformers(triton_server, codec, hf_model, prompt):
    max_tokens = 24
    expected_ids = hf_greedy(hf_model, codec.encode(prompt), max_tokens)
    expected = codec.decode(expected_ids)

    resp = http_generate(triton_server, {"text_input": prompt, "max_tokens": max_tokens,
                                         "exclude_input_in_output": True,
                                         "return_num_output_tokens": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["text_output"] == expected
    assert resp.json()["num_output_tokens"] == len(expected_ids)

    stream = GrpcStream(triton_server)
    try:
        stream.send("tensorrt_llm", {
            "input_ids": (codec.encode(prompt), "INT32"),
            "input_lengths": ([len(codec.encode(prompt))], "INT32"),
            "request_output_len": ([max_tokens], "INT32"),
            # Without end_id TensorRT-LLM (and so the CPU step) stops on no token.
            "end_id": ([codec.end_id], "INT32"),
            "exclude_input_in_output": ([True], "BOOL")}, request_id="direct")
        stream.send("ensemble", ensemble_values(prompt, max_tokens), request_id="ens")
        received = {}
        for _ in range(2):
            result, error = stream.results.get(timeout=300)
            assert error is None, error
            received[result.get_response().id] = result
    finally:
        stream.close()
    assert received["direct"].as_numpy("output_ids").reshape(-1).tolist() == expected_ids
    assert received["ens"].as_numpy("text_output").reshape(-1)[0].decode() == expected


def test_streaming_equals_non_streaming_with_emoji_and_cjk(triton_server):
    prompts = ["Repeat exactly: 🎉🎉 你好世界 🚀", "Translate to Chinese: I love my family."]
    for content in prompts:
        body = {"text_input": json.dumps([{"role": "user", "content": content}]),
                "apply_chat_template": True, "max_tokens": 30, "exclude_input_in_output": True}
        whole = http_generate(triton_server, body).json()["text_output"]
        chunks = http_stream_texts(triton_server, body)
        assert any(ord(ch) > 0x2E80 for ch in whole), f"no CJK/emoji in {whole!r}"
        assert len(chunks) > 5
        assert "".join(chunks) == whole
        assert "\ufffd" not in whole


def test_concurrent_streams_are_exact_across_postprocessing_instances(triton_server):
    """The session server runs two postprocessing instances, which keep no per-request state:
    concurrent gRPC and HTTP SSE streams, without the ``incremental_detokenize`` parameter,
    concatenate exactly to the non-streamed text (spaces, emoji, CJK)."""
    config = requests.get(f"http://{triton_server.http_url}/v2/models/postprocessing/config",
                          timeout=30).json()
    assert config["instance_group"][0]["count"] >= 2
    contents = ["Repeat exactly: 🎉🎉 你好世界 🚀", "Translate to Chinese: I love my family.",
                "Repeat exactly: café naïve 東京 🍣", "Name three colors, separated by spaces."]
    bodies = [{"text_input": json.dumps([{"role": "user", "content": c}]),
               "apply_chat_template": True, "max_tokens": 20, "exclude_input_in_output": True}
              for c in contents]
    stream = GrpcStream(triton_server)
    try:
        for i, body in enumerate(bodies):
            stream.send("ensemble", ensemble_values(body["text_input"], 20, stream=True,
                                                    apply_chat_template=True),
                        request_id=f"g{i}")
        with ThreadPoolExecutor(len(bodies)) as pool:
            sse = list(pool.map(lambda body: plain_sse_texts(triton_server, body), bodies))
        grpc_texts = grpc_collect(stream, len(bodies))
    finally:
        stream.close()
    with ThreadPoolExecutor(len(bodies)) as pool:
        wholes = list(pool.map(
            lambda body: http_generate(triton_server, body).json()["text_output"], bodies))
    for i, whole in enumerate(wholes):
        assert "".join(text for _, text, _ in grpc_texts[f"g{i}"]) == whole
        assert "".join(sse[i]) == whole
    assert any(ord(ch) > 0x2E80 for ch in "".join(wholes)), wholes


def plain_sse_texts(server, body: dict) -> list[str]:
    """generate_stream with ``body`` as given (as any SSE client sends it: no request id, no
    extra parameter, unless ``body`` has them)."""
    chunks = []
    with http_generate(server, {**body, "stream": True}, stream=True) as resp:
        assert resp.status_code == 200, resp.text
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                event = json.loads(line[len(b"data: "):])
                assert "error" not in event, event
                chunks.append(event["text_output"])
    return chunks


def test_leading_spaces_survive_streaming(triton_server):
    body = {"text_input": "The quick brown fox", "max_tokens": 16,
            "exclude_input_in_output": True}
    whole = http_generate(triton_server, body).json()["text_output"]
    chunks = http_stream_texts(triton_server, body)
    assert "".join(chunks) == whole
    assert sum(chunk.startswith(" ") for chunk in chunks) >= 3


def test_sampling_with_seed_is_reproducible(triton_server):
    body = {"text_input": "Once upon a time", "max_tokens": 16, "temperature": 0.9,
            "top_p": 0.95, "top_k": 40, "seed": 1234, "exclude_input_in_output": True}
    first = http_generate(triton_server, body).json()["text_output"]
    second = http_generate(triton_server, body).json()["text_output"]
    other = http_generate(triton_server, {**body, "seed": 99}).json()["text_output"]
    assert first == second
    assert first != other


def test_stop_words_end_generation(triton_server):
    body = {"text_input": "Count: 1, 2, 3, 4,", "max_tokens": 32,
            "exclude_input_in_output": True}
    free = http_generate(triton_server, body).json()["text_output"]
    assert " 7" in free, free  # the model counts on
    stopped = http_generate(triton_server, {**body, "stop_words": ["7"]}).json()["text_output"]
    assert stopped.endswith("7") and len(stopped) < len(free)


# --- inflight batching ---------------------------------------------------------------------

def test_concurrent_streams_share_decode_steps(triton_server):
    before = engine_metrics(triton_server)
    lengths = [8, 12, 16, 20, 24, 28, 32, 40]
    prompts = [f"{PROMPTS[i % len(PROMPTS)]} (variant {i})" for i in range(8)]
    stream = GrpcStream(triton_server)
    try:
        for i, (prompt, n) in enumerate(zip(prompts, lengths)):
            stream.send("ensemble", ensemble_values(prompt, n, stream=True, min_tokens=n),
                        request_id=f"r{i}", parameters={"incremental_detokenize": True})
        texts = grpc_collect(stream, 8)
    finally:
        stream.close()

    def whole(prompt_and_length):
        prompt, n = prompt_and_length
        return http_generate(triton_server, {"text_input": prompt, "max_tokens": n,
                                             "min_tokens": n, "exclude_input_in_output": True,
                                             "return_num_output_tokens": True}).json()

    with ThreadPoolExecutor(len(prompts)) as pool:  # a batch of its own, other timing
        wholes = list(pool.map(whole, zip(prompts, lengths)))
    for i, n in enumerate(lengths):
        streamed = "".join(text for _, text, _ in texts[f"r{i}"])
        assert streamed == wholes[i]["text_output"]
        assert wholes[i]["num_output_tokens"] == n
    after = engine_metrics(triton_server)
    assert after["steps_with_multiple_decodes"] - before["steps_with_multiple_decodes"] >= 8
    assert after["max_running_seen"] >= 4


def test_request_arriving_mid_flight_starts_before_others_finish(triton_server):
    stream = GrpcStream(triton_server)
    try:
        stream.send("ensemble", ensemble_values("Tell me a long story.", 64, stream=True,
                                                min_tokens=64), request_id="long")
        first_long, _ = stream.results.get(timeout=300)  # the long one is decoding now
        stream.send("ensemble", ensemble_values("Hi", 4, stream=True, min_tokens=4),
                    request_id="short")
        texts = grpc_collect(stream, 2)
    finally:
        stream.close()
    short_end = texts["short"][-1][0]
    long_end = texts["long"][-1][0]
    assert short_end < long_end


def start_long_stream(server, model: str, request_id: str) -> GrpcStream:
    stream = GrpcStream(server)
    if model == "ensemble":
        values = ensemble_values("Write a very long essay about rivers.", 400, stream=True,
                                 min_tokens=400)
    else:
        values = {"input_ids": ([1, 2, 3, 4], "INT32"), "input_lengths": ([4], "INT32"),
                  "request_output_len": ([400], "INT32"), "min_tokens": ([400], "INT32"),
                  "streaming": ([True], "BOOL")}
    stream.send(model, values, request_id=request_id)
    for _ in range(3):  # decoding now, holding cache
        _, error = stream.results.get(timeout=300)
        assert error is None
    return stream


def test_client_disconnect_from_engine_stream_frees_its_cache(triton_server):
    before = wait_for_idle_cache(triton_server)
    stream = start_long_stream(triton_server, "tensorrt_llm", "victim-direct")
    time.sleep(1)  # the gauges refresh twice a second
    assert engine_metrics(triton_server)["free_kv_tokens"] < before["total_kv_tokens"]
    stream.close(cancel=True)  # the gRPC call is cancelled: Triton marks the request cancelled
    metrics = wait_for_idle_cache(triton_server, before["cancelled"] + 1)
    assert metrics["free_kv_tokens"] == metrics["total_kv_tokens"]
    assert metrics["cancelled"] == before["cancelled"] + 1
    assert metrics["generated_tokens"] - before["generated_tokens"] < 300


def _freed_after_leaving(server, leave) -> tuple[dict, dict, float]:
    """Engine metrics before, and once idle after ``leave()`` (a client abandoning a long
    ensemble stream); and the seconds from leaving until the cache was free again."""
    before = wait_for_idle_cache(server)
    left_at = leave()
    metrics = wait_for_idle_cache(server, before["cancelled"] + 1)
    return before, metrics, time.monotonic() - left_at


def _assert_stopped_early(before: dict, metrics: dict) -> None:
    assert metrics["free_kv_tokens"] == metrics["total_kv_tokens"]
    assert metrics["cancelled"] == before["cancelled"] + 1
    assert metrics["generated_tokens"] - before["generated_tokens"] < 300  # of 400


def test_an_http_generate_stream_client_that_leaves_frees_its_slot(triton_server):
    # Triton cancels the ensemble but not its running engine step; the step learns it from
    # postprocessing no longer acknowledging its responses (tritonllm.models.delivery).
    def leave():
        body = {"text_input": "Write a very long essay about rivers.", "max_tokens": 400,
                "min_tokens": 400}
        with http_generate(triton_server, {**body, "stream": True}, stream=True) as resp:
            events = (line for line in resp.iter_lines() if line.startswith(b"data: "))
            for _ in range(3):
                assert "error" not in json.loads(next(events)[len(b"data: "):])
        return time.monotonic()  # the connection is closed: the client has gone

    before, metrics, seconds = _freed_after_leaving(triton_server, leave)
    _assert_stopped_early(before, metrics)
    print(f"generate_stream client left: slot and cache free after {seconds:.2f} s")


def test_a_cancelled_ensemble_stream_without_a_stop_frees_its_slot(triton_server):
    # What tensorrtllm_backend's clients do on a gRPC stream, without the stop request.
    def leave():
        start_long_stream(triton_server, "ensemble", "victim-cancelled").close(cancel=True)
        return time.monotonic()

    before, metrics, seconds = _freed_after_leaving(triton_server, leave)
    _assert_stopped_early(before, metrics)
    print(f"ensemble stream cancelled: slot and cache free after {seconds:.2f} s")


def test_a_stream_from_the_engine_step_directly_is_not_taken_for_abandoned(triton_server):
    # No postprocessing acknowledges its responses: the delivery watch must leave it alone,
    # however long it streams (150 tokens: several times abandoned_stream_timeout_ms).
    before = wait_for_idle_cache(triton_server)
    stream = GrpcStream(triton_server)
    try:
        stream.send("tensorrt_llm", {
            "input_ids": ([1, 2, 3, 4], "INT32"), "input_lengths": ([4], "INT32"),
            "request_output_len": ([150], "INT32"), "min_tokens": ([150], "INT32"),
            "streaming": ([True], "BOOL")}, request_id="direct-long")
        tokens, final = 0, False
        while not final:
            result, error = stream.results.get(timeout=300)
            assert error is None, error
            final = result.get_response().parameters["triton_final_response"].bool_param
            ids = result.as_numpy("output_ids")
            tokens += 0 if ids is None else ids.shape[-1]
    finally:
        stream.close()
    assert tokens == 150
    assert wait_for_idle_cache(triton_server)["cancelled"] == before["cancelled"]


def test_stop_request_frees_an_ensemble_stream_cache(triton_server):
    # Triton 2.51 does not pass an ensemble's cancellation into its running engine step, so a
    # client stops a streamed ensemble request the TensorRT-LLM way: `stop` with its request id.
    before = wait_for_idle_cache(triton_server)
    stream = start_long_stream(triton_server, "ensemble", "victim-ensemble")
    stopper = GrpcStream(triton_server)
    try:
        stopper.send("tensorrt_llm", {"input_ids": ([0], "INT32"), "input_lengths": ([1], "INT32"),
                                      "request_output_len": ([1], "INT32"),
                                      "stop": ([True], "BOOL")}, request_id="victim-ensemble")
        metrics = wait_for_idle_cache(triton_server, before["cancelled"] + 1)
    finally:
        stopper.close()
        stream.close(cancel=True)
    assert metrics["free_kv_tokens"] == metrics["total_kv_tokens"]
    assert metrics["total_kv_tokens"] >= triton_server.engine.max_tokens_in_paged_kv_cache - 16
    assert metrics["cancelled"] == before["cancelled"] + 1
