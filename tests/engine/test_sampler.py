"""Sampler: penalties and warpers against transformers' logits processors, bans, seeds."""

from __future__ import annotations

import pytest
import torch
from transformers import (NoBadWordsLogitsProcessor, RepetitionPenaltyLogitsProcessor,
                          TopKLogitsWarper, TopPLogitsWarper)

from tritonllm.engine import cpu_kernels
from tritonllm.engine.request import GenerationRequest, SamplingParams, Sequence
from tritonllm.engine.sampler import Sampler

VOCAB = 50


def make_seq(seq_id=0, prompt=(3, 4, 5), generated=(), sampling=None, **request_fields):
    request = GenerationRequest(f"r{seq_id}", list(prompt), 16,
                                sampling=sampling or SamplingParams(), **request_fields)
    seq = Sequence(seq_id, request, arrival_time_ns=0)
    for token in generated:
        seq.append_token(token, 0.0, 0)
    return seq


def random_logits(rows=1, seed=0):
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("kernels", ["1", "0"])  # ours where they build; torch's
def test_greedy_picks_argmax_with_its_log_prob(monkeypatch, kernels):
    monkeypatch.setenv(cpu_kernels.MODE_ENV, kernels)
    logits = random_logits(3)
    seqs = [make_seq(i) for i in range(3)]
    sampler = Sampler()
    assert (sampler._kernels is None) == (kernels == "0" or cpu_kernels.load() is None)
    results = sampler.sample(logits.clone(), seqs, [[]] * 3)
    expected = torch.log_softmax(logits, -1)
    for row, (token, log_prob, _) in enumerate(results):
        assert token == int(logits[row].argmax())
        assert log_prob == pytest.approx(float(expected[row, token]), abs=1e-6)


@pytest.mark.parametrize("vocab", [49152, 61])  # SmolLM2's, and a tail past the 8-wide loop
def test_greedy_kernel_equals_torch_argmax_and_log_softmax(vocab, kernel_isa):
    """Random rows, a tie (the first index wins, as torch's), banned (-inf) entries, a row
    with all but one banned, an all-banned row, and a NaN (torch's arg-max takes it)."""
    lib = cpu_kernels.load()
    if lib is None:
        pytest.skip("our CPU kernels are unavailable here")
    logits = torch.randn(7, vocab, generator=torch.Generator().manual_seed(1)) * 8
    logits[1, [3, vocab - 2]] = logits[1].max() + 1      # tie: index 3 first
    logits[2, ::2] = float("-inf")
    logits[3] = float("-inf")
    logits[3, vocab - 1] = 0.5
    logits[4] = float("-inf")
    logits[5, 17] = float("nan")
    logits[6, vocab - 1] = 100.0                         # the maximum in the tail
    tokens, log_probs = cpu_kernels.greedy(lib, logits)
    expected = logits.argmax(dim=-1)
    expected_lp = torch.log_softmax(logits, dim=-1).gather(1, expected[:, None])[:, 0]
    assert tokens == expected.tolist()
    assert torch.allclose(torch.tensor(log_probs), expected_lp, atol=1e-5, equal_nan=True)


def test_repetition_penalty_matches_transformers():
    seq = make_seq(prompt=(1, 2, 3, 40), generated=(7, 7, 12),
                   sampling=SamplingParams(repetition_penalty=1.7))
    logits = random_logits()
    expected = RepetitionPenaltyLogitsProcessor(1.7)(torch.tensor([seq.token_ids]),
                                                     logits.clone())
    token, log_prob, _ = Sampler().sample(logits.clone(), [seq], [[]])[0]
    assert token == int(expected.argmax())
    assert log_prob == pytest.approx(float(torch.log_softmax(expected, -1)[0, token]), abs=1e-6)


def test_presence_and_frequency_penalties_count_generated_tokens_only():
    logits = torch.zeros(1, VOCAB)
    logits[0, 9] = 2.0    # in the prompt only: not penalized
    logits[0, 11] = 2.5   # generated twice: 2.5 - 0.5 - 2 * 0.4 = 1.2
    logits[0, 12] = 1.9   # generated once: 1.9 - 0.5 - 0.4 = 1.0
    logits[0, 13] = 1.5   # never seen
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.4)
    seq = make_seq(prompt=(9, 9, 9), generated=(11, 12, 11), sampling=params)
    expected = logits[0].clone()
    expected[11], expected[12] = 1.2, 1.0
    token, log_prob, _ = Sampler().sample(logits, [seq], [[]])[0]
    assert token == 9
    assert log_prob == pytest.approx(float(torch.log_softmax(expected, -1)[9]), abs=1e-6)


def test_bad_words_match_transformers():
    bad = [[17], [4, 5, 30], [8, 31]]  # 30 is banned (prompt ends 4, 5); 31 is not
    seq = make_seq(prompt=(2, 4, 5), bad_words=bad)
    logits = random_logits(seed=3)
    logits[0, [17, 30, 31]] = 50.0
    expected = NoBadWordsLogitsProcessor(bad, eos_token_id=None)(
        torch.tensor([seq.token_ids]), logits.clone())
    token, _, _ = Sampler().sample(logits, [seq], [[]])[0]
    assert token == 31 == int(expected.argmax())
    assert torch.isinf(logits[0, [17, 30]]).all()


def test_min_tokens_masks_end_ids_until_reached():
    logits = random_logits()
    logits[0, 2] = 100.0
    early = make_seq(generated=(8,), sampling=SamplingParams(min_tokens=2))
    later = make_seq(seq_id=1, generated=(8, 9), sampling=SamplingParams(min_tokens=2))
    (early_token, _, _), (later_token, _, _) = Sampler().sample(
        torch.cat([logits, logits]), [early, later], [[2], [2]])
    assert early_token != 2 and later_token == 2


def test_top_k_and_top_p_keep_the_same_tokens_as_transformers():
    logits = random_logits(seed=4)
    params = SamplingParams(top_k=10, top_p=0.6, seed=1)
    warped = TopPLogitsWarper(0.6)(None, TopKLogitsWarper(10)(None, logits.clone()))
    allowed = set(torch.nonzero(torch.isfinite(warped[0])).flatten().tolist())
    sampler = Sampler()
    seen = set()
    for i in range(200):
        seq = make_seq(seq_id=i, sampling=SamplingParams(top_k=10, top_p=0.6, seed=i))
        token, log_prob, _ = sampler.sample(logits.clone(), [seq], [[]])[0]
        seen.add(token)
        expected = torch.log_softmax(warped[0], -1)[token]
        assert log_prob == pytest.approx(float(expected), abs=1e-5)
    assert seen == allowed and len(allowed) > 1
    assert not params.greedy


def test_seeded_draws_repeat_whatever_the_batch():
    logits = random_logits(4, seed=5)
    params = SamplingParams(temperature=1.3, seed=1234)

    def draws(rows, seq_index, steps=20):
        sampler = Sampler()
        seqs = [make_seq(i, sampling=params if i == seq_index else SamplingParams(
            temperature=0.9, seed=i)) for i in range(rows)]
        return [sampler.sample(logits[:rows].clone(), seqs, [[]] * rows)[seq_index]
                for _ in range(steps)]

    alone = draws(1, 0)
    assert draws(1, 0) == alone
    # the same row logits, now third in a batch of four with other seeded rows
    logits[2] = logits[0]
    assert draws(4, 2) == alone
    assert len({choice.token for choice in alone}) > 1  # it really samples


def test_temperature_zero_is_greedy_even_with_cuts():
    logits = random_logits(seed=6)
    seq = make_seq(sampling=SamplingParams(temperature=0.0, top_k=5, top_p=0.5))
    assert Sampler().sample(logits.clone(), [seq], [[]])[0][0] == int(logits.argmax())
