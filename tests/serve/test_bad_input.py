"""Bad input gets a clear error naming the field and the limit, and the server keeps serving.

Each case sends one bad request to the real server, checks the error message, then checks that
a normal request still succeeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

GOOD = {"text_input": "Hello", "max_tokens": 2}


def generate(server, body: dict) -> requests.Response:
    return requests.post(f"http://{server.http_url}/v2/models/ensemble/generate", json=body,
                         timeout=120)


@pytest.fixture
def still_serving(triton_server):
    yield
    resp = generate(triton_server, GOOD)
    assert resp.status_code == 200, resp.text
    assert resp.json()["text_output"]


HTTP_CASES = {
    "empty prompt": ({"text_input": "   ", "max_tokens": 4}, ["text_input", "empty"]),
    "prompt over max_input_len": ({"text_input": "word " * 1200, "max_tokens": 4},
                                  ["text_input", "max_input_len", "1024"]),
    "max_tokens zero": ({"text_input": "Hi", "max_tokens": 0}, ["max_tokens", ">= 1"]),
    "max_tokens negative": ({"text_input": "Hi", "max_tokens": -5}, ["max_tokens"]),
    "max_tokens past max_seq_len": ({"text_input": "Hi", "max_tokens": 5000},
                                    ["max_tokens", "max_seq_len", "2048"]),
    "top_p above 1": ({**GOOD, "top_p": 1.5}, ["top_p", "(0, 1]"]),
    "temperature negative": ({**GOOD, "temperature": -1.0}, ["temperature", ">= 0"]),
    "thousands of stop words": ({**GOOD, "stop_words": [f"w{i}" for i in range(3000)]},
                                ["stop_words", "3000", "32"]),
    "beam search": ({**GOOD, "beam_width": 4}, ["beam_width", "only 1"]),
    "several sequences": ({**GOOD, "num_return_sequences": 2}, ["num_return_sequences"]),
    "chat without JSON": ({"text_input": "not json", "apply_chat_template": True,
                           "max_tokens": 4}, ["text_input", "JSON"]),
    "missing max_tokens": ({"text_input": "Hi"}, ["max_tokens"]),
}


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_http_bad_input(triton_server, still_serving, case):
    body, fragments = HTTP_CASES[case]
    resp = generate(triton_server, body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["error"]
    for fragment in fragments:
        assert fragment in message, message


def test_http_wrong_json_type_is_refused(triton_server, still_serving):
    # Triton's HTTP frontend parses the JSON before any model runs; its message (not ours)
    # does not name the field, but the request fails and the server keeps serving.
    resp = generate(triton_server, {"text_input": "Hi", "max_tokens": "many"})
    assert resp.status_code >= 400
    assert "parse" in resp.json()["error"]


def _stream_error(server, inputs: list, model: str = "ensemble") -> str:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    results = []
    client.start_stream(callback=lambda result, error: results.append(error))
    try:
        client.async_stream_infer(model, inputs, request_id="bad")
    finally:
        client.stop_stream()
        client.close()
    assert results and results[0] is not None, "the bad request did not fail"
    return str(results[0])


def _tensor(name, array, dtype):
    tensor = grpcclient.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_grpc_invalid_utf8(triton_server, still_serving):
    inputs = [_tensor("text_input", np.array([[b"\xff\xfe bad"]], dtype=np.object_), "BYTES"),
              _tensor("max_tokens", np.array([[4]], dtype=np.int32), "INT32")]
    message = _stream_error(triton_server, inputs)
    assert "text_input" in message and "UTF-8" in message


def test_grpc_wrong_dtype(triton_server, still_serving):
    inputs = [_tensor("text_input", np.array([[b"Hi"]], dtype=np.object_), "BYTES"),
              _tensor("max_tokens", np.array([[4.0]], dtype=np.float32), "FP32")]
    message = _stream_error(triton_server, inputs)
    assert "max_tokens" in message and "INT32" in message


def test_grpc_wrong_shape(triton_server, still_serving):
    inputs = [_tensor("text_input", np.array([[b"Hi"]], dtype=np.object_), "BYTES"),
              _tensor("max_tokens", np.array([[4, 5]], dtype=np.int32), "INT32")]
    message = _stream_error(triton_server, inputs)
    assert "max_tokens" in message


def test_grpc_unsupported_lora(triton_server, still_serving):
    inputs = [_tensor("text_input", np.array([[b"Hi"]], dtype=np.object_), "BYTES"),
              _tensor("max_tokens", np.array([[4]], dtype=np.int32), "INT32"),
              _tensor("lora_task_id", np.array([[7]], dtype=np.uint64), "UINT64")]
    message = _stream_error(triton_server, inputs)
    assert "lora_task_id" in message and "not supported" in message


def test_engine_direct_bad_lengths(triton_server, still_serving):
    inputs = [_tensor("input_ids", np.array([[1, 2, 3]], dtype=np.int32), "INT32"),
              _tensor("input_lengths", np.array([[9]], dtype=np.int32), "INT32"),
              _tensor("request_output_len", np.array([[4]], dtype=np.int32), "INT32")]
    message = _stream_error(triton_server, inputs, model="tensorrt_llm")
    assert "input_lengths" in message


def test_stop_without_a_request_id_is_refused(triton_server, still_serving):
    body = {"input_ids": [0], "input_lengths": 1, "request_output_len": 1, "stop": True}
    resp = requests.post(f"http://{triton_server.http_url}/v2/models/tensorrt_llm/generate",
                         json=body, timeout=60)
    assert resp.status_code == 400
    assert "stop: send it with the id" in resp.json()["error"]


def test_stop_for_a_finished_request_is_answered(triton_server, still_serving):
    body = {"id": "long-gone", "input_ids": [0], "input_lengths": 1, "request_output_len": 1,
            "stop": True}
    resp = requests.post(f"http://{triton_server.http_url}/v2/models/tensorrt_llm/generate",
                         json=body, timeout=60)
    assert resp.status_code == 200, resp.text
