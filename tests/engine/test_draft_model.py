"""Draft-target speculative decoding on the real SmolLM2 checkpoint: a depth-pruned copy (26 of
its 30 layers, not distilled: right part of the time, which is what these tests need) drafts,
the target verifies; greedy output is token for token what one token per step gives, sampled
seeded output too, and the draft model's cache is freed with its requests."""

from __future__ import annotations

import dataclasses

import pytest
from tests.engine.engine_helpers import chat_ids, exact_request, started_engines, tiny_llama

from tritonllm.engine import EngineConfig, GenerationRequest, LLMEngine, SamplingParams

CONFIG = EngineConfig(max_batch_size=8, max_num_tokens=128, max_input_len=512, max_seq_len=768,
                      max_tokens_in_paged_kv_cache=8192, num_threads=1)
DROPPED_LAYERS = (10, 13, 16, 19)  # fewer drafts are right without them (8 dropped: none)
PROMPTS = ["Copy this list exactly: apples, pears, plums, cherries, apples, pears, plums.",
           "Write a short poem about the sea.",
           "What is the capital of France? Answer in one sentence."]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, smollm_dir):
    import torch
    from transformers import AutoModelForCausalLM

    student = AutoModelForCausalLM.from_pretrained(str(smollm_dir), dtype=torch.float32)
    layers = student.model.layers
    student.model.layers = torch.nn.ModuleList(
        [layer for i, layer in enumerate(layers) if i not in DROPPED_LAYERS])
    student.config.num_hidden_layers = len(student.model.layers)
    out = tmp_path_factory.mktemp("student")
    student.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def prompts(smollm):
    return [chat_ids(smollm[1], text) for text in PROMPTS]


def draft_config(model_dir) -> EngineConfig:
    return dataclasses.replace(CONFIG, speculative_decoding_mode="draft_target",
                               speculative_model_dir=str(model_dir), max_draft_len=3)


@pytest.fixture(scope="module")
def engines(smollm_dir, student_dir):
    with started_engines(smollm_dir, CONFIG, draft_config(student_dir)) as pair:
        yield pair


def request(prompt, n=40, **fields) -> GenerationRequest:
    return exact_request(prompt, n, **fields)


def tokens(engine, requests) -> list[list[int]]:
    return [out[-1].token_ids for out in engine.generate(requests, timeout=600)]


def test_greedy_output_is_unchanged_and_the_student_drafts(engines, prompts):
    plain, spec = engines
    before = spec.stats()
    for prompt in prompts:
        assert tokens(spec, [request(prompt)]) == tokens(plain, [request(prompt)])
    stats = spec.stats()
    drafted = stats.spec_draft_tokens - before.spec_draft_tokens
    accepted = stats.spec_accepted_tokens - before.spec_accepted_tokens
    assert drafted > 0 and 0 < accepted < drafted  # a pruned student is right only sometimes


def test_batched_and_seeded_sampled_requests_keep_their_tokens(engines, prompts):
    plain, spec = engines
    sampled = SamplingParams(temperature=0.8, top_k=40, seed=3)
    batch = lambda: [request(prompts[0]), request(prompts[1], sampling=sampled),  # noqa
                     request(prompts[2], sampling=SamplingParams(repetition_penalty=1.2)),
                     request(prompts[2], n=12)]
    assert tokens(spec, batch()) == tokens(plain, batch())
    proposer = spec.speculator
    assert proposer.blocks.num_free_blocks == proposer.blocks.num_blocks  # all released


def test_the_target_as_its_own_draft_is_almost_always_right(smollm_dir, prompts):
    engine = LLMEngine(smollm_dir, draft_config(smollm_dir)).start()
    try:
        got = tokens(engine, [request(prompts[1], n=30)])
        stats = engine.stats()
    finally:
        engine.shutdown()
    assert len(got[0]) == 30
    # The draft computes the same logits one token at a time: only near-ties can differ.
    assert stats.spec_accepted_tokens >= 0.9 * stats.spec_draft_tokens > 0


def test_a_draft_model_of_another_vocabulary_is_refused(smollm_dir, tmp_path):
    tiny_llama(max_position_embeddings=1024).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="speculative_model_dir: .*vocab_size 300"):
        LLMEngine(smollm_dir, draft_config(tmp_path))
    with pytest.raises(ValueError, match="speculative_model_dir"):
        dataclasses.replace(CONFIG, speculative_decoding_mode="draft_target")


def test_drafts_are_the_draft_models_greedy_continuation_after_any_rollback(tiny_model):
    from tests.engine.engine_helpers import hf_greedy, tiny_runner

    from tritonllm.engine.draft_model import DraftModelProposer
    from tritonllm.engine.request import Sequence

    proposer = DraftModelProposer(tiny_runner(tiny_model), tiny_runner(tiny_model), 3)
    seq = Sequence(0, GenerationRequest("t", [5, 17, 42, 9, 33, 7], 40), 0)

    def propose_and_check():
        seq.num_computed_tokens = seq.num_tokens - 1  # decoding
        proposer.propose([seq], max_seq_len=128)
        assert seq.draft_ids == hf_greedy(tiny_model, seq.token_ids, 3, eos=-1)

    propose_and_check()
    seq.token_ids += seq.draft_ids  # all accepted, then a bonus token
    seq.token_ids.append(11)
    propose_and_check()
    seq.token_ids += [seq.draft_ids[0], (seq.draft_ids[1] + 1) % 300]  # one accepted, one not
    propose_and_check()
    proposer.release(seq.seq_id)
    assert proposer.blocks.num_free_blocks == proposer.blocks.num_blocks


def test_a_failing_draft_model_only_costs_the_step_its_drafts(tiny_model, monkeypatch):
    from tests.engine.engine_helpers import tiny_runner

    from tritonllm.engine.draft_model import DraftModelProposer
    from tritonllm.engine.request import Sequence

    proposer = DraftModelProposer(tiny_runner(tiny_model), tiny_runner(tiny_model), 3)
    seq = Sequence(0, GenerationRequest("f", [5, 17, 42, 9], 40), 0)
    seq.num_computed_tokens = seq.num_tokens - 1

    def broken(batch):
        raise RuntimeError("draft forward failed")

    monkeypatch.setattr(proposer.runner, "forward", broken)
    proposer.propose([seq], max_seq_len=128)
    assert seq.draft_ids == []
    monkeypatch.undo()
    proposer.propose([seq], max_seq_len=128)
    assert len(seq.draft_ids) == 3  # the cache is rebuilt from the request's tokens
