"""The CPU engine step's tensor conversion: Triton inputs -> GenerationRequest -> outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tritonllm.engine import EngineConfig, GenerationOutput
from tritonllm.models.engine_step import (Wants, engine_config, engine_parameters, output_tensors,
                                          parse_request, stop_requested)
from tritonllm.tokenizer import InvalidInputError, to_word_list_format


def inputs(**extra) -> dict:
    base = {"input_ids": np.array([[5, 6, 7, 0]], dtype=np.int32),
            "input_lengths": np.array([[3]], dtype=np.int32),
            "request_output_len": np.array([[10]], dtype=np.int32)}
    return {**base, **{k: np.array([[v]]) for k, v in extra.items()}}


def test_request_fields_from_tensors():
    stop = to_word_list_format([[9, 10], [11]])[None]
    request, wants = parse_request("e1", {
        **inputs(runtime_top_k=np.int32(40), runtime_top_p=np.float32(0.5),
                 temperature=np.float32(0.7), seed=np.uint64(3), min_tokens=np.int32(2),
                 streaming=True, exclude_input_in_output=True, return_log_probs=True,
                 return_perf_metrics=True, end_id=np.int32(2)),
        "stop_words_list": stop})
    assert request.prompt_ids == [5, 6, 7]  # input_lengths trims the padding
    assert request.max_new_tokens == 10 and request.end_id == 2
    assert request.stop_words == [[9, 10], [11]]
    s = request.sampling
    assert (s.top_k, s.top_p, s.seed, s.min_tokens) == (40, 0.5, 3, 2)
    assert s.temperature == pytest.approx(0.7)
    assert request.streaming and request.exclude_input_in_output and request.return_log_probs
    assert wants == Wants(log_probs=True, perf=True)


@pytest.mark.parametrize("extra, message", [
    ({"beam_width": np.int32(2)}, "beam_width: only 1 is supported"),
    ({"num_return_sequences": np.int32(3)}, "num_return_sequences: only 1"),
    ({"return_generation_logits": True}, "return_generation_logits: not supported"),
    ({"lora_task_id": np.uint64(1)}, "lora_task_id: not supported"),
    ({"input_lengths": np.int32(9)}, "input_lengths: 9 is not in \\[1, 4\\]"),
    ({"runtime_top_p": np.float32(1.5)}, "top_p: must be in \\(0, 1\\]"),
    ({"temperature": np.float32(-1)}, "temperature"),
])
def test_unsupported_or_invalid_inputs_are_refused_by_name(extra, message):
    with pytest.raises(ValueError, match=message):
        parse_request("e1", {**inputs(), **{k: np.array([[v]]) for k, v in extra.items()}})


def test_batch_of_two_in_one_request_is_refused():
    two = {**inputs(), "input_lengths": np.array([[3], [3]], dtype=np.int32)}
    with pytest.raises(InvalidInputError, match="batch size 1"):
        parse_request("e1", two)


def test_output_tensors_shapes_and_optional_outputs():
    out = GenerationOutput("e1", [4, 5, 6], log_probs=[-0.1, -0.2, -0.3], cum_log_prob=-0.6,
                           finished=True, arrival_time_ns=1, first_token_time_ns=2,
                           num_input_tokens=3, num_output_tokens=3)
    plain = output_tensors(out, Wants())
    assert plain["output_ids"].tolist() == [[[4, 5, 6]]] and plain["output_ids"].dtype == np.int32
    assert plain["sequence_length"].tolist() == [[3]]
    assert plain["output_log_probs"].shape == (1, 1, 0)
    assert "arrival_time_ns" not in plain and "num_output_tokens" not in plain
    full = output_tensors(out, Wants(log_probs=True, perf=True, num_input_tokens=True,
                                     num_output_tokens=True))
    assert full["output_log_probs"].shape == (1, 1, 3)
    assert full["first_token_time_ns"].tolist() == [[2]]
    assert full["num_output_tokens"].tolist() == [[3]]


def test_engine_config_round_trips_through_string_parameters():
    config = EngineConfig(max_batch_size=4, scheduler_policy="max_utilization",
                          enable_chunked_context=False, max_num_tokens=2048,
                          kv_cache_tokens=8192)
    assert engine_config(engine_parameters(config)) == config
    assert engine_config({}) == EngineConfig()
    with pytest.raises(ValueError, match="parameter max_batch_size: expected int"):
        engine_config({"max_batch_size": "many"})


def test_stop_flag():
    assert stop_requested(inputs(stop=True))
    assert not stop_requested(inputs())
