"""EngineConfig, SamplingParams, GenerationRequest: validation names the field and the limit."""

from __future__ import annotations

import pytest

import tritonllm.engine
from tritonllm.engine import EngineConfig, GenerationRequest, SamplingParams


def test_public_api_is_pinned():
    assert sorted(tritonllm.engine.__all__) == [
        "EngineConfig", "EngineStats", "GenerationOutput", "GenerationRequest", "LLMEngine",
        "QueueFullError", "SamplingParams"]
    for name in tritonllm.engine.__all__:
        assert getattr(tritonllm.engine, name).__name__ == name


def test_config_derives_blocks_and_rounds_capacity():
    config = EngineConfig(max_tokens_in_paged_kv_cache=1000, tokens_per_block=16)
    assert config.num_blocks == 63 and config.max_tokens_in_paged_kv_cache == 63 * 16
    assert EngineConfig().num_blocks == 8 * 4096 // 16
    assert EngineConfig().batch_scheduler_policy == "guaranteed_no_evict"


@pytest.mark.parametrize("fields, message", [
    (dict(max_batch_size=0), "max_batch_size: must be an integer >= 1"),
    (dict(tokens_per_block=-4), "tokens_per_block: must be an integer >= 1"),
    (dict(num_threads=-1), "num_threads: must be an integer >= 0 \\(0: automatic\\)"),
    (dict(max_input_len=4096, max_seq_len=4096), r"max_input_len: 4096 must be < max_seq_len"),
    (dict(max_num_tokens=4, max_batch_size=8), r"max_num_tokens: 4 must be >= max_batch_size"),
    (dict(max_num_tokens=256, enable_chunked_context=False),
     r"max_num_tokens: 256 must be >= max_input_len \(2048\) when enable_chunked_context"),
    (dict(batch_scheduler_policy="fifo"), "batch_scheduler_policy: 'fifo' is not one of"),
])
def test_config_errors_name_field_and_limit(fields, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(**fields)


def test_sampling_defaults_to_greedy_like_tensorrt_llm():
    assert SamplingParams().greedy
    assert SamplingParams(temperature=0.0, top_k=40).greedy
    assert SamplingParams(top_k=1, temperature=0.7).greedy
    assert not SamplingParams(temperature=0.7).greedy
    assert not SamplingParams(top_p=0.9).greedy
    assert not SamplingParams(top_k=40).greedy
    assert SamplingParams(repetition_penalty=1.2).has_penalties
    assert not SamplingParams(repetition_penalty=1.0).has_penalties


@pytest.mark.parametrize("fields, message", [
    (dict(top_p=0.0), r"top_p: must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p: must be in \(0, 1\]"),
    (dict(temperature=-0.1), "temperature: must be a finite number >= 0"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_k=-1), "top_k: must be >= 0"),
    (dict(repetition_penalty=0.0), "repetition_penalty: must be a finite number > 0"),
    (dict(presence_penalty=float("inf")), "presence_penalty: must be a finite number"),
    (dict(frequency_penalty=float("-inf")), "frequency_penalty"),
    (dict(seed=2**64), r"seed: must be in \[0, 2\*\*64 - 1\]"),
    (dict(min_tokens=-1), "min_tokens: must be >= 0"),
])
def test_sampling_errors_name_field_and_limit(fields, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**fields)


@pytest.mark.parametrize("fields, message", [
    (dict(prompt_ids=[]), "prompt_ids: the prompt is empty"),
    (dict(prompt_ids=[1, -3]), "prompt_ids: token ids must be >= 0"),
    (dict(prompt_ids=[1.5]), "prompt_ids: must be a list of integer token ids"),
    (dict(max_new_tokens=0), "max_new_tokens: must be >= 1"),
    (dict(max_new_tokens=None), "max_new_tokens: must be an integer"),
    (dict(request_id=""), "request_id: must be a non-empty string"),
    (dict(stop_words=[[]]), "stop_words: each word must hold at least 1 token id"),
    (dict(stop_words="stop"), "stop_words: must be a list of token-id lists"),
    (dict(bad_words=[[3, "x"]]), "bad_words: must be a list of integer token ids"),
    (dict(bad_words=[[-1]]), "bad_words: token ids must be >= 0"),
    (dict(end_id=-2), "end_id: must be >= -1"),
])
def test_request_errors_name_field(fields, message):
    base = dict(request_id="r", prompt_ids=[1, 2, 3], max_new_tokens=4)
    base.update(fields)
    with pytest.raises(ValueError, match=message):
        GenerationRequest(**base)


def test_request_normalizes_token_ids():
    numpy = pytest.importorskip("numpy")
    request = GenerationRequest("r", numpy.array([5, 6], dtype=numpy.int32), numpy.int64(3),
                                stop_words=[numpy.array([1, 2])])
    assert request.prompt_ids == [5, 6] and type(request.prompt_ids[0]) is int
    assert request.max_new_tokens == 3 and request.stop_words == [[1, 2]]


def test_max_queue_size_is_validated():
    assert EngineConfig(max_queue_size=0).max_queue_size == 0  # no limit
    with pytest.raises(ValueError, match="max_queue_size: must be an integer >= 0"):
        EngineConfig(max_queue_size=-1)
