"""The engine's int4 weights (``EngineConfig.weights: int4``): the packing, the scale search,
``tl_linear_i4`` against the dequantized weight on every kernel build this CPU runs, the fused
layer, and SmolLM2's accuracy bound."""

from __future__ import annotations

import math

import pytest
import torch

from tests.engine.engine_helpers import tiny_llama, tiny_runner
from tests.engine.test_runner import fused_step_equals_op_by_op, torch_threads
from tritonllm.build.corpus import HELDOUT
from tritonllm.engine import EngineConfig, cpu_kernels
from tritonllm.engine.linear import (INT4_GROUP_SIZE, KERNEL_MAX_ROWS, Int4Linear, Int8Linear,
                                     quantize_int4, unpack_int4)
from tritonllm.engine.runner import ModelRunner


def needs_kernels():
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here (int4 needs them)")


def test_packing_round_trips_and_the_scale_search_never_loses_to_max_over_7():
    weight = torch.randn(48, 96, generator=torch.Generator().manual_seed(2))
    weight[3, 5] = 9.0  # an outlier: clipping it costs less than coarsening its group
    packed, scale = quantize_int4(weight, 32)
    assert packed.dtype == torch.uint8 and packed.shape == (48, 48) and scale.shape == (48, 3)
    q = unpack_int4(packed)
    assert q.min() >= -8 and q.max() <= 7
    groups = weight.view(48, 3, 32)
    assert torch.equal(q.view(48, 3, 32), torch.round(groups / scale[:, :, None]).clamp(-8, 7))
    plain = groups.abs().amax(dim=2, keepdim=True) / 7
    error = (q.view(48, 3, 32) * scale[:, :, None] - groups).square().sum(2)
    plain_error = (torch.round(groups / plain).clamp(-8, 7) * plain - groups).square().sum(2)
    assert (error <= plain_error + 1e-6).all() and (error < plain_error).any()


def test_widths_the_groups_do_not_divide_are_refused_with_the_field():
    with pytest.raises(ValueError, match="weights: int4 needs input widths that are multiples "
                                         "of the group size 32 .* this layer's is 40"):
        quantize_int4(torch.randn(8, 40), 32)


@pytest.mark.parametrize("group", [32, 64, 128])  # 128: one group per row (per channel)
def test_int4_kernel_error_is_the_weights_rounding_plus_15_bit_activations(group, kernel_isa):
    """Against fp32 math on the dequantized weight, each output is off by at most half an
    activation step times the row's sum of |weights| (as for int8)."""
    needs_kernels()
    generator = torch.Generator().manual_seed(group)
    weight, bias = torch.randn(77, 128, generator=generator), torch.randn(77, generator=generator)
    linear = Int4Linear.from_float(weight, bias, group)
    dequantized = linear.dequantized()
    x = torch.randn(KERNEL_MAX_ROWS + 5, 128, generator=generator)
    x[2] *= 1e-4
    x[3, 7] = 300.0
    for rows in (1, 2, 3, 4, 5, 8, KERNEL_MAX_ROWS, KERNEL_MAX_ROWS + 5):
        y, expected = linear(x[:rows]), torch.nn.functional.linear(x[:rows], dequantized, bias)
        step = x[:rows].abs().amax(dim=1, keepdim=True) / 16383
        bound = 0.5 * step * dequantized.abs().sum(dim=1) + 1e-5 * expected.abs() + 1e-5
        assert ((y - expected).abs() <= bound).all(), rows


@pytest.mark.parametrize("threads", [1, 3])
def test_fused_int4_decode_layer_equals_the_torch_layer(threads, kernel_isa):
    """The whole-layer kernel (``tl_decoder_layers``) with int4 weights gives the op-by-op
    path's logits and K/V (lm_head in int8, as the runner keeps it)."""
    needs_kernels()
    model = tiny_llama(seed=11, num_key_value_heads=1, attention_bias=True, mlp_bias=True)
    with torch_threads(threads):
        runner = tiny_runner(model, tokens_per_block=4, weights="int4", num_threads=threads)
        assert isinstance(runner.weights.layers[0].gate_up, Int4Linear)
        assert isinstance(runner.weights.lm_head, Int8Linear)
        assert runner.kernel_layers is not None
        fused_step_equals_op_by_op(runner, "int4")


def test_int4_smollm2_perplexity_and_top1_within_bounds(smollm_dir, smollm):
    needs_kernels()
    model, tokenizer = smollm
    ids = tokenizer(HELDOUT, return_tensors="pt").input_ids[0][:160]
    config = EngineConfig(max_batch_size=2, max_num_tokens=256, max_input_len=256,
                          max_seq_len=512, max_tokens_in_paged_kv_cache=512, num_threads=1,
                          weights="int4")
    runner = ModelRunner.from_hf_dir(smollm_dir, config)
    assert runner.weights.layers[0].down.scale.shape[1] == 1536 // INT4_GROUP_SIZE
    logits = runner.prompt_logits(ids.tolist())[:-1]
    with torch.no_grad():
        reference = model(ids[None]).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, ids[1:]).item()
    reference_nll = torch.nn.functional.cross_entropy(reference, ids[1:]).item()
    change_pct = 100 * (math.exp(nll - reference_nll) - 1)
    top1 = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    # measured here: +47 % perplexity and 68 % top-1 on these 160 tokens (+26 % over the whole
    # 698-token text); a broken kernel or packing gives perplexities in the thousands
    assert change_pct < 60.0 and top1 > 0.6, (change_pct, top1)
