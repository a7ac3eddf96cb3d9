"""The engine's int4 weights (``EngineConfig.weights: int4``): the packing and its scales,
``tl_linear_i4`` against the dequantized weight on every kernel build this CPU runs, the fused
layer, and SmolLM2's accuracy bound."""

from __future__ import annotations

import pytest
import torch

from tests.engine.engine_helpers import smollm_quality, tiny_llama, tiny_runner
from tests.engine.test_runner import fused_step_equals_op_by_op, torch_threads
from tritonllm.engine import EngineConfig, cpu_kernels
from tritonllm.engine.linear import (INT4_BLOCK_SCALE_MAX, Int4Linear,
                                     Int8Linear, _block_scales, dequantize_int4, quantize_int4,
                                     unpack_int4)
from tritonllm.engine.runner import FUSED_MAX_ROWS, ModelRunner


def needs_kernels():
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here (int4 needs them)")


def test_packing_round_trips_with_block_and_run_scales():
    """320 values a row: a run of 8 blocks and a shorter one of 2; an outlier in one block
    coarsens that block's scale only."""
    weight = torch.randn(48, 320, generator=torch.Generator().manual_seed(2))
    weight[3, 5] = 9.0
    packed, block_scale, scale = quantize_int4(weight)
    assert (packed.dtype, packed.shape) == (torch.uint8, (48, 160))
    assert (block_scale.dtype, block_scale.shape, scale.shape) == (torch.uint8, (48, 10), (48, 2))
    assert block_scale.min() >= 1 and block_scale.max() == INT4_BLOCK_SCALE_MAX
    q = unpack_int4(packed)
    assert q.min() >= -8 and q.max() <= 7
    step = block_scale.float() * scale.repeat_interleave(8, dim=1)[:, :10]
    assert torch.equal(dequantize_int4(packed, block_scale, scale),
                       (q.view(48, 10, 32) * step[:, :, None]).view(48, 320))
    assert block_scale[3, 0] > 2 * block_scale[3, 1:8].float().median()  # the outlier's block
    error = (dequantize_int4(packed, block_scale, scale) - weight).norm() / weight.norm()
    assert error < 0.1, error


def test_the_clipping_search_never_loses_to_max_over_7():
    blocks = torch.randn(40, 6, 32, generator=torch.Generator().manual_seed(3))
    blocks[0, 0, 0] = 8.0
    chosen, plain = _block_scales(blocks), blocks.abs().amax(dim=2) / 7

    def error(scale):
        return (torch.round(blocks / scale[:, :, None]).clamp(-8, 7) * scale[:, :, None]
                - blocks).square().sum(2)
    assert (error(chosen) <= error(plain) + 1e-6).all() and (error(chosen) < error(plain)).any()


def test_per_channel_int4_is_tensorrt_llms_rounding():
    """One scale per row, max|w| / 8, round, clip to [-8, 7] (TensorRT-LLM's
    ``symmetric_quantize``, cutlass_preprocessors.cpp): the row's largest |w| lands on 7 when
    positive (8, clipped), on -8 when negative."""
    weight = torch.randn(8, 96)
    packed, block_scale, scale = quantize_int4(weight, per_channel=True)
    assert (block_scale == 1).all()
    assert scale.shape == (8, 1)  # 96 values: one run
    assert torch.allclose(scale, weight.abs().amax(dim=1, keepdim=True) / 8)
    assert torch.equal(unpack_int4(packed),
                       torch.round(weight / scale[:, :1]).clamp(-8, 7).to(torch.int8))


def test_widths_that_are_not_whole_blocks_are_refused_with_the_field():
    with pytest.raises(ValueError, match="weights: int4 needs input widths that are multiples "
                                         "of 32; this layer's is 40"):
        quantize_int4(torch.randn(8, 40))


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("k", [96, 320])  # one run of 3 blocks; a run of 8 and one of 2
def test_int4_kernel_error_is_the_weights_rounding_plus_15_bit_activations(per_channel, k,
                                                                           kernel_isa):
    """Against fp32 math on the dequantized weight, each output is off by at most half an
    activation step times the row's sum of |weights| (as for int8)."""
    needs_kernels()
    generator = torch.Generator().manual_seed(k)
    weight, bias = torch.randn(77, k, generator=generator), torch.randn(77, generator=generator)
    linear = Int4Linear.from_float(weight, bias, per_channel)
    dequantized = linear.dequantized()  # read back from the kernel's panels: the same weight
    assert torch.equal(dequantized, dequantize_int4(*quantize_int4(weight, per_channel)))
    x = torch.randn(100, k, generator=generator)
    x[2] *= 1e-4
    x[3, 7] = 300.0
    # every tile height of both builds, rows past a tile, and past a block of rows (96)
    for rows in (*range(1, 10), 11, 17, FUSED_MAX_ROWS, 100):
        y, expected = linear(x[:rows]), torch.nn.functional.linear(x[:rows], dequantized, bias)
        step = x[:rows].abs().amax(dim=1, keepdim=True) / 16383
        bound = 0.5 * step * dequantized.abs().sum(dim=1) + 1e-5 * expected.abs() + 1e-5
        assert ((y - expected).abs() <= bound).all(), rows


def test_int4_kernel_sums_a_run_at_its_largest_without_overflow(kernel_isa):
    """Every product of a run at its largest (x at the top of its 15-bit grid, q = -8, block
    scale 63): the run's int32 sums hold."""
    needs_kernels()
    packed = torch.zeros(2, 128, dtype=torch.uint8)  # nibble 0: q = -8
    block_scale = torch.full((2, 8), INT4_BLOCK_SCALE_MAX, dtype=torch.uint8)
    scale = torch.tensor([[1e-3], [2e-3]])
    linear = Int4Linear(packed, block_scale, scale)
    y = linear(torch.full((3, 256), 1.5))
    expected = 1.5 * 256 * -8 * INT4_BLOCK_SCALE_MAX * scale[:, 0]
    assert torch.allclose(y, expected.expand(3, 2), rtol=1e-5)


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
    config = EngineConfig(max_batch_size=2, max_num_tokens=256, max_input_len=256,
                          max_seq_len=512, max_tokens_in_paged_kv_cache=512, num_threads=1,
                          weights="int4")
    change_pct, top1 = smollm_quality(ModelRunner.from_hf_dir(smollm_dir, config), smollm)
    # a broken kernel or packing gives perplexities in the thousands
    assert change_pct < 60.0 and top1 > 0.6, (change_pct, top1)
