"""n-gram speculative decoding: output token for token what one token per step gives (greedy,
seeded sampling, penalties, bad words, top log-probabilities; greedy also transformers'), on
the real SmolLM2 checkpoint, with the stop conditions, streaming, batch mixing and preemption
it must keep; and the sampling distribution, tested statistically on fixed logits."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from tests.engine.engine_helpers import chat_ids, exact_request, hf_greedy, started_engines

from tritonllm.engine import EngineConfig, GenerationRequest, LLMEngine, SamplingParams
from tritonllm.engine.request import Sequence
from tritonllm.engine.sampler import Choice, Sampler
from tritonllm.engine.speculative import MIN_DRAFTED, PAUSE_STEPS, NgramProposer, accept

EOS = 2
CONFIG = EngineConfig(max_batch_size=8, max_num_tokens=128, max_input_len=512, max_seq_len=768,
                      max_tokens_in_paged_kv_cache=8192, num_threads=1)
SPEC = dataclasses.replace(CONFIG, speculative_decoding_mode="ngram")
CODE = '''def area(width, height):
    """The area of a rectangle."""
    return width * height


def perimeter(width, height):
    """The perimeter of a rectangle."""
    return 2 * (width + height)
'''
GROUNDED = [f"Copy this code exactly, then stop.\n\n{CODE}",
            f"Rename the function area to surface in this code:\n\n{CODE}",
            "Repeat after me: the quick brown fox jumps over the lazy dog, "
            "the quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def tokenizer(smollm):
    return smollm[1]


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    return [chat_ids(tokenizer, text) for text in GROUNDED]


@pytest.fixture(scope="module")
def engines(smollm_dir):
    with started_engines(smollm_dir, CONFIG, SPEC) as pair:
        yield pair


def request(prompt, n=60, **fields) -> GenerationRequest:
    return exact_request(prompt, n, **fields)


def finals(engine, requests):
    return [out[-1] for out in engine.generate(requests, timeout=600)]


def test_greedy_output_is_unchanged_and_drafts_are_accepted(engines, prompts, smollm):
    plain, spec = engines
    before = spec.stats()
    for prompt in prompts:
        expected = finals(plain, [request(prompt)])[0]
        got = finals(spec, [request(prompt)])[0]
        assert got.token_ids == expected.token_ids
        assert got.finish_reason == expected.finish_reason
    assert finals(spec, [request(prompts[0], n=40)])[0].token_ids == \
        hf_greedy(smollm[0], prompts[0], 40, eos=EOS)
    stats = spec.stats()
    drafted = stats.spec_draft_tokens - before.spec_draft_tokens
    accepted = stats.spec_accepted_tokens - before.spec_accepted_tokens
    assert stats.spec_drafts > before.spec_drafts and 0 < accepted <= drafted
    # fewer steps than tokens: several tokens per step
    assert stats.steps - before.steps < stats.generated_tokens - before.generated_tokens


def test_streamed_output_equals_whole_and_the_log_probs_match(engines, prompts):
    plain, spec = engines
    expected = finals(plain, [request(prompts[0], return_log_probs=True)])[0]
    outputs = spec.generate([request(prompts[0], streaming=True, return_log_probs=True)],
                            timeout=600)[0]
    assert [t for o in outputs for t in o.token_ids] == expected.token_ids
    assert any(len(o.token_ids) > 1 for o in outputs)  # accepted runs stream together
    log_probs = [p for o in outputs for p in o.log_probs]
    assert log_probs == pytest.approx(expected.log_probs, abs=1e-4)


@pytest.mark.parametrize("fields", [
    {"max_new_tokens": 13},  # a length limit inside an accepted run
    {"stop_words": [[28705]]},  # replaced below by a word the output really contains
])
def test_stop_conditions_hold_inside_accepted_runs(engines, prompts, tokenizer, fields):
    plain, spec = engines
    if "stop_words" in fields:
        fields = {"stop_words": [tokenizer(" height", add_special_tokens=False).input_ids]}
    base = dict(prompt_ids=prompts[0], max_new_tokens=60, end_id=EOS,
                exclude_input_in_output=True)
    make = lambda: GenerationRequest(f"c-{time.monotonic_ns()}", **{**base, **fields})  # noqa
    expected, got = finals(plain, [make()])[0], finals(spec, [make()])[0]
    assert got.token_ids == expected.token_ids
    assert got.finish_reason == expected.finish_reason != "end_id"


def test_batches_mix_speculating_and_other_requests(engines, prompts):
    plain, spec = engines
    sampled = SamplingParams(temperature=0.8, top_k=20, seed=5)
    penalised = SamplingParams(repetition_penalty=1.3)
    batch = lambda: [request(prompts[0]), request(prompts[1], sampling=sampled),  # noqa
                     request(prompts[2], sampling=penalised), request(prompts[1])]
    before = spec.stats().steps_with_multiple_decodes
    assert [f.token_ids for f in finals(spec, batch())] == \
        [f.token_ids for f in finals(plain, batch())]
    assert spec.stats().steps_with_multiple_decodes > before


def test_speculation_survives_preemption(smollm_dir, prompts):
    tight = dataclasses.replace(SPEC, batch_scheduler_policy="max_utilization",
                                max_tokens_in_paged_kv_cache=320, max_batch_size=4)
    reference = dataclasses.replace(tight, speculative_decoding_mode="off")
    results = []
    for config in (reference, tight):
        engine = LLMEngine(smollm_dir, config).start()
        try:
            results.append([f.token_ids for f in finals(
                engine, [request(prompts[2], n=48) for _ in range(4)])])
            stats = engine.stats()
        finally:
            engine.shutdown()
    assert results[0] == results[1]
    assert stats.preempted > 0 and stats.spec_accepted_tokens > 0
    assert stats.free_kv_tokens == stats.total_kv_tokens


def test_the_proposer_drafts_what_followed_the_latest_match():
    proposer = NgramProposer(max_draft_len=3, max_matching_ngram_size=2)
    seq = Sequence(0, GenerationRequest("p", [5, 6, 7, 8, 9, 5, 6, 1, 5, 6], 20), 0)
    seq.num_computed_tokens = seq.num_tokens - 1
    proposer.propose([seq], max_seq_len=100)
    assert seq.draft_ids == [1, 5, 6]  # "5 6" last seen before "1 5 6"
    seq.token_ids.append(42)  # no earlier "6 42" or "42"
    seq.num_computed_tokens = seq.num_tokens - 1
    proposer.propose([seq], max_seq_len=100)
    assert seq.draft_ids == []
    near_limit = Sequence(1, GenerationRequest("q", [1, 2, 1], 2), 0)
    near_limit.num_computed_tokens = 2
    proposer.propose([near_limit], max_seq_len=100)
    assert near_limit.draft_ids == [2]  # room for one draft and the token after it
    matched_2 = Sequence(4, GenerationRequest("w", [7, 8, 9, 10, 11, 8, 9], 20), 0)
    matched_2.num_computed_tokens = matched_2.num_tokens - 1
    proposer.propose([matched_2], max_seq_len=100)
    assert matched_2.draft_ids == [10, 11, 8]  # a full-size match drafts max_draft_len
    NgramProposer(max_draft_len=3, max_matching_ngram_size=3).propose([matched_2], 100)
    assert matched_2.draft_ids == [10, 11]  # a shorter match drafts at most as many as matched


def test_a_request_whose_drafts_fail_pauses():
    proposer = NgramProposer(max_draft_len=4, max_matching_ngram_size=1)
    seq = Sequence(0, GenerationRequest("p", [1, 2, 1, 2, 1], 50), 0)
    seq.num_computed_tokens = seq.num_tokens - 1
    proposer.propose([seq], max_seq_len=100)
    assert seq.draft_ids
    proposer.record(seq, MIN_DRAFTED, 0)
    for _ in range(PAUSE_STEPS - 1):
        proposer.propose([seq], max_seq_len=100)
        assert seq.draft_ids == []
    proposer.propose([seq], max_seq_len=100)
    assert seq.draft_ids


def test_accept_takes_drafts_while_they_match_then_one_more():
    appended = []

    def run(drafts, targets, stop_at=None):
        appended.clear()

        def append(choice):
            appended.append(choice.token)
            return "length" if len(appended) == stop_at else None
        return accept(drafts, [Choice(t, 0.0) for t in targets], append)

    assert run([7, 8, 9], [7, 8, 5, 1]) == (2, None) and appended == [7, 8, 5]
    assert run([7, 8], [7, 8, 4]) == (2, None) and appended == [7, 8, 4]
    assert run([7, 8], [3, 8, 4]) == (0, None) and appended == [3]
    assert run([7, 8, 9], [7, 8, 9, 1], stop_at=2) == (1, "length") and appended == [7, 8]


@pytest.mark.parametrize("fields", [
    {"sampling": SamplingParams(repetition_penalty=1.3)},
    {"sampling": SamplingParams(presence_penalty=0.4, frequency_penalty=0.3)},
    {"bad_words": "width"},  # replaced below by the ids of a word the output contains
    {"num_top_log_probs": 3, "return_log_probs": True},
    {"sampling": SamplingParams(temperature=0.8, top_k=20, seed=9, repetition_penalty=1.2,
                                min_tokens=50)},
])
def test_penalties_bad_words_and_top_log_probs_speculate_with_unchanged_output(
        engines, prompts, tokenizer, fields):
    plain, spec = engines
    if fields.get("bad_words") == "width":
        fields = {"bad_words": [tokenizer(" width", add_special_tokens=False).input_ids]}
    before = spec.stats().spec_draft_tokens
    expected = finals(plain, [request(prompts[0], **fields)])[0]
    got = finals(spec, [request(prompts[0], **fields)])[0]
    assert got.token_ids == expected.token_ids
    assert [[t for t, _ in top] for top in got.top_log_probs] == \
        [[t for t, _ in top] for top in expected.top_log_probs]
    assert got.log_probs == pytest.approx(expected.log_probs, abs=1e-4)
    # It drafted; a repetition penalty rejects most copied drafts, which is its purpose.
    assert spec.stats().spec_draft_tokens > before


def test_each_output_counts_its_own_drafts(engines, prompts):
    _, spec = engines
    before = spec.stats()
    final = finals(spec, [request(prompts[2])])[0]
    stats = spec.stats()
    assert final.total_draft_tokens == stats.spec_draft_tokens - before.spec_draft_tokens > 0
    assert final.total_accepted_draft_tokens == \
        stats.spec_accepted_tokens - before.spec_accepted_tokens > 0


def test_forced_lengths_speculate_and_keep_their_length(engines, prompts):
    plain, spec = engines
    forced = lambda: request(prompts[2], n=40, sampling=SamplingParams(min_tokens=40))  # noqa
    before = spec.stats().spec_accepted_tokens
    expected, got = finals(plain, [forced()])[0], finals(spec, [forced()])[0]
    assert got.token_ids == expected.token_ids and len(got.token_ids) == 40
    assert spec.stats().spec_accepted_tokens > before


def test_nobody_drafts_in_a_large_batch():
    from tritonllm.engine.speculative import DISABLE_BY_BATCH_SIZE

    proposer = NgramProposer(max_draft_len=2, max_matching_ngram_size=2)

    def decoding(i):
        seq = Sequence(i, GenerationRequest(f"b{i}", [1, 2, 1, 2, 1], 50), 0)
        seq.num_computed_tokens = seq.num_tokens - 1
        return seq

    few = [decoding(i) for i in range(DISABLE_BY_BATCH_SIZE)]
    proposer.propose(few, max_seq_len=100)
    assert all(seq.draft_ids for seq in few)
    many = few + [decoding(DISABLE_BY_BATCH_SIZE)]
    proposer.propose(many, max_seq_len=100)
    assert not any(seq.draft_ids for seq in many)


# A speculative row's three positions over a 5-token vocabulary: the target's distributions.
ROW_LOGITS = torch.tensor([[1.5, 1.0, 0.2, 0.0, -1.0],
                           [0.3, 1.2, 0.8, -0.5, 0.0],
                           [0.0, 0.0, 1.0, 0.5, -0.3]])
DRAFTS = [1, 0]
CHI2_DF4_P001 = 18.467  # chi-square, 4 degrees of freedom: 99.9th percentile


def chi_square(tokens: list[int], probs: torch.Tensor) -> float:
    counts = torch.bincount(torch.tensor(tokens), minlength=len(probs)).double()
    expected = probs.double() * len(tokens)
    return float(((counts - expected) ** 2 / expected).sum())


def draws(seed: int) -> SamplingParams:
    return SamplingParams(top_k=5, seed=seed)  # all 5 tokens: a draw from the softmax


def speculative_tokens(sampler: Sampler, seed: int) -> list[int]:
    seq = Sequence(seed, GenerationRequest(f"r{seed}", [0], 9, sampling=draws(seed)), 0)
    seq.draft_ids = list(DRAFTS)
    choices = sampler.sample(ROW_LOGITS.clone(), [seq] * 3, [[]] * 3)
    emitted = []
    accept(DRAFTS, choices, lambda choice: emitted.append(choice.token))
    sampler.release(seed)
    return emitted


def one_per_step_tokens(sampler: Sampler, seed: int, count: int) -> list[int]:
    seq = Sequence(seed, GenerationRequest(f"p{seed}", [0], 9, sampling=draws(seed)), 0)
    tokens = [sampler.sample(ROW_LOGITS[j:j + 1].clone(), [seq], [[]])[0].token
              for j in range(count)]
    sampler.release(seed)
    return tokens


def test_sampled_verification_keeps_the_target_distribution_and_the_seeded_tokens():
    speculative, plain = Sampler(), Sampler()
    runs = [speculative_tokens(speculative, seed) for seed in range(3000)]
    probs = torch.softmax(ROW_LOGITS, dim=-1)
    firsts = [run[0] for run in runs]
    after_accepted = [run[1] for run in runs if run[0] == DRAFTS[0]]
    for run in runs:  # accepted drafts, then one token: the one that differs, or the bonus
        assert run[:-1] == DRAFTS[:len(run) - 1]
        assert len(run) == len(DRAFTS) + 1 or run[-1] != DRAFTS[len(run) - 1]
    # The first token is distributed as the target's, draft accepted or not; after an accepted
    # draft the next one is distributed as the target's at the next position.
    assert chi_square(firsts, probs[0]) < CHI2_DF4_P001
    assert chi_square(after_accepted, probs[1]) < CHI2_DF4_P001
    assert abs(len(after_accepted) / len(runs) - float(probs[0, DRAFTS[0]])) < 0.03
    assert any(run[:2] == DRAFTS and len(run) == 3 for run in runs)  # the bonus token
    # Coupling: a seeded request gets the tokens one token per step draws with the same seed.
    for seed, run in enumerate(runs[:300]):
        assert run == one_per_step_tokens(plain, seed, len(run))


def test_seeded_sampled_requests_speculate_with_unchanged_tokens(engines, prompts):
    plain, spec = engines
    sampling = SamplingParams(temperature=0.7, top_p=0.9, seed=11)
    make = lambda: [request(prompt, n=40, sampling=sampling) for prompt in prompts]  # noqa
    before = spec.stats().spec_accepted_tokens
    expected = [f.token_ids for f in finals(plain, make())]
    assert [f.token_ids for f in finals(spec, make())] == expected
    assert spec.stats().spec_accepted_tokens > before


def test_each_position_counts_the_drafts_before_it_as_generated():
    # Position 1 follows draft 1: a penalty on 1, or the bad word [1, 3], moves its arg-max.
    logits = torch.tensor([[0.0, 3.0, 0.0, 0.0, 0.0],
                           [0.0, 2.0, 1.5, 1.8, 0.0],
                           [0.0, 0.0, 0.0, 0.0, 1.0]])

    def chosen(end_ids=(), **fields) -> list[int]:
        seq = Sequence(0, GenerationRequest("p", [0], 9, **fields), 0)
        seq.draft_ids = [1, 3]
        choices = Sampler().sample(logits.clone(), [seq] * 3, [list(end_ids)] * 3)
        return [choice.token for choice in choices]

    assert chosen() == [1, 1, 4]
    assert chosen(sampling=SamplingParams(repetition_penalty=2.0)) == [1, 3, 4]
    assert chosen(sampling=SamplingParams(presence_penalty=0.5)) == [1, 3, 4]
    assert chosen(bad_words=[[1, 1], [1, 3]]) == [1, 2, 4]
    # The end token (4) is banned while fewer than min_tokens generated tokens precede it.
    assert chosen(end_ids=[4], sampling=SamplingParams(min_tokens=3)) == [1, 1, 0]
    assert chosen(end_ids=[4], sampling=SamplingParams(min_tokens=2)) == [1, 1, 4]
