"""LLMEngine on the real SmolLM2-135M-Instruct checkpoint, against transformers' own results.

One engine (loaded with ``from_hf_dir``) serves every test of the module; transformers'
``generate(do_sample=False)`` and forward on the same checkpoint are the references.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from tests.engine.engine_helpers import hf_greedy

from tritonllm.engine import EngineConfig, GenerationRequest, LLMEngine, SamplingParams

EOS = 2
# One torch thread (process-wide, so transformers' references use it too): the fastest choice
# for these decode shapes on a 2-core machine shared with other work.
CONFIG = EngineConfig(max_batch_size=8, max_num_tokens=128, max_input_len=256, max_seq_len=512,
                      max_tokens_in_paged_kv_cache=4096, num_threads=1)
PLAIN_PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time",
                 "1, 2, 3, 4,", "In machine learning, a transformer is"]
CHAT_PROMPTS = ["What is the capital of France?", "Name three colors.",
                "Write a haiku about the sea."]
NEW_TOKENS = [20, 14, 24, 10, 16, 12, 18, 22]


@pytest.fixture(scope="module")
def tokenizer(smollm):
    return smollm[1]


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    """8 prompts of different lengths; the last three through the chat template."""
    plain = [tokenizer(p, add_special_tokens=False).input_ids for p in PLAIN_PROMPTS]
    chat = [tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                          add_generation_prompt=True, tokenize=False)
            for p in CHAT_PROMPTS]
    return plain + [tokenizer(c, add_special_tokens=False).input_ids for c in chat]


@pytest.fixture(scope="module")
def references(smollm, prompts) -> list[list[int]]:
    return [hf_greedy(smollm[0], p, n, eos=EOS) for p, n in zip(prompts, NEW_TOKENS)]


@pytest.fixture(scope="module")
def engine(smollm_dir):
    engine = LLMEngine(smollm_dir, CONFIG).start()
    yield engine
    engine.shutdown()


def greedy(index, prompts, **fields):
    return GenerationRequest(f"greedy-{index}-{time.monotonic_ns()}", prompts[index],
                             NEW_TOKENS[index], end_id=EOS, exclude_input_in_output=True,
                             **fields)


def test_greedy_alone_matches_transformers(engine, prompts, references):
    for i in range(5):
        [outputs] = engine.generate([greedy(i, prompts)], timeout=300)
        assert outputs[-1].token_ids == references[i], f"prompt {i}"


def test_eight_concurrent_requests_match_and_share_decode_steps(engine, prompts, references):
    before = engine.stats()
    results = engine.generate([greedy(i, prompts) for i in range(8)], timeout=300)
    after = engine.stats()
    assert [r[-1].token_ids for r in results] == references
    assert after.steps_with_multiple_decodes - before.steps_with_multiple_decodes >= 5
    assert after.max_running_seen == 8
    assert after.free_kv_tokens == after.total_kv_tokens == CONFIG.max_tokens_in_paged_kv_cache


SYSTEM = ("You are a careful assistant for a travel company. Answer in one short sentence, "
          "name the country when you name a city, and never invent opening hours or prices.")
QUESTIONS = ["What is the capital of Italy?", "Where is the Eiffel Tower?"]


def test_kv_cache_reuse_keeps_greedy_output_equal_to_transformers(engine, smollm):
    """Chat prompts sharing a long system prompt: the first fills the cache, the second reuses
    it and still matches transformers token for token."""
    model, tokenizer = smollm
    prompts = [tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
        add_generation_prompt=True, tokenize=True, return_dict=False) for q in QUESTIONS]
    shared = next(i for i, t in enumerate(prompts[0]) if t != prompts[1][i])
    assert shared >= 2 * CONFIG.tokens_per_block  # the reuse below skips whole blocks
    reference = hf_greedy(model, prompts[1], 8, eos=EOS)

    def request(i, new_tokens):
        return GenerationRequest(f"reuse-{i}-{time.monotonic_ns()}", prompts[i], new_tokens,
                                 end_id=EOS, exclude_input_in_output=True)

    engine.generate([request(0, 1)], timeout=300)  # computes the shared blocks
    before = engine.stats()
    [outputs] = engine.generate([request(1, 8)], timeout=300)
    after = engine.stats()
    assert outputs[-1].token_ids == reference
    reused = outputs[-1].kv_cache_reused_blocks
    assert reused >= shared // CONFIG.tokens_per_block
    assert after.prefix_cache_hits - before.prefix_cache_hits == reused * CONFIG.tokens_per_block
    assert after.free_kv_tokens == after.total_kv_tokens


def test_log_probs_match_transformers(engine, smollm, prompts):
    request = GenerationRequest("lp", prompts[5], 12, end_id=EOS, return_log_probs=True,
                                exclude_input_in_output=True)
    [[output]] = engine.generate([request], timeout=300)
    full = torch.tensor([prompts[5] + output.token_ids])
    with torch.no_grad():
        log_probs = torch.log_softmax(smollm[0](full).logits[0].float(), dim=-1)
    start = len(prompts[5]) - 1
    expected = [float(log_probs[start + i, t]) for i, t in enumerate(output.token_ids)]
    assert len(output.log_probs) == len(output.token_ids) > 0
    assert output.log_probs == pytest.approx(expected, abs=1e-3)
    assert output.cum_log_prob == pytest.approx(sum(expected), abs=1e-2)


def test_streaming_increments_concatenate_to_the_whole_result(engine, prompts, references):
    streamed, whole = [], []
    done = [threading.Event(), threading.Event()]

    def collect(sink, event):
        return lambda output: (sink.append(output), output.finished and event.set())

    engine.submit(greedy(2, prompts, streaming=True), collect(streamed, done[0]))
    plain = GenerationRequest("whole-2", prompts[2], NEW_TOKENS[2], end_id=EOS)
    engine.submit(plain, collect(whole, done[1]))
    assert done[0].wait(300) and done[1].wait(300)
    pieces = [o.token_ids for o in streamed]
    assert sum(pieces, []) == references[2]
    assert all(len(p) == 1 for p in pieces[:-1]) and streamed[-1].finished
    assert not any(o.finished for o in streamed[:-1])
    assert len(whole) == 1 and whole[0].token_ids == prompts[2] + references[2]
    assert whole[0].finish_reason == "length" and whole[0].num_input_tokens == len(prompts[2])


def test_stop_words_end_id_and_min_tokens(engine, prompts, references):
    reference = references[0]
    stop = reference[4:6]  # the generated tail must end with it; it stays in the output
    first = next(i for i in range(len(reference) - 1) if reference[i:i + 2] == stop)
    end = reference[7]     # a custom end id: generation stops before it, it is not output
    cut = reference.index(end)
    chat = len(references[5])  # the chat answer ends with <|im_end|> (id 2) before its budget
    assert chat < NEW_TOKENS[5]
    requests = [
        greedy(0, prompts, stop_words=[[49151, 49150], stop]),
        GenerationRequest("end", prompts[0], 20, end_id=end, exclude_input_in_output=True),
        GenerationRequest("min", prompts[5], chat + 4, end_id=EOS, exclude_input_in_output=True,
                          sampling=SamplingParams(min_tokens=chat + 4)),
        GenerationRequest("eos", prompts[5], chat + 4, end_id=EOS, exclude_input_in_output=True),
    ]
    stopped, ended, forced, natural = (r[-1] for r in engine.generate(requests, timeout=300))
    assert stopped.finish_reason == "stop_words" and stopped.token_ids == reference[:first + 2]
    assert ended.finish_reason == "end_id" and ended.token_ids == reference[:cut]
    assert natural.finish_reason == "end_id" and natural.token_ids == references[5]
    assert forced.finish_reason == "length" and len(forced.token_ids) == chat + 4
    assert forced.token_ids[:chat] == references[5] and EOS not in forced.token_ids


def test_penalties_and_bad_words_match_transformers(engine, smollm, prompts):
    model = smollm[0]
    bad = [[prompts[3][1]], [28, 216]]  # "," and a two-token sequence
    expected = [hf_greedy(model, prompts[3], 16, eos=EOS, repetition_penalty=1.3),
                hf_greedy(model, prompts[3], 16, eos=EOS, bad_words_ids=bad),
                hf_greedy(model, prompts[6], 16, eos=EOS, min_new_tokens=14)]
    requests = [
        GenerationRequest("rep", prompts[3], 16, end_id=EOS, exclude_input_in_output=True,
                          sampling=SamplingParams(repetition_penalty=1.3)),
        GenerationRequest("bad", prompts[3], 16, end_id=EOS, exclude_input_in_output=True,
                          bad_words=bad),
        GenerationRequest("min14", prompts[6], 16, end_id=EOS, exclude_input_in_output=True,
                          sampling=SamplingParams(min_tokens=14)),
    ]
    results = engine.generate(requests, timeout=300)
    assert [r[-1].token_ids for r in results] == expected
    assert prompts[3][1] not in results[1][-1].token_ids


def test_seeded_sampling_repeats_in_any_company(engine, prompts):
    params = SamplingParams(temperature=1.2, top_k=50, top_p=0.95, seed=4242)

    def sampled(name):
        return GenerationRequest(name, prompts[2], 16, end_id=EOS, sampling=params,
                                 exclude_input_in_output=True)

    [alone] = engine.generate([sampled("s1")], timeout=300)
    [again] = engine.generate([sampled("s2")], timeout=300)
    company = [greedy(i, prompts) for i in (0, 1, 4)]
    other_seed = GenerationRequest("s4", prompts[2], 16, end_id=EOS, exclude_input_in_output=True,
                                   sampling=SamplingParams(temperature=1.2, top_k=50, seed=7))
    results = engine.generate(company[:2] + [sampled("s3"), other_seed] + company[2:],
                              timeout=300)
    assert again[-1].token_ids == alone[-1].token_ids == results[2][-1].token_ids
    assert results[3][-1].token_ids != alone[-1].token_ids


def test_a_request_arriving_mid_flight_starts_before_the_others_finish(engine, prompts):
    outputs = {name: [] for name in ("a", "b", "c", "late")}
    done = {name: threading.Event() for name in outputs}

    def submit(name, index, new_tokens):
        request = GenerationRequest(name, prompts[index], new_tokens, streaming=True,
                                    sampling=SamplingParams(min_tokens=new_tokens))

        def on_output(output):
            outputs[name].append(output)
            if output.finished:
                done[name].set()
        engine.submit(request, on_output)

    for name, index in (("a", 0), ("b", 1), ("c", 2)):
        submit(name, index, 40)
    deadline = time.monotonic() + 300
    while min(len(outputs[n]) for n in "abc") < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    submit("late", 3, 4)
    assert all(event.wait(300) for event in done.values())
    late_first_token = outputs["late"][-1].first_token_time_ns
    assert late_first_token < min(outputs[n][-1].last_token_time_ns for n in "abc")
    assert outputs["late"][-1].last_token_time_ns < min(
        outputs[n][-1].last_token_time_ns for n in "abc")
    assert all(outputs[n][-1].num_output_tokens == 40 for n in "abc")


def test_cancelled_stream_frees_its_cache_to_the_full_value(engine, prompts):
    outputs = []
    stop = threading.Event()
    request = GenerationRequest("cancel-me", prompts[4], 200, streaming=True,
                                sampling=SamplingParams(min_tokens=200))
    engine.submit(request, outputs.append, is_cancelled=stop.is_set)
    deadline = time.monotonic() + 300
    while len(outputs) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert engine.stats().free_kv_tokens < CONFIG.max_tokens_in_paged_kv_cache
    stop.set()
    while not outputs[-1].finished:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert outputs[-1].finish_reason == "cancelled" and len(outputs) < 200
    assert engine.stats().free_kv_tokens == CONFIG.max_tokens_in_paged_kv_cache


@pytest.mark.parametrize("fields, message", [
    (dict(prompt_ids=[]), "prompt_ids: the prompt is empty"),
    (dict(prompt_ids=[5] * 257), r"prompt_ids: the prompt has 257 tokens, more than "
                                 r"max_input_len \(256\)"),
    (dict(max_new_tokens=0), "max_new_tokens: must be >= 1"),
    (dict(max_new_tokens=510), r"max_new_tokens: .* = 513 exceeds max_seq_len \(512\)"),
    (dict(prompt_ids=[49152]), r"prompt_ids: token id 49152 is out of range"),
    (dict(stop_words=[[1, 2], []]), "stop_words: each word must hold at least 1 token id"),
    (dict(stop_words=[[7]] * 1000), r"stop_words: 1000 words, more than max_stop_words \(64\)"),
    (dict(bad_words=[[-4]]), "bad_words: token ids must be >= 0"),
    (dict(sampling=dict(top_p=1.5)), r"top_p: must be in \(0, 1\]"),
    (dict(sampling=dict(temperature=-0.5)), "temperature: must be a finite number >= 0"),
])
def test_bad_requests_raise_naming_the_field(engine, fields, message):
    base = dict(request_id="bad", prompt_ids=[5, 6, 7], max_new_tokens=3)
    base.update(fields)
    with pytest.raises(ValueError, match=message):
        if "sampling" in base:
            base["sampling"] = SamplingParams(**base["sampling"])
        engine.submit(GenerationRequest(**base), lambda output: None)
    [outputs] = engine.generate([GenerationRequest("ok", [5, 6, 7], 3)], timeout=300)
    assert outputs[-1].finish_reason in ("length", "end_id")  # the engine keeps serving
