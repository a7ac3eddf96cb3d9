"""ModelRunner against transformers' own LlamaForCausalLM forward, on tiny random Llamas.

Each test feeds known token sequences through our scheduler + runner (chunked prompts, then one
token per step, several sequences per batch) and compares every sampled row's logits with
transformers' logits at that position from one full forward of the whole sequence.
"""

from __future__ import annotations

import pytest
import torch

from tests.engine.engine_helpers import TINY_VOCAB, tiny_engine_config, tiny_llama
from tritonllm.engine.request import GenerationRequest, Sequence
from tritonllm.engine.runner import Linear, ModelRunner, onednn_linear_works
from tritonllm.engine.scheduler import Scheduler

# (prompt length, tokens generated after it): a long prompt chunked over steps, a 1-token
# prompt, and others joining at different steps.
SHAPES = [(30, 10), (5, 12), (1, 8), (9, 3), (20, 6)]


def teacher_forced_max_error(model, config, shapes=SHAPES, seed=1) -> float:
    """Largest |our logits - transformers' logits| over every sampled row of every step."""
    runner = ModelRunner.from_state_dict(model.config, model.state_dict(), config)
    scheduler = Scheduler(config)
    generator = torch.Generator().manual_seed(seed)
    sequences = [torch.randint(0, TINY_VOCAB, (p + n,), generator=generator).tolist()
                 for p, n in shapes]
    with torch.no_grad():
        expected = [model(torch.tensor([ids])).logits[0] for ids in sequences]
    for i, (prompt_len, new) in enumerate(shapes):
        request = GenerationRequest(str(i), sequences[i][:prompt_len], new)
        scheduler.add(Sequence(i, request, arrival_time_ns=0))
    worst = 0.0
    while scheduler.has_work():
        batch = scheduler.schedule()
        logits = runner.forward(batch)
        sampled = [seq for seq, sample in zip(batch.seqs, batch.sample) if sample]
        assert logits.shape == (len(sampled), TINY_VOCAB) and logits.dtype == torch.float32
        for row, seq in zip(logits, sampled):
            reference = expected[seq.seq_id][seq.num_tokens - 1]
            worst = max(worst, float((row - reference).abs().max()))
            if seq.num_generated < seq.request.max_new_tokens:
                seq.append_token(sequences[seq.seq_id][seq.num_tokens], 0.0, 0)
            else:
                scheduler.remove(seq)
    return worst


ROPE_VARIANTS = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
}


@pytest.mark.parametrize("rope", sorted(ROPE_VARIANTS))
def test_matches_transformers_for_rope_variants(rope):
    model = tiny_llama(rope_parameters=ROPE_VARIANTS[rope])
    assert teacher_forced_max_error(model, tiny_engine_config(max_num_tokens=12)) < 1e-4


@pytest.mark.parametrize("overrides", [
    dict(num_key_value_heads=4),  # plain multi-head attention
    dict(num_key_value_heads=1),  # multi-query
    dict(attention_bias=True, mlp_bias=True),
    dict(tie_word_embeddings=True, head_dim=24),  # head_dim not hidden/heads
])
def test_matches_transformers_for_architecture_variants(overrides):
    model = tiny_llama(seed=3, **overrides)
    assert teacher_forced_max_error(model, tiny_engine_config(block_size=8)) < 1e-4


def test_one_prompt_per_step_without_chunking():
    model = tiny_llama(seed=5)
    config = tiny_engine_config(max_num_tokens=64, enable_chunked_context=False, max_batch_size=2)
    assert teacher_forced_max_error(model, config) < 1e-4


def test_from_hf_dir_loads_a_saved_checkpoint(tmp_path):
    model = tiny_llama(seed=7, tie_word_embeddings=True)
    model.save_pretrained(tmp_path)
    config = tiny_engine_config()
    from_dir = ModelRunner.from_hf_dir(tmp_path, config)
    from_state = ModelRunner.from_state_dict(model.config, model.state_dict(), config)
    assert torch.equal(from_dir.layers[1].qkv.dense_weight(), from_state.layers[1].qkv.dense_weight())
    assert torch.equal(from_dir.lm_head.dense_weight(), model.model.embed_tokens.weight)
    assert from_dir.eos_token_ids == [2] and from_dir.vocab_size == TINY_VOCAB
    kv = from_dir.kv_cache
    assert kv.shape == (2, 2, config.num_blocks, config.block_size, 2, 16)
    assert kv.dtype == torch.float32


def test_refuses_max_seq_len_beyond_the_model():
    model = tiny_llama(max_position_embeddings=64)
    with pytest.raises(ValueError, match=r"max_seq_len: 128 exceeds the model's "
                                         r"max_position_embeddings \(64\)"):
        ModelRunner.from_state_dict(model.config, model.state_dict(), tiny_engine_config())


def test_refuses_incomplete_state_dict_and_other_models():
    model = tiny_llama()
    state = dict(model.state_dict())
    del state["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(ValueError, match="state_dict: missing tensor "
                                         "'model.layers.1.mlp.up_proj.weight'"):
        ModelRunner.from_state_dict(model.config, state, tiny_engine_config())
    model.config.model_type = "gpt2"
    with pytest.raises(ValueError, match="model_type: 'gpt2' is not supported"):
        ModelRunner.from_state_dict(model.config, model.state_dict(), tiny_engine_config())


def test_packed_and_plain_linear_agree():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 40, generator=generator)
    bias = torch.randn(96, generator=generator)
    x = torch.randn(33, 40, generator=generator)
    packed, plain = Linear(weight, bias), Linear(weight, bias, pack=False)
    assert packed.packed == onednn_linear_works() and not plain.packed
    for rows in (1, 3, 8, 33):
        expected = torch.nn.functional.linear(x[:rows], weight, bias)
        assert torch.allclose(packed(x[:rows]), expected, atol=1e-4)
        assert torch.equal(plain(x[:rows]), expected)
    assert torch.equal(packed.dense_weight(), weight)
    assert (packed.out_features, packed.in_features) == (96, 40)


def test_refuses_tensors_of_the_wrong_shape():
    model = tiny_llama()
    state = dict(model.state_dict())
    state["model.layers.1.self_attn.o_proj.weight"] = torch.zeros(64, 32)
    with pytest.raises(ValueError, match=r"state_dict: layers.1.o_proj has shape \(64, 32\), "
                                         r"the config implies \(64, 64\)"):
        ModelRunner.from_state_dict(model.config, state, tiny_engine_config())
