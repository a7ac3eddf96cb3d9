"""ModelRunner against transformers' own LlamaForCausalLM forward, on tiny random Llamas.

Each test feeds known token sequences through our scheduler + runner (chunked prompts, then one
token per step, several sequences per batch) and compares every sampled row's logits with
transformers' logits at that position from one full forward of the whole sequence.
"""

from __future__ import annotations

import contextlib
import shutil

import pytest
import torch

from tests.engine.engine_helpers import TINY_VOCAB, tiny_engine_config, tiny_llama, tiny_runner
from tritonllm.engine import cpu_kernels, kernel_build
from tritonllm.engine.request import GenerationRequest, Sequence
from tritonllm.engine.linear import Linear, onednn_linear_works
from tritonllm.engine.runner import FUSED_MAX_ROWS, ModelRunner
from tritonllm.engine.scheduler import ScheduledBatch, Scheduler

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
def test_matches_transformers_for_architecture_variants(overrides, kernel_isa):
    model = tiny_llama(seed=3, **overrides)
    assert teacher_forced_max_error(model, tiny_engine_config(tokens_per_block=8)) < 1e-4


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
    assert torch.equal(from_dir.weights.layers[1].qkv.dense_weight(), from_state.weights.layers[1].qkv.dense_weight())
    assert torch.equal(from_dir.weights.lm_head.dense_weight(), model.model.embed_tokens.weight)
    ids = torch.tensor([0, 5, TINY_VOCAB - 1, 5])  # tied: looked up in lm_head's panels
    assert torch.equal(from_dir.weights.embedding(ids), model.model.embed_tokens.weight[ids])
    assert from_dir.eos_token_ids == [2] and from_dir.vocab_size == TINY_VOCAB
    kv = from_dir.kv_cache
    assert kv.shape == (2, 2, config.num_blocks, config.tokens_per_block, 2, 16)
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


def linear_backends() -> list[str]:
    return (["kernels"] if cpu_kernels.load() is not None else []) + (
        ["onednn"] if onednn_linear_works() else []) + ["torch"]


@pytest.mark.parametrize("backend", linear_backends())
def test_every_linear_backend_equals_f_linear(backend, kernel_isa):
    generator = torch.Generator().manual_seed(0)
    # 97 rows: a last panel of one row (cpu_kernels.PANEL); K 41: tails of every unrolled loop
    weight = torch.randn(97, 41, generator=generator)
    bias = torch.randn(97, generator=generator)
    x = torch.randn(200, 41, generator=generator)
    linear = Linear(weight, bias, backend=backend)
    # every tile height of both builds, and rows past a tile and past a block of rows
    for rows in (*range(1, 14), 24, 25, FUSED_MAX_ROWS, 96, 97, 200):
        expected = torch.nn.functional.linear(x[:rows], weight, bias)
        assert torch.allclose(linear(x[:rows]), expected, atol=1e-4), rows
    assert torch.equal(linear.dense_weight(), weight)
    assert (linear.out_features, linear.in_features) == (97, 41)


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_kernel_linear_computes_every_row_on_any_thread_count(threads, kernel_isa):
    """Panels of the weight are tasks (4 each for a few rows of x, 1-2 for many); threads start
    on their own shares and take what is left of the others' (more threads than cores here:
    some are descheduled mid-call)."""
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here")
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(64 * 13 + 5, 41, generator=generator)
    x = torch.randn(100, 41, generator=generator)
    linear = Linear(weight, backend="kernels")
    with torch_threads(threads):
        for rows in (1, 5, 100):
            for _ in range(20):
                expected = torch.nn.functional.linear(x[:rows], weight)
                assert torch.allclose(linear(x[:rows]), expected, atol=1e-4), rows


def test_cpu_kernels_build_where_gcc_and_avx2_are(monkeypatch):
    if not shutil.which("g++") or not {"avx2", "fma"} <= kernel_build.cpu_flags():
        pytest.skip("no g++ or no AVX2/FMA here: the engine uses torch's kernels")
    assert cpu_kernels.load() is not None
    assert tiny_runner(tiny_llama()).kernels is not None
    monkeypatch.setenv(cpu_kernels.MODE_ENV, "0")
    assert cpu_kernels.load() is None
    runner = tiny_runner(tiny_llama())
    assert runner.kernels is None and runner.weights.layers[0].qkv.backend != "kernels"


@pytest.mark.parametrize("overrides", [dict(), dict(num_key_value_heads=1, head_dim=24)])
def test_matches_transformers_with_torch_kernels_only(monkeypatch, overrides):
    """The path of a machine where our kernels cannot be built (SDPA views and gathers,
    oneDNN's packed linear)."""
    monkeypatch.setenv(cpu_kernels.MODE_ENV, "0")
    model = tiny_llama(seed=3, **overrides)
    assert teacher_forced_max_error(model, tiny_engine_config(tokens_per_block=8)) < 1e-4


def test_refuses_tensors_of_the_wrong_shape():
    model = tiny_llama()
    state = dict(model.state_dict())
    state["model.layers.1.self_attn.o_proj.weight"] = torch.zeros(64, 32)
    with pytest.raises(ValueError, match=r"state_dict: layers.1.o_proj has shape \(64, 32\), "
                                         r"the config implies \(64, 64\)"):
        ModelRunner.from_state_dict(model.config, state, tiny_engine_config())


@pytest.mark.parametrize("weights", ["fp32", "int8"])
@pytest.mark.parametrize("threads", [1, 3])
def test_fused_decode_layer_equals_the_torch_layer(weights, threads, kernel_isa):
    """A decode-only step of rows with different contexts and non-consecutive blocks: one
    ``tl_decoder_layer`` call per layer gives the torch path's logits and writes the same K/V.
    With 3 threads, o and down (2 tasks each, added to the residual) leave a thread without a
    share of its own: it takes the others' (a task run twice would add twice)."""
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here")
    model = tiny_llama(seed=11, num_key_value_heads=1, attention_bias=True, mlp_bias=True)
    with torch_threads(threads):
        runner = tiny_runner(model, tokens_per_block=4, weights=weights, num_threads=threads)
        fused_step_equals_op_by_op(runner, weights)


def fused_step_equals_op_by_op(runner, weights):
    generator = torch.Generator().manual_seed(2)
    runner.kv_cache.normal_(generator=generator)  # cached K/V the rows attend to
    batch = ScheduledBatch(num_decodes=3)
    for row, (table, context) in enumerate([([5, 2, 9], 11), ([0], 1), ([7, 3], 8)]):
        slot = table[(context - 1) // 4] * 4 + (context - 1) % 4
        batch.query_lens.append(1), batch.context_lens.append(context)
        batch.block_tables.append(table), batch.sample.append(True)
        batch.input_ids.append(10 + row), batch.positions.append(context - 1)
        batch.slot_mapping.append(slot), batch.seqs.append(None)
    cache = runner.kv_cache.clone()
    assert runner.prepare(batch).fused is not None
    fused = runner.forward(batch)
    fused_cache, runner.kv_cache[:] = runner.kv_cache.clone(), cache
    runner.fuse_layers = False
    assert runner.prepare(batch).fused is None
    # int8: the 15-bit rounding of activations can land one step apart after a differently
    # ordered RMSNorm sum, which moves logits by ~1e-4 of their size (0.3e-3 here); int4's
    # weights carry such a step ~3x further (1.0e-3 here, mean 7e-5)
    tolerance = {"fp32": 1e-4, "int8": 1e-3, "int4": 2e-3}[weights]
    error = (fused - runner.forward(batch)).abs().max().item()
    assert error < tolerance, error
    assert torch.allclose(fused_cache, runner.kv_cache, atol=tolerance)


@pytest.mark.parametrize("weights", ["fp32", "int8"])
@pytest.mark.parametrize("threads", [1, 3])
def test_fused_layer_runs_prompt_chunks_like_the_torch_layer(weights, threads):
    """A step of two decode rows, a prompt chunk after 5 cached tokens and a whole prompt
    (9 tokens): one ``tl_decoder_layer`` call per layer, each prompt token attending like a
    decode row whose context ends at it, gives every token's logits of the op-by-op path
    (causal SDPA over the chunk) and writes the same K/V."""
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here")
    model = tiny_llama(seed=5, num_key_value_heads=2)
    with torch_threads(threads):
        runner = tiny_runner(model, tokens_per_block=4, weights=weights, num_threads=threads)
        fused_chunks_equal_op_by_op(runner, weights)


def fused_chunks_equal_op_by_op(runner, weights):
    runner.kv_cache.normal_(generator=torch.Generator().manual_seed(3))
    batch = ScheduledBatch(num_decodes=2)
    rows = [([5, 2, 9], 11, 1), ([6], 3, 1), ([1, 8], 8, 3), ([3, 4], 4, 4)]  # table, context, n
    for row, (table, context, n) in enumerate(rows):
        batch.query_lens.append(n), batch.context_lens.append(context)
        batch.block_tables.append(table), batch.sample.append(True), batch.seqs.append(None)
        for position in range(context - n, context):
            batch.input_ids.append(20 + row + position), batch.positions.append(position)
            batch.slot_mapping.append(table[position // 4] * 4 + position % 4)
    cache = runner.kv_cache.clone()
    step = runner.prepare(batch)
    assert step.fused is not None and step.fused.B == 9
    assert step.decode_contexts.tolist() == [11, 3, 6, 7, 8, 1, 2, 3, 4]
    fused = runner.forward(batch, all_tokens=True)
    fused_cache, runner.kv_cache[:] = runner.kv_cache.clone(), cache
    runner.fuse_layers = False
    assert runner.prepare(batch).fused is None
    reference = runner.forward(batch, all_tokens=True)
    # relative to the logits' size: int8 rounds activations to 15 bits (see the test above)
    tolerance = 1e-5 if weights == "fp32" else 1e-3
    error = (fused - reference).abs().max().item() / reference.abs().max().item()
    assert error < tolerance, error
    assert torch.allclose(fused_cache, runner.kv_cache, atol=1e-4 if weights == "fp32" else 1e-3)


def test_steps_past_kernel_max_rows_run_op_by_op():
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here")
    runner = tiny_runner(tiny_llama(), tokens_per_block=4)
    for n, fused in ((FUSED_MAX_ROWS, True), (FUSED_MAX_ROWS + 1, False)):
        table = list(range(-(-n // 4)))
        batch = ScheduledBatch(query_lens=[n], context_lens=[n], block_tables=[table],
                               sample=[True], input_ids=[7] * n, positions=list(range(n)),
                               slot_mapping=list(range(n)), seqs=[None])
        assert (runner.prepare(batch).fused is not None) == fused, n


@contextlib.contextmanager
def torch_threads(count: int):
    """``torch.set_num_threads(count)`` for the block: our kernels take their thread count from
    it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("context", [40, 200, 1000])
def test_decode_attention_kernel_splits_a_lone_context_and_merges_the_parts(context, kernel_isa):
    """One row with one KV head is fewer (row, head) pairs than threads: its context is
    attended in parts of >= 64 positions, merged by their maxima (40: one part, the others
    empty); equal to SDPA either way."""
    lib = cpu_kernels.load()
    if lib is None:
        pytest.skip("our CPU kernels are unavailable here")
    generator = torch.Generator().manual_seed(context)
    heads, d, block = 4, 64, 16
    blocks = -(-context // block)
    keys, values = (torch.randn(blocks + 3, block, 1, d, generator=generator) for _ in range(2))
    keys[1, 3] *= 6  # a peaked score in the middle of the context
    q = torch.randn(1, heads, d, generator=generator)
    order = torch.randperm(blocks + 3, generator=generator)[:blocks]
    tables = order.to(torch.int32)[None]
    contexts = torch.tensor([context], dtype=torch.int32)
    for threads in (1, 2, 4):
        with torch_threads(threads):
            out = cpu_kernels.decode_attention(lib, q, keys, values, tables, contexts, d ** -0.5)
        slots = [int(tables[0, t // block]) * block + t % block for t in range(context)]
        k, v = (c.view(-1, 1, d)[slots].transpose(0, 1)[None] for c in (keys, values))
        expected = torch.nn.functional.scaled_dot_product_attention(
            q[0][None, :, None], k, v, enable_gqa=True)[0, :, 0]
        assert torch.allclose(out[0], expected, atol=1e-5), threads


@pytest.mark.parametrize("d", [20, 72])  # tails past the 8-wide and the 64-wide loops
def test_decode_attention_kernel_equals_sdpa(d, kernel_isa):
    """Rows of different contexts through scattered blocks, grouped heads, peaked and flat
    softmaxes."""
    lib = cpu_kernels.load()
    if lib is None:
        pytest.skip("our CPU kernels are unavailable here")
    generator = torch.Generator().manual_seed(0)
    heads, kv_heads, block = 6, 2, 4
    keys, values = (torch.randn(20, block, kv_heads, d, generator=generator) for _ in range(2))
    q = torch.randn(3, heads, d, generator=generator) * torch.tensor([4.0, 1.0, 0.1])[:, None, None]
    tables = torch.tensor([[5, 2, 9, 1], [0, 0, 0, 0], [7, 3, 0, 0]], dtype=torch.int32)
    contexts = torch.tensor([13, 1, 8], dtype=torch.int32)
    out = cpu_kernels.decode_attention(lib, q, keys, values, tables, contexts, d ** -0.5)
    for row in range(3):
        n = int(contexts[row])
        slots = [int(tables[row, t // block]) * block + t % block for t in range(n)]
        k, v = (c.view(-1, kv_heads, d)[slots].transpose(0, 1)[None] for c in (keys, values))
        expected = torch.nn.functional.scaled_dot_product_attention(
            q[row][None, :, None], k, v, enable_gqa=True)[0, :, 0]
        assert torch.allclose(out[row], expected, atol=1e-5), row


def test_a_runner_sharing_weights_writes_only_its_own_cache(tiny_model):
    runner = tiny_runner(tiny_model)
    twin = runner.sharing_weights(runner.config)
    assert twin.weights is runner.weights and twin.kv_cache is not runner.kv_cache
    twin.prompt_logits([1, 2, 3, 4, 5])  # through our fused kernels where they load
    assert twin.kv_cache.abs().sum() > 0
    assert runner.kv_cache.abs().sum() == 0
