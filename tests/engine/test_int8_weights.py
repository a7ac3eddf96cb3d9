"""The engine's opt-in int8 weights (``EngineConfig.weights``): accuracy bounds on SmolLM2.

Measured with the accuracy report (698 held-out tokens): +0.6 % perplexity over fp32, 95 %
top-1 agreement (README, "int8 weights"); the bounds here leave room for the shorter text.
"""

from __future__ import annotations

import pytest
import torch

from tests.engine.engine_helpers import smollm_quality
from tritonllm.engine import EngineConfig
from tritonllm.engine import cpu_kernels
from tritonllm.engine.linear import Int8Linear, quantize_per_channel
from tritonllm.engine.runner import FUSED_MAX_ROWS, ModelRunner

CONFIG = EngineConfig(max_batch_size=2, max_num_tokens=256, max_input_len=256, max_seq_len=512,
                      max_tokens_in_paged_kv_cache=512, num_threads=1, weights="int8")


@pytest.mark.parametrize("backend", ["kernels", "fbgemm"])
def test_int8_linear_is_close_to_fp32_for_rows_of_any_scale(backend, kernel_isa):
    if backend == "kernels" and cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here")
    torch.manual_seed(0)
    weight = torch.randn(96, 64) * 0.05
    x = torch.randn(5, 64) * torch.tensor([[1e-3], [1.0], [30.0], [1.0], [500.0]])
    x[1, 3] = 40.0  # an outlier channel
    y, reference = Int8Linear.from_float(weight, backend=backend)(x), x @ weight.T
    # Every row within a few % of its own size (what the weights' int8 rounding leaves),
    # however small it is next to the others; one coarse grid for all rows would lose row 0.
    for row in range(5):
        assert (y[row] - reference[row]).norm() < 0.03 * reference[row].norm(), row


def test_int8_kernel_error_is_the_weights_rounding_plus_15_bit_activations(kernel_isa):
    """Our kernel rounds each activation row to 15 bits (scale max|x| / 16383) and multiplies
    exactly: against fp32 math on the dequantized weights (TensorRT-LLM's W8A16), each output
    is off by at most half an activation step times the row's sum of |weights|."""
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here (the fbgemm path is tested above)")
    generator = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(77, 45, generator=generator), torch.randn(77, generator=generator)
    linear = Int8Linear.from_float(weight, bias, backend="kernels")
    dequantized = linear.int8_weight().float() * linear.scale[:, None]
    x = torch.randn(100, 45, generator=generator)
    x[2] *= 1e-4  # a small row keeps its own precision
    x[3, 7] = 300.0  # an outlier only coarsens its own row
    # every tile height of both builds, rows past a tile, and past a block of rows (96)
    for rows in (*range(1, 10), 11, 17, FUSED_MAX_ROWS, 100):
        y, expected = linear(x[:rows]), torch.nn.functional.linear(x[:rows], dequantized, bias)
        step = x[:rows].abs().amax(dim=1, keepdim=True) / 16383
        bound = 0.5 * step * dequantized.abs().sum(dim=1) + 1e-5 * expected.abs() + 1e-5
        assert ((y - expected).abs() <= bound).all(), rows


def test_unknown_weight_mode_names_the_field():
    with pytest.raises(ValueError, match="weights: 'int3'"):
        EngineConfig(weights="int3")


def test_int8_smollm2_perplexity_and_top1_within_bounds(smollm_dir, smollm):
    runner = ModelRunner.from_hf_dir(smollm_dir, CONFIG)
    assert runner.int8 and isinstance(runner.weights.layers[0].down, Int8Linear)
    change_pct, top1 = smollm_quality(runner, smollm)
    assert change_pct < 2.0 and top1 > 0.9, (change_pct, top1)


@pytest.mark.parametrize("k", [4096 + 45, 3 * 4096])
def test_int8_kernel_sums_long_rows_without_overflow(k, kernel_isa):
    """Every product at its largest (x at the top of its 15-bit grid, weights at -128 and 127)
    over rows longer than the kernel's int32 stretch (4096 values; Llama 3 8B's down projection
    has 14336): the sums spill to fp32 in time and stay exact."""
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here")
    signs = torch.tensor([1.0, -1.0, 1.0])[:, None]
    weight = signs * torch.ones(3, k)
    linear = Int8Linear.from_float(weight, backend="kernels")
    assert linear.int8_weight().tolist() == [[127] * k, [-128] * k, [127] * k]  # max|w| / 128, clipped
    x = torch.full((2, k), 2.5)
    expected = 2.5 * k * torch.tensor([127 / 128, -1.0, 127 / 128])
    assert torch.allclose(linear(x), expected.expand(2, 3), rtol=1e-6)


def test_int8_rounding_is_tensorrt_llms():
    """``symmetric_quantize`` (TensorRT-LLM, cutlass_preprocessors.cpp): max|w| / 128 per output
    channel, round, clip to [-128, 127]."""
    weight = torch.randn(6, 40, generator=torch.Generator().manual_seed(5))
    q, scale = quantize_per_channel(weight)
    assert torch.allclose(scale, weight.abs().amax(dim=1) / 128)
    assert torch.equal(q.float(), torch.round(weight / scale[:, None]).clamp(-128, 127))
    assert q.min() == -128 or q.max() == 127  # each row's largest |w| lands on the grid's end
