"""Payload building and response parsing, against the contract and real protocol messages."""

import json

import numpy as np
import pytest
from tritonclient.grpc import InferResult, service_pb2
from tritonclient.utils import serialize_byte_tensor

from tritonllm import contract
from tritonllm.loadtest.providers import (GrpcEngineProvider, GrpcEnsembleProvider,
                                          HttpGenerateProvider, HttpStreamProvider,
                                          OpenAIStreamProvider, ServerReportedError)
from tritonllm.loadtest.workloads import Prompt

PROMPT = Prompt(text=" alpha beta", token_ids=(10, 11), max_tokens=4, min_tokens=4)


def test_http_bodies_use_contract_names_and_carry_the_request_id():
    body = HttpGenerateProvider().body(PROMPT, "rid-1")
    assert body == {"id": "rid-1", "text_input": " alpha beta", "max_tokens": 4, "min_tokens": 4,
                    "stream": False, "exclude_input_in_output": True,
                    "return_num_input_tokens": True, "return_num_output_tokens": True,
                    "return_log_probs": False}  # what the client sends
    ensemble_inputs = {t.name for t in contract.ENSEMBLE.inputs}
    assert set(body) - {"id"} <= ensemble_inputs
    stream = HttpStreamProvider().body(PROMPT, "rid-2")
    assert stream["stream"] is True and stream["id"] == "rid-2"
    assert stream["incremental_detokenize"] is True  # a request parameter, not an input
    assert HttpStreamProvider(model="m").path == "/v2/models/m/generate_stream"


def test_unforced_and_chat_prompts():
    chat = Prompt(text='[{"role": "user", "content": "hi"}]', token_ids=(1,), max_tokens=8,
                  chat=True)
    body = HttpGenerateProvider().body(chat, "r")
    assert "min_tokens" not in body and body["apply_chat_template"] is True


def test_generate_response_parsing():
    data = {"model_name": "ensemble", "text_output": "Paris.", "num_input_tokens": 7,
            "num_output_tokens": [3]}
    chunk = HttpGenerateProvider().parse(data)
    assert (chunk.text, chunk.input_tokens, chunk.output_tokens, chunk.final) == ("Paris.", 7, 3,
                                                                                   True)
    with pytest.raises(ServerReportedError, match="max_tokens"):
        HttpGenerateProvider().parse({"error": "max_tokens: must be >= 1"})


def test_sse_lines():
    provider = HttpStreamProvider()
    event = {"text_output": " is", "num_output_tokens": 5, "num_input_tokens": 7}
    assert provider.parse_line(("data: " + json.dumps(event)).encode()) is None
    chunk = provider.parse_line(b"")  # the blank line ends the event
    assert (chunk.text, chunk.output_tokens, chunk.input_tokens) == (" is", 5, 7)
    assert provider.parse_line(b"") is None and provider.parse_line(": keep-alive") is None
    provider.parse_line('data: {"error": "boom"}')
    with pytest.raises(ServerReportedError, match="boom"):
        provider.parse_line("")
    provider.parse_line("data: {not json")
    with pytest.raises(ServerReportedError, match="unparseable"):
        provider.parse_line("\r\n")


def test_the_providers_send_what_the_client_sends():
    from tritonllm.client import GenerationOptions
    from tritonllm.client._http import json_body
    from tritonllm.client._request import build_request

    client = build_request("ensemble", PROMPT.text, GenerationOptions(max_tokens=4, min_tokens=4),
                           stream=True, request_id="r")
    assert HttpStreamProvider().body(PROMPT, "r") == json_body(client)


def openai_events(provider, events):
    chunks = []
    for event in events:
        for line in (f"data: {event}", ""):
            if (chunk := provider.parse_line(line)) is not None:
                chunks.append(chunk)
    return chunks


def test_openai_completions_stream():
    provider = OpenAIStreamProvider(model="ensemble")
    body = provider.body(PROMPT, "rid-3")
    assert provider.path == "/v1/completions" and body["prompt"] == " alpha beta"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["min_tokens"], body["temperature"]) == (4, 4, 0)
    chunks = openai_events(provider, [
        json.dumps({"choices": [{"index": 0, "text": " gamma", "finish_reason": None}]}),
        json.dumps({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}),
        json.dumps({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 4,
                                             "total_tokens": 6}}),
        "[DONE]"])
    assert [c.text for c in chunks] == [" gamma", "", "", ""]
    assert (chunks[2].input_tokens, chunks[2].output_tokens) == (2, 4)
    assert chunks[-1].final and not any(c.final for c in chunks[:-1])


def test_openai_chat_stream_and_errors():
    chat = Prompt(text='[{"role": "user", "content": "hi"}]', token_ids=(1,), max_tokens=8,
                  chat=True)
    provider = OpenAIStreamProvider(chat=True)
    body = provider.body(chat, "r")
    assert provider.path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "hi"}] and "min_tokens" not in body
    delta = {"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}
    assert openai_events(provider, [json.dumps(delta)])[0].text == "Hello"
    error = {"error": {"message": "max_tokens: too large", "type": "invalid_request_error"}}
    with pytest.raises(ServerReportedError, match="max_tokens: too large"):
        openai_events(provider, [json.dumps(error)])


def _by_name(inputs):
    return {i.name(): i for i in inputs}


def test_grpc_ensemble_inputs_match_the_contract():
    inputs = _by_name(GrpcEnsembleProvider(stream=True).inputs(PROMPT))
    assert set(inputs) == {"text_input", "max_tokens", "min_tokens", "stream",
                           "exclude_input_in_output", "return_num_input_tokens",
                           "return_num_output_tokens", "return_log_probs"}
    for name, infer_input in inputs.items():
        assert infer_input.datatype() == contract.ENSEMBLE.input(name).client_dtype
        assert infer_input.shape() == [1, 1]


def test_streamed_grpc_ensemble_requests_ask_for_exact_detokenization():
    assert GrpcEnsembleProvider(stream=True).parameters == {"incremental_detokenize": True}
    assert GrpcEnsembleProvider(stream=False).parameters == {}
    assert GrpcEngineProvider().parameters == {}


def test_grpc_engine_inputs_carry_token_ids():
    inputs = _by_name(GrpcEngineProvider(stream=False, end_id=2).inputs(PROMPT))
    assert inputs["input_ids"].shape() == [1, 2]
    assert inputs["input_ids"].datatype() == "INT32"
    assert inputs["streaming"].datatype() == "BOOL"
    for name in ("input_lengths", "request_output_len", "min_tokens", "end_id"):
        assert inputs[name].datatype() == contract.TENSORRT_LLM.input(name).client_dtype


def _result(outputs: dict, final: bool) -> InferResult:
    """A real ModelInferResponse, as the server sends it, wrapped by tritonclient."""
    response = service_pb2.ModelInferResponse(model_name="m", id="rid")
    for name, array in outputs.items():
        out = response.outputs.add(name=name, shape=list(array.shape))
        if array.dtype == np.object_:
            out.datatype = "BYTES"
            response.raw_output_contents.append(serialize_byte_tensor(array).item())
        else:
            out.datatype = {np.int32: "INT32"}[array.dtype.type]
            response.raw_output_contents.append(array.tobytes())
    response.parameters["triton_final_response"].bool_param = final
    return InferResult(response)


def test_grpc_ensemble_parse():
    result = _result({"text_output": np.array([[" Paris"]], dtype=np.object_),
                      "num_output_tokens": np.array([[2]], dtype=np.int32)}, final=False)
    chunk = GrpcEnsembleProvider().parse(result)
    assert (chunk.text, chunk.output_tokens, chunk.input_tokens, chunk.final) == (" Paris", 2,
                                                                                 None, False)
    empty_final = GrpcEnsembleProvider().parse(_result({}, final=True))
    assert empty_final.empty and empty_final.final


def test_grpc_engine_parse_trims_to_sequence_length():
    result = _result({"output_ids": np.array([[[5, 6, 0]]], dtype=np.int32),
                      "sequence_length": np.array([[2]], dtype=np.int32),
                      "num_output_tokens": np.array([[2]], dtype=np.int32)}, final=True)
    chunk = GrpcEngineProvider().parse(result)
    assert chunk.token_ids == (5, 6) and chunk.output_tokens == 2 and chunk.final


def test_guided_prompts_carry_their_guide_on_every_protocol():
    schema = {"type": "object"}
    guided = Prompt(text='[{"role": "user", "content": "hi"}]', token_ids=(1,), max_tokens=8,
                    chat=True, guide=("json_schema", json.dumps(schema)))
    body = HttpGenerateProvider().body(guided, "r")
    assert body["guided_decoding_guide_type"] == "json_schema"
    assert json.loads(body["guided_decoding_guide"]) == schema
    openai_body = OpenAIStreamProvider(model="m", chat=True).body(guided, "r")
    assert openai_body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "workload", "schema": schema}}
    engine = _by_name(GrpcEngineProvider().inputs(guided))
    assert engine["guided_decoding_guide_type"].datatype() == "BYTES"
    ensemble = _by_name(GrpcEnsembleProvider().inputs(guided))
    assert ensemble["guided_decoding_guide"].datatype() == "BYTES"
    regex = Prompt(text="x", token_ids=(1,), max_tokens=4, guide=("regex", "[a-z]+"))
    with pytest.raises(ValueError, match="no response_format for a 'regex' guide"):
        OpenAIStreamProvider(model="m").body(regex, "r")
