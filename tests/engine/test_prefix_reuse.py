"""KV-cache reuse in the engine on a tiny random Llama: greedy output with reuse equals output
without it and transformers' own, through chunked prompts, preemption, cancellation, stop
words and timeouts, and every block comes back."""

from __future__ import annotations

import time

import pytest
from tests.engine.engine_helpers import hf_greedy, tiny_engine, tiny_runner

from tritonllm.engine import GenerationRequest, LLMEngine, SamplingParams

SHARED = [17, 5, 230, 64, 9, 12, 88, 41, 3, 77, 19, 23, 140, 6, 8, 71, 99, 33, 101, 7, 250, 4]
QUESTIONS = [[11, 12, 13], [200], [44, 45, 46, 47, 48, 49, 50], [9, 8, 7, 6, 5]]
NEW_TOKENS = [12, 16, 9, 14]
BLOCK = 4  # tiny_engine_config's tokens_per_block


@pytest.fixture(scope="module")
def references(tiny_model):
    return [hf_greedy(tiny_model, SHARED + q, n) for q, n in zip(QUESTIONS, NEW_TOKENS)]


def requests(tag: str, **fields) -> list[GenerationRequest]:
    return [GenerationRequest(f"{tag}{i}", SHARED + q, n, exclude_input_in_output=True, **fields)
            for i, (q, n) in enumerate(zip(QUESTIONS, NEW_TOKENS))]


@pytest.mark.parametrize("overrides", [
    dict(),  # guaranteed_no_evict, prompts chunked over 16-token steps
    # 16 blocks of 4 for 3 requests of up to 45 tokens: must preempt (and evict)
    dict(batch_scheduler_policy="max_utilization", max_tokens_in_paged_kv_cache=64, max_seq_len=48,
         max_input_len=32, max_batch_size=3),
])
@pytest.mark.parametrize("reuse", [True, False])
def test_greedy_output_is_the_same_with_and_without_reuse(tiny_model, references, overrides,
                                                          reuse):
    engine = tiny_engine(tiny_model, enable_kv_cache_reuse=reuse, **overrides)
    try:
        first, *rest = requests("r")
        outputs = engine.generate([first], timeout=60)  # fills the cache with the prefix
        outputs += engine.generate(rest, timeout=120)
        stats = engine.stats()
    finally:
        engine.shutdown()
    assert [o[-1].token_ids for o in outputs] == references
    assert stats.free_kv_tokens == stats.total_kv_tokens and stats.completed == 4
    assert stats.prefix_cache_queries >= sum(len(SHARED + q) for q in QUESTIONS)
    if reuse:
        assert stats.prefix_cache_hits >= 3 * (len(SHARED) // BLOCK) * BLOCK
        assert stats.prefix_cache_hits % BLOCK == 0 and stats.cached_kv_blocks > 0
        assert all(o[-1].kv_cache_reused_blocks > 0 for o in outputs[1:])
    else:
        assert stats.prefix_cache_hits == 0 and stats.cached_kv_blocks == 0
    if "batch_scheduler_policy" in overrides:
        assert stats.preempted > 0 and (stats.prefix_cache_evictions > 0 or not reuse)


def run_until_idle(engine: LLMEngine, limit: int = 500) -> None:
    for _ in range(limit):
        engine.step()  # the first one takes in what was submitted
        if not engine.scheduler.has_work():
            return
    raise AssertionError("engine made no progress")


def test_cancel_stop_words_and_timeout_free_shared_blocks(tiny_model, references):
    # Stepped by hand (no loop thread) so that every event happens at a known step.
    engine = LLMEngine(tiny_runner(tiny_model, max_num_tokens=64))
    outputs: dict[str, list] = {name: [] for name in ("warm", "cancel", "stop", "timeout")}
    warm, cancel, stop, timeout = requests("x")
    engine.submit(warm, outputs["warm"].append)
    run_until_idle(engine)
    hit = (len(SHARED) // BLOCK) * BLOCK
    engine.submit(GenerationRequest("cancel", cancel.prompt_ids, 100, streaming=True,
                                    sampling=SamplingParams(min_tokens=100)),
                  outputs["cancel"].append)
    engine.submit(GenerationRequest("stop", stop.prompt_ids, 16, exclude_input_in_output=True,
                                    stop_words=[[references[2][1]]]), outputs["stop"].append)
    engine.submit(GenerationRequest("timeout", timeout.prompt_ids, 100, timeout_s=0.2,
                                    sampling=SamplingParams(min_tokens=100)),
                  outputs["timeout"].append)
    engine.step()  # all three admitted past the shared prefix
    assert engine.stats().prefix_cache_hits == 3 * hit
    engine.step()
    engine.cancel("cancel")
    time.sleep(0.25)
    run_until_idle(engine)
    finals = {name: out[-1] for name, out in outputs.items()}
    assert finals["warm"].token_ids == references[0]
    assert finals["cancel"].finish_reason == "cancelled"
    assert finals["stop"].finish_reason == "stop_words"
    assert finals["stop"].token_ids == references[2][:2]
    assert finals["timeout"].finish_reason == "timeout"
    stats = engine.stats()
    assert stats.free_kv_tokens == stats.total_kv_tokens and stats.cached_kv_blocks > 0
    # the cache they shared is still right: a later request reuses it and matches transformers
    [again] = engine.generate([requests("y")[3]], timeout=60)
    engine.shutdown()
    assert again[-1].token_ids == references[3] and again[-1].kv_cache_reused_blocks > 0
    assert engine.stats().free_kv_tokens == engine.stats().total_kv_tokens
