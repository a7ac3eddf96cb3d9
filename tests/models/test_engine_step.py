"""The CPU engine step's tensor conversion: Triton inputs -> GenerationRequest -> outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tritonllm import contract
from tritonllm.engine import EngineConfig, GenerationOutput
from tritonllm.models.engine_step import (PRECEDING_WINDOW, StepSettings, StreamShaper, Wants,
                                          output_tensors, parse_request, stop_requested)
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
    assert wants == Wants(log_probs=True, perf=True, preceding_ids=True)  # streaming


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
                           num_input_tokens=3, num_output_tokens=3, kv_cache_blocks=2,
                           total_draft_tokens=8, total_accepted_draft_tokens=6)
    plain = output_tensors(out, Wants())
    # As TensorRT-LLM's backend: only output_ids and sequence_length unless asked; no
    # batch_index / sequence_index for one sequence in a batch of one.
    assert set(plain) == {"output_ids", "sequence_length"}
    assert plain["output_ids"].tolist() == [[[4, 5, 6]]] and plain["output_ids"].dtype == np.int32
    assert plain["sequence_length"].tolist() == [[3]]
    full = output_tensors(out, Wants(log_probs=True, perf=True, num_input_tokens=True,
                                     num_output_tokens=True))
    assert full["output_log_probs"].shape == (1, 1, 3)
    assert full["cum_log_probs"].tolist() == [[pytest.approx(-0.6)]]
    assert full["first_token_time_ns"].tolist() == [[2]]
    assert full["first_token_time_ns"].dtype == np.int64
    assert full["kv_cache_alloc_total_blocks"].tolist() == [[2]]
    assert full["kv_cache_reused_blocks"].tolist() == [[0]]
    assert full["acceptance_rate"].dtype == np.float32
    assert full["acceptance_rate"].tolist() == [[0.75]]
    assert (full["total_draft_tokens"].tolist(), full["total_accepted_draft_tokens"].tolist()) == (
        [[8]], [[6]])
    assert full["num_output_tokens"].tolist() == [[3]]
    perf = {name for name, _ in contract.PERF_OUTPUTS}
    assert len(perf) == 10 and perf <= set(full)


@pytest.mark.parametrize("extra, expected", [
    # (sampling inputs, (greedy, top_k, top_p)) as TensorRT-LLM's backend reads them
    ({}, (True, None, None)),
    ({"runtime_top_k": np.int32(1), "runtime_top_p": np.float32(0.0)}, (True, 1, None)),
    ({"runtime_top_p": np.float32(-0.5)}, (True, None, None)),  # top_p <= 0: unset
    ({"temperature": np.float32(0.7)}, (True, None, None)),  # no cut: greedy anyway
    ({"temperature": np.float32(0.7), "runtime_top_k": np.int32(0)}, (True, 0, None)),
    ({"temperature": np.float32(0.7), "runtime_top_p": np.float32(0.9)}, (False, None, 0.9)),
    ({"runtime_top_k": np.int32(40)}, (False, 40, None)),
])
def test_sampling_follows_the_backend(extra, expected):
    request, _ = parse_request("e1", inputs(**extra))
    s = request.sampling
    assert (s.greedy, s.top_k, s.top_p) == (expected[0], expected[1],
                                             None if expected[2] is None else pytest.approx(0.9))


def test_absent_inputs_take_the_backend_defaults():
    request, _ = parse_request("e1", inputs())
    assert request.sampling.seed == 0 and request.sampling.min_tokens == 0
    assert request.end_id == -1  # no end_id: no token ends generation
    assert not request.exclude_input_in_output  # the model parameter's default
    excluded, _ = parse_request("e1", inputs(), StepSettings(exclude_input_in_output=True))
    assert excluded.exclude_input_in_output


def test_streaming_needs_a_decoupled_model():
    assert parse_request("e1", inputs(streaming=True), StepSettings(decoupled=True))[0].streaming
    with pytest.raises(InvalidInputError, match="streaming: .*decoupled mode"):
        parse_request("e1", inputs(streaming=True), StepSettings(decoupled=False))
    assert not parse_request("e1", inputs(streaming=False), StepSettings(decoupled=False))[0].streaming


def test_step_settings_from_the_model_config():
    config = {"model_transaction_policy": {"decoupled": False},
              "parameters": {"exclude_input_in_output": {"string_value": "True"}}}
    assert StepSettings.from_model_config(config) == StepSettings(False, True)
    assert StepSettings.from_model_config({}) == StepSettings(False, False)


def test_empty_embedding_bias_is_accepted_and_a_real_one_refused():
    empty = {**inputs(), "embedding_bias": np.zeros((1, 0), dtype=np.float32)}
    assert parse_request("e1", empty)[0].prompt_ids == [5, 6, 7]
    bias = {**inputs(), "embedding_bias": np.ones((1, 8), dtype=np.float32)}
    with pytest.raises(InvalidInputError, match="embedding_bias: not supported"):
        parse_request("e1", bias)


def test_engine_config_round_trips_through_string_parameters():
    config = EngineConfig(max_batch_size=4, batch_scheduler_policy="max_utilization",
                          enable_chunked_context=False, max_num_tokens=2048,
                          max_tokens_in_paged_kv_cache=8192)
    assert EngineConfig.from_parameters(config.to_parameters()) == config
    assert EngineConfig.from_parameters({}) == EngineConfig()
    with pytest.raises(ValueError, match="parameter max_batch_size: expected int"):
        EngineConfig.from_parameters({"max_batch_size": "many"})
    with pytest.raises(ValueError, match="parameter enable_chunked_context: expected true"):
        EngineConfig.from_parameters({"enable_chunked_context": "yes"})


def test_stop_flag():
    assert stop_requested(inputs(stop=True))
    assert not stop_requested(inputs())


# --- StreamShaper: stream_interval and preceding_ids ------------------------------------------

def stream_outputs(ids: list[int]) -> list[GenerationOutput]:
    return [GenerationOutput("e1", [t], log_probs=[-float(t)], finished=i == len(ids) - 1)
            for i, t in enumerate(ids)]


def shaped_responses(ids: list[int], interval: int):
    shaper = StreamShaper(interval)
    sent = []
    for output in stream_outputs(ids):
        ready = shaper.shape(output)
        if ready is not None:
            sent.append((ready.token_ids, list(shaper.preceding), ready.log_probs, ready.finished))
    return sent


def test_stream_interval_sends_first_token_then_every_n_and_always_the_last():
    sent = shaped_responses(list(range(1, 11)), interval=4)
    assert [ids for ids, *_ in sent] == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]
    assert [preceding for _, preceding, _, _ in sent] == [[], [1], [1, 2, 3, 4, 5],
                                                          [2, 3, 4, 5, 6, 7, 8, 9]]
    assert sent[1][2] == [-2.0, -3.0, -4.0, -5.0]  # merged log-probs follow the ids
    assert [done for *_, done in sent] == [False, False, False, True]


def test_preceding_ids_are_the_last_eight_sent_and_empty_first():
    sent = shaped_responses(list(range(1, 21)), interval=1)
    assert sent[0][1] == []
    assert sent[1][1] == [1]
    assert sent[12][1] == list(range(5, 13))  # before token 13: the 8 ids sent last
    assert all(len(preceding) <= PRECEDING_WINDOW for _, preceding, _, _ in sent)


def test_stream_interval_must_be_positive_and_is_read_from_the_model_config():
    with pytest.raises(ValueError, match="stream_interval: must be >= 1, got 0"):
        StreamShaper(0)
    config = {"parameters": {"stream_interval": {"string_value": "4"}},
              "model_transaction_policy": {"decoupled": True}}
    assert StepSettings.from_model_config(config).stream_interval == 4


def test_cancellation_check_period_is_read_from_the_model_config():
    assert StepSettings().cancellation_check_period_ms == 100  # TensorRT-LLM's default
    config = {"parameters": {"cancellation_check_period_ms": {"string_value": "20"}}}
    assert StepSettings.from_model_config(config).cancellation_check_period_ms == 20
    with pytest.raises(ValueError, match="cancellation_check_period_ms: must be >= 1, got 0"):
        StepSettings(cancellation_check_period_ms=0)


def test_the_abandoned_stream_timeout_is_read_from_the_model_config():
    config = {"parameters": {"abandoned_stream_timeout_ms": {"string_value": "0"}}}
    assert StepSettings.from_model_config(config).abandoned_stream_timeout_ms == 0
    assert StepSettings.from_model_config({}).abandoned_stream_timeout_ms > 0
    with pytest.raises(ValueError, match="abandoned_stream_timeout_ms: must be >= 0"):
        StepSettings(abandoned_stream_timeout_ms=-5)


def test_only_streaming_responses_carry_preceding_ids():
    out = GenerationOutput("e1", [7], finished=False)
    streamed = output_tensors(out, Wants(preceding_ids=True), [5, 6])
    assert streamed["preceding_ids"].tolist() == [[[5, 6]]]
    assert output_tensors(out, Wants(preceding_ids=True), [])["preceding_ids"].shape == (1, 1, 0)
    assert "preceding_ids" not in output_tensors(out, Wants())


def guided_inputs(kind=None, guide=None) -> dict:
    extra = {}
    if kind is not None:
        extra["guided_decoding_guide_type"] = np.array([[kind.encode()]], dtype=np.object_)
    if guide is not None:
        extra["guided_decoding_guide"] = np.array([[guide.encode()]], dtype=np.object_)
    return {**inputs(), **extra}


def test_guided_decoding_inputs_become_the_requests_guide():
    request, _ = parse_request("e1", guided_inputs("json_schema", '{"type": "object"}'))
    assert (request.guide.type, request.guide.text) == ("json_schema", '{"type": "object"}')
    request, _ = parse_request("e1", guided_inputs("json"))
    assert (request.guide.type, request.guide.text) == ("json", "")
    assert parse_request("e1", inputs())[0].guide is None


@pytest.mark.parametrize("kind, guide, message", [
    ("xml", "<a/>", "guided_decoding_guide_type: must be one of \\['json', 'json_schema', "
                    "'regex', 'ebnf_grammar'\\], got 'xml'"),
    ("regex", None, "guided_decoding_guide: required"),
    (None, "[0-9]+", "guided_decoding_guide: sent without guided_decoding_guide_type"),
])
def test_guided_decoding_inputs_that_cannot_work_are_refused_by_name(kind, guide, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_request("e1", guided_inputs(kind, guide))


def test_top_log_probs_outputs_hold_k_per_token():
    request, wants = parse_request("e1", inputs(num_top_log_probs=np.int32(2)))
    assert request.num_top_log_probs == 2 and wants.top_log_probs == 2
    out = GenerationOutput("e1", [4, 5], top_log_probs=[[(4, -0.1), (9, -2.5)],
                                                       [(5, -0.2), (8, -1.9)]])
    tensors = output_tensors(out, wants)
    assert tensors[contract.TOP_LOG_PROB_IDS].tolist() == [[[[4, 9], [5, 8]]]]
    assert tensors[contract.TOP_LOG_PROB_IDS].dtype == np.int32
    assert tensors[contract.TOP_LOG_PROBS].shape == (1, 1, 2, 2)
    assert tensors[contract.TOP_LOG_PROBS].dtype == np.float32
    empty = output_tensors(GenerationOutput("e1", [], finished=True), wants)
    assert empty[contract.TOP_LOG_PROBS].shape == (1, 1, 0, 2)
    with pytest.raises(ValueError, match="num_top_log_probs: must be in \\[0, 20\\], got 21"):
        parse_request("e1", inputs(num_top_log_probs=np.int32(21)))


def test_held_stream_outputs_merge_their_top_log_probs():
    shaper = StreamShaper(stream_interval=2)
    first = GenerationOutput("e1", [1], top_log_probs=[[(1, -0.5)]])
    assert shaper.shape(first) is first
    assert shaper.shape(GenerationOutput("e1", [2], top_log_probs=[[(2, -0.4)]])) is None
    merged = shaper.shape(GenerationOutput("e1", [3], top_log_probs=[[(3, -0.3)]]))
    assert merged.top_log_probs == [[(2, -0.4)], [(3, -0.3)]]
