"""One request, two wire forms: the HTTP generate body and the gRPC ModelInferRequest carry the
same inputs."""

import json

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, triton_to_np_dtype

from tritonllm.client import GenerationOptions
from tritonllm.client._grpc import request_proto
from tritonllm.client._http import generate_path, json_body
from tritonllm.client._request import build_request, messages_to_text

OPTIONS = GenerationOptions(max_tokens=5, temperature=0.7, seed=11, stop=["\n\n", "Q:"])


def test_request_holds_prompt_options_and_stream_flag():
    request = build_request("ensemble", "Héllo 世界", OPTIONS, stream=True)
    assert request.inputs["text_input"].tolist() == [["Héllo 世界".encode()]]
    assert request.inputs["stream"].tolist() == [[True]]
    assert "apply_chat_template" not in request.inputs
    assert request.stream and request.model == "ensemble"


def test_each_request_gets_a_fresh_id_unless_given():
    ids = {build_request("m", "x", OPTIONS, stream=False).request_id for _ in range(50)}
    assert len(ids) == 50
    assert build_request("m", "x", OPTIONS, stream=False, request_id="r-1").request_id == "r-1"


def test_prompt_must_be_text():
    with pytest.raises(ValueError, match="prompt"):
        build_request("m", b"bytes", OPTIONS, stream=False)


def test_chat_messages_travel_as_json_with_apply_chat_template():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Çа va?"}]
    text = messages_to_text(messages)
    assert json.loads(text) == messages
    request = build_request("m", text, OPTIONS, stream=False, chat=True)
    assert request.inputs["apply_chat_template"].tolist() == [[True]]


@pytest.mark.parametrize("messages, words", [
    ([], "messages: must be a non-empty list"),
    ("hi", "messages: must be a non-empty list"),
    ([{"role": "user"}], r"messages\[0\].content"),
    ([{"role": "user", "content": "a"}, ("user", "b")], r"messages\[1\]"),
    ([{"role": 1, "content": "a"}], r"messages\[0\].role"),
])
def test_bad_messages_raise_naming_the_message(messages, words):
    with pytest.raises(ValueError, match=words):
        messages_to_text(messages)


def test_http_body_uses_input_names_scalars_and_word_lists():
    request = build_request("ensemble", "Hi", OPTIONS, stream=False, request_id="abc")
    body = json_body(request)
    assert body["id"] == "abc"
    assert body["text_input"] == "Hi"
    assert body["max_tokens"] == 5 and isinstance(body["max_tokens"], int)
    assert body["seed"] == 11
    assert body["temperature"] == pytest.approx(0.7)
    assert body["stop_words"] == ["\n\n", "Q:"]
    assert body["stream"] is False and body["exclude_input_in_output"] is True
    json.dumps(body)  # plain JSON types only
    assert generate_path("ensemble", False) == "/v2/models/ensemble/generate"
    assert generate_path("ensemble", True) == "/v2/models/ensemble/generate_stream"


def test_grpc_request_carries_the_same_tensors():
    request = build_request("ensemble", "Héllo", OPTIONS, stream=True, request_id="abc")
    proto = request_proto(request)
    assert proto.id == "abc" and proto.model_name == "ensemble"
    assert [t.name for t in proto.inputs] == list(request.inputs)
    for tensor, raw in zip(proto.inputs, proto.raw_input_contents):
        expected = request.inputs[tensor.name]
        assert list(tensor.shape) == list(expected.shape)
        if tensor.datatype == "BYTES":
            decoded = deserialize_bytes_tensor(raw).reshape(expected.shape)
        else:
            decoded = np.frombuffer(raw, dtype=triton_to_np_dtype(tensor.datatype))
            decoded = decoded.reshape(expected.shape)
        assert decoded.tolist() == expected.tolist(), tensor.name
