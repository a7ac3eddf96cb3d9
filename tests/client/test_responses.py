"""Responses -> Outputs -> Completion / Chunk, for both wire forms."""

import numpy as np
import pytest
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

from tritonllm.client import InvalidRequestError, ServerError
from tritonllm.client._grpc import TextDecoder, outputs_from_stream_response
from tritonllm.client._http import outputs_from_event, outputs_from_json
from tritonllm.client._results import CompletionBuilder, chunk_from


def test_http_response_keeps_ensemble_outputs_only_as_lists():
    obj = {"model_name": "ensemble", "model_version": "1", "id": "r", "text_output": " Paris",
           "num_input_tokens": 7, "num_output_tokens": 2, "cum_log_probs": -1.5,
           "output_log_probs": [-1.0, -0.5]}
    outputs = outputs_from_json(obj, 200)
    assert outputs == {"text_output": [" Paris"], "num_input_tokens": [7],
                       "num_output_tokens": [2], "cum_log_probs": [-1.5],
                       "output_log_probs": [-1.0, -0.5]}


def test_an_error_event_mid_stream_raises_with_the_server_message():
    with pytest.raises(ServerError, match="engine stopped") as caught:
        outputs_from_event('{"error": "engine stopped"}', 200)
    assert caught.value.http_status == 200


def test_invalid_json_from_the_server_is_a_server_error():
    with pytest.raises(ServerError, match="invalid JSON"):
        outputs_from_event("{not json", 200)


def _stream_response(**outputs) -> service_pb2.ModelStreamInferResponse:
    """A ModelStreamInferResponse as Triton sends it: output tensors with raw contents."""
    response = service_pb2.ModelStreamInferResponse()
    infer = response.infer_response
    infer.model_name, infer.id = "ensemble", "r"
    for name, (dtype, array) in outputs.items():
        infer.outputs.add(name=name, datatype=dtype, shape=array.shape)
        raw = serialize_byte_tensor(array).item() if dtype == "BYTES" else array.tobytes()
        infer.raw_output_contents.append(raw)
    return response


def test_grpc_response_becomes_outputs_with_text_decoded():
    response = _stream_response(
        text_output=("BYTES", np.array([["café".encode()]], dtype=object)),
        num_output_tokens=("INT32", np.array([[3]], dtype=np.int32)),
        output_log_probs=("FP32", np.array([[[-0.25, -0.5]]], dtype=np.float32)))
    outputs = outputs_from_stream_response(response, TextDecoder())
    assert outputs == {"text_output": ["café"], "num_output_tokens": [3],
                       "output_log_probs": [-0.25, -0.5]}


def test_a_character_split_across_responses_comes_out_whole():
    decoder = TextDecoder()
    halves = ["é".encode()[:1], "é".encode()[1:] + b"!"]
    texts = [outputs_from_stream_response(
        _stream_response(text_output=("BYTES", np.array([[h]], dtype=object))), decoder)
        for h in halves]
    assert [t["text_output"] for t in texts] == [[""], ["é!"]]


def test_a_stream_ending_inside_a_character_is_a_server_error():
    decoder = TextDecoder()
    decoder.decode([b"\xe4\xb8"])
    with pytest.raises(ServerError, match="not UTF-8"):
        decoder.decode([b""], final=True)


def test_in_band_grpc_error_raises_and_empty_responses_are_skipped():
    response = service_pb2.ModelStreamInferResponse(error_message="unexpected shape for input")
    with pytest.raises(InvalidRequestError, match="unexpected shape"):
        outputs_from_stream_response(response, TextDecoder())
    assert outputs_from_stream_response(service_pb2.ModelStreamInferResponse(),
                                        TextDecoder()) is None


def test_completion_joins_texts_and_log_probs_and_keeps_last_counts():
    builder = CompletionBuilder("r-1", log_probs=True)
    builder.add({"text_output": [" The"], "output_log_probs": [-0.5], "num_output_tokens": [1]},
                0.10)
    builder.add({"text_output": [" end"], "output_log_probs": [-0.25], "num_output_tokens": [2],
                 "num_input_tokens": [4], "cum_log_probs": [-0.75]}, 0.30)
    completion = builder.build()
    assert completion.text == " The end" and completion.request_id == "r-1"
    assert completion.log_probs == (-0.5, -0.25) and completion.cum_log_prob == -0.75
    assert (completion.num_input_tokens, completion.num_output_tokens) == (4, 2)
    assert (completion.ttft_s, completion.e2e_s) == (0.10, 0.30)


def test_completion_without_optional_outputs_has_none():
    builder = CompletionBuilder("r")
    # the server may send log probs nobody asked for: they are not reported
    builder.add({"text_output": ["x"], "output_log_probs": [], "cum_log_probs": [-2.0]}, 0.2)
    completion = builder.build()
    assert completion.num_input_tokens is None and completion.log_probs is None
    assert completion.cum_log_prob is None and completion.ttft_s == completion.e2e_s == 0.2


def test_no_response_at_all_is_a_server_error():
    with pytest.raises(ServerError, match="no response"):
        CompletionBuilder("r").build()


def test_chunk_carries_delta_index_and_arrival():
    outputs = {"text_output": [" Paris"], "output_log_probs": [-0.1]}
    chunk = chunk_from(outputs, 3, 0.42, log_probs=True)
    assert (chunk.text, chunk.index, chunk.arrival_s) == (" Paris", 3, 0.42)
    assert chunk.log_probs == (-0.1,)
    assert chunk_from(outputs, 3, 0.42, log_probs=False).log_probs is None
    assert chunk_from({}, 0, 0.0, log_probs=False).text == ""
