"""LLMEngine end to end on a tiny random Llama: fast checks of batching, policies, preemption,
cancellation, error isolation, validation and the idle loop (greedy results are compared with
transformers' own ``generate``)."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from tests.engine.engine_helpers import TINY_VOCAB, hf_greedy, tiny_engine, tiny_runner

from tritonllm.engine import GenerationOutput, GenerationRequest, LLMEngine, SamplingParams

PROMPTS = [[5, 17, 33, 101, 7, 9, 250, 64, 12, 88, 41, 3, 77, 19, 23, 140, 6, 8, 71, 99],
           [11, 12], [200], [44, 45, 46, 47, 48, 49, 50, 51, 52], [9, 8, 7, 6, 5, 4, 3, 31]]
NEW_TOKENS = [12, 20, 9, 16, 14]


@pytest.fixture(scope="module")
def references(tiny_model):
    return [hf_greedy(tiny_model, p, n) for p, n in zip(PROMPTS, NEW_TOKENS)]


def greedy_requests(**fields):
    return [GenerationRequest(f"g{i}", p, n, exclude_input_in_output=True, **fields)
            for i, (p, n) in enumerate(zip(PROMPTS, NEW_TOKENS))]


def final_tokens(outputs):
    return [o[-1].token_ids for o in outputs]


@pytest.mark.parametrize("overrides", [
    dict(),  # guaranteed_no_evict, chunked prompts (16-token steps)
    dict(max_num_tokens=64, enable_chunked_context=False),
    # a cache of 12 blocks of 4 tokens for 4 requests of up to 40 tokens: must preempt
    dict(batch_scheduler_policy="max_utilization", max_tokens_in_paged_kv_cache=48, max_seq_len=48,
         max_input_len=24),
])
def test_greedy_batches_match_transformers(tiny_model, references, overrides):
    engine = tiny_engine(tiny_model, **overrides)
    try:
        outputs = engine.generate(greedy_requests(), timeout=120)
        stats = engine.stats()
    finally:
        engine.shutdown()
    assert final_tokens(outputs) == references
    assert stats.steps_with_multiple_decodes > 0 and stats.max_running_seen == 4
    assert stats.free_kv_tokens == stats.total_kv_tokens and stats.completed == 5
    assert 0 < stats.forward_seconds < stats.step_seconds
    if overrides.get("batch_scheduler_policy") == "max_utilization":
        assert stats.preempted > 0
    else:
        assert stats.preempted == 0


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_cancel_frees_the_cache_at_once(tiny_model):
    engine = tiny_engine(tiny_model)
    outputs: list[GenerationOutput] = []
    flag = threading.Event()
    try:
        request = GenerationRequest("c", PROMPTS[0], 100, streaming=True,
                                    sampling=SamplingParams(min_tokens=100))
        engine.submit(request, outputs.append, is_cancelled=flag.is_set)
        wait_for(lambda: len(outputs) >= 3)
        assert engine.stats().free_kv_tokens < engine.stats().total_kv_tokens
        flag.set()
        wait_for(lambda: outputs[-1].finished)
        stats = engine.stats()
        assert outputs[-1].finish_reason == "cancelled" and len(outputs) < 100
        assert stats.free_kv_tokens == stats.total_kv_tokens and stats.cancelled == 1
        engine.submit(GenerationRequest("d", PROMPTS[1], 100, streaming=True), outputs.append)
        wait_for(lambda: outputs[-1].request_id == "d")
        assert engine.cancel("d") and not engine.cancel("unknown")
        wait_for(lambda: outputs[-1].finished)
        assert outputs[-1].finish_reason == "cancelled"
        assert engine.stats().free_kv_tokens == engine.stats().total_kv_tokens
    finally:
        engine.shutdown()


def test_a_failing_callback_fails_only_its_request(tiny_model, references):
    engine = tiny_engine(tiny_model)
    finals = []

    def broken(output):
        if not output.finished:
            raise RuntimeError("client went away")
        finals.append(output)

    try:
        engine.submit(GenerationRequest("bad", PROMPTS[0], 30, streaming=True), broken)
        outputs = engine.generate(greedy_requests()[1:], timeout=120)
        stats = engine.stats()
    finally:
        engine.shutdown()
    assert final_tokens(outputs) == references[1:]
    assert finals[0].finish_reason == "error" and "client went away" in finals[0].error
    assert stats.failed == 1 and stats.completed == 4


def test_two_engines_live_in_one_process(tiny_model, references):
    engines = [tiny_engine(tiny_model), tiny_engine(tiny_model, max_batch_size=2)]
    results = [None, None]

    def run(i):
        results[i] = engines[i].generate(greedy_requests(), timeout=120)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for engine in engines:
            engine.shutdown()
    assert final_tokens(results[0]) == final_tokens(results[1]) == references
    assert engines[1].stats().max_running_seen == 2


def test_idle_loop_sleeps(tiny_model):
    engine = tiny_engine(tiny_model)
    try:
        engine.generate(greedy_requests()[:1], timeout=60)
        steps = engine.stats().steps
        cpu_before = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu_before < 0.1  # no busy-wait
        assert engine.stats().steps == steps
    finally:
        engine.shutdown()


def test_shutdown_cancels_pending_and_refuses_new(tiny_model):
    engine = LLMEngine(tiny_runner(tiny_model))  # not started: requests stay queued
    outputs = []
    engine.submit(GenerationRequest("p", PROMPTS[1], 5), outputs.append)
    engine.shutdown()
    assert [o.finish_reason for o in outputs] == ["cancelled"]
    with pytest.raises(RuntimeError, match="shut down"):
        engine.submit(GenerationRequest("q", PROMPTS[1], 5), outputs.append)


BAD_REQUESTS = [
    (dict(prompt_ids=list(range(65))), r"prompt_ids: the prompt has 65 tokens, more than "
                                       r"max_input_len \(64\)"),
    (dict(prompt_ids=[1] * 60, max_new_tokens=69), r"max_new_tokens: prompt \(60\) \+ "
                                                   r"max_new_tokens \(69\) = 129 exceeds "
                                                   r"max_seq_len \(128\)"),
    (dict(prompt_ids=[TINY_VOCAB]), r"prompt_ids: token id 300 is out of range .*300"),
    (dict(end_id=TINY_VOCAB + 5), r"end_id: 305 is out of range \(vocab_size = 300\)"),
    (dict(stop_words=[[1]] * 65), r"stop_words: 65 words, more than max_stop_words \(64\)"),
    (dict(bad_words=[[1, 999]]), r"bad_words: a token id is out of range"),
    (dict(prompt_ids=[]), "prompt_ids: the prompt is empty"),
    (dict(max_new_tokens=0), "max_new_tokens: must be >= 1"),
    (dict(sampling=dict(top_p=0.0)), r"top_p: must be in \(0, 1\]"),
    (dict(sampling=dict(temperature=-1.0)), "temperature: must be a finite number >= 0"),
]


def test_bad_requests_name_the_field_and_the_limit(tiny_model):
    engine = tiny_engine(tiny_model)
    try:
        for fields, message in BAD_REQUESTS:
            base = dict(request_id="x", prompt_ids=[1, 2, 3], max_new_tokens=4)
            base.update(fields)
            with pytest.raises(ValueError, match=message):
                if isinstance(base.get("sampling"), dict):
                    base["sampling"] = SamplingParams(**base["sampling"])
                engine.submit(GenerationRequest(**base), lambda output: None)
        ok = engine.generate([GenerationRequest("x", [1, 2, 3], 4)], timeout=60)
        assert ok[0][-1].finish_reason == "length"  # still serving
    finally:
        engine.shutdown()


def test_requests_that_never_fit_the_cache_and_duplicate_ids(tiny_model):
    engine = tiny_engine(tiny_model, max_tokens_in_paged_kv_cache=64)
    try:
        with pytest.raises(ValueError, match=r"max_new_tokens: prompt \+ max_new_tokens = 70 "
                                             r"tokens can never fit the KV cache "
                                             r"\(max_tokens_in_paged_kv_cache = 64\)"):
            engine.submit(GenerationRequest("big", [1] * 10, 60), lambda output: None)
        done = threading.Event()
        engine.submit(GenerationRequest("dup", [1, 2], 40),
                      lambda output: output.finished and done.set())
        with pytest.raises(ValueError, match="request_id: 'dup' is already in flight"):
            engine.submit(GenerationRequest("dup", [1, 2], 4), lambda output: None)
        assert done.wait(60)
    finally:
        engine.shutdown()


def test_runner_config_must_match(tiny_model):
    runner = tiny_runner(tiny_model)
    with pytest.raises(ValueError, match="config: differs"):
        LLMEngine(runner, runner.config.__class__(max_batch_size=2, num_threads=1))
    assert torch.get_num_threads() == 1


def test_stop_words_wait_for_min_tokens(tiny_model, references):
    reference = references[1]
    stop = [reference[1]]  # would stop at the 2nd token
    later = next((i for i in range(4, len(reference)) if reference[i] == stop[0]), None)
    engine = tiny_engine(tiny_model)
    try:
        requests = [GenerationRequest(name, PROMPTS[1], NEW_TOKENS[1], stop_words=[stop],
                                      exclude_input_in_output=True,
                                      sampling=SamplingParams(min_tokens=min_tokens))
                    for name, min_tokens in (("early", 0), ("late", 4))]
        early, late = (o[-1] for o in engine.generate(requests, timeout=60))
    finally:
        engine.shutdown()
    assert early.finish_reason == "stop_words" and early.token_ids == reference[:2]
    if later is None:
        assert late.finish_reason == "length" and late.token_ids == reference
    else:
        assert late.finish_reason == "stop_words" and late.token_ids == reference[:later + 1]


def test_a_failing_step_fails_its_requests_and_the_loop_survives(tiny_model, references):
    engine = tiny_engine(tiny_model)
    schedule = engine.scheduler.schedule

    def broken_once():
        engine.scheduler.schedule = schedule
        raise RuntimeError("scheduler bug")

    outputs = []
    try:
        engine.scheduler.schedule = broken_once
        engine.submit(GenerationRequest("victim", PROMPTS[0], 5), outputs.append)
        wait_for(lambda: outputs and outputs[-1].finished)
        after = engine.generate(greedy_requests()[:1], timeout=60)
    finally:
        engine.shutdown()
    assert outputs[-1].finish_reason == "error" and "scheduler bug" in outputs[-1].error
    assert after[0][-1].token_ids == references[0]


def test_a_full_queue_refuses_at_once_and_the_admitted_finish(tiny_model, references):
    from tritonllm.engine import QueueFullError

    # One batch slot and one queue place: the third request waiting is refused.
    engine = LLMEngine(tiny_runner(tiny_model, max_batch_size=1, max_num_tokens=64,
                                   max_queue_size=1))  # not started yet: submits wait
    outputs: list[list[GenerationOutput]] = [[], []]
    requests = greedy_requests()
    try:
        for i in range(2):  # one takes the free slot, one the queue place
            engine.submit(requests[i], outputs[i].append)
        with pytest.raises(QueueFullError, match="max_queue_size: server busy.*Maximum queue "
                                                 "size of 1.*retry later"):
            engine.submit(requests[2], lambda output: None)
        assert engine.stats().rejected == 1
        engine.start()
        wait_for(lambda: all(o and o[-1].finished for o in outputs))
        stats = engine.stats()
    finally:
        engine.shutdown()
    assert final_tokens(outputs) == references[:2]
    assert stats.completed == 2 and stats.free_kv_tokens == stats.total_kv_tokens


def test_a_request_timeout_ends_it_and_frees_its_cache(tiny_model):
    # Stepped by hand (no loop thread): the request has run one step, then its time is up.
    engine = LLMEngine(tiny_runner(tiny_model, max_batch_size=1, max_num_tokens=64))
    outputs: list[GenerationOutput] = []
    request = GenerationRequest("t", PROMPTS[0], 100, timeout_s=0.2,
                                sampling=SamplingParams(min_tokens=100))
    engine.submit(request, outputs.append)
    engine.step()  # prefill: running, holding cache
    assert not outputs and engine.stats().free_kv_tokens < engine.stats().total_kv_tokens
    time.sleep(0.3)
    engine.step()  # the next step ends it before computing anything
    stats = engine.stats()
    engine.shutdown()
    final = outputs[-1]
    assert final.finished and final.finish_reason == "timeout"
    assert "timeout of 0.2 s expired" in final.error
    assert stats.cancelled == 1 and stats.free_kv_tokens == stats.total_kv_tokens
