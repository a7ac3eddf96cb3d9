"""Quantization modes: one table that the planner, the quantizer, the verifier and the accuracy
report all read.

Each mode names the TensorRT-LLM 1.1.0 ``QuantAlgo`` written to the checkpoint's
``config.json`` (tensorrt_llm/quantization/mode.py) and who produces the low-precision weights:

- ``modelopt``: ModelOpt calibrates and writes quantized weights + scales into the checkpoint
  (FP8, INT8 SmoothQuant, INT4/W4A8 AWQ, NVFP4).
- ``tensorrt_llm``: the checkpoint holds full-precision weights and TensorRT-LLM quantizes them
  per channel when the engine is built (W8A16, W4A16). This is TensorRT-LLM's own recipe for
  ``int8_wo``/``int4_wo`` (tensorrt_llm/quantization/quantize_by_modelopt.py): ModelOpt's
  weight-only export names its scales ``weights_scaling_factor`` while TensorRT-LLM's
  ``WeightOnlyQuantLinear`` loads ``per_channel_scale``, so a ModelOpt-quantized W8A16
  checkpoint would not load.

``simulate`` is the ModelOpt config (plus edits) that reproduces the mode's rounding on CPU for
the accuracy report.
"""

from __future__ import annotations

from dataclasses import dataclass

# Checkpoint/engine dtypes (ModelOpt's TensorRT-LLM export writes float32 requests as float16).
DTYPES = {"float16": 2, "bfloat16": 2}
CPU_DTYPE_BYTES = 4  # the CPU twin computes in float32 whatever the checkpoint dtype


@dataclass(frozen=True)
class QuantMode:
    name: str
    quant_algo: str | None
    weight_bits: int | None  # bits per quantized GEMM weight; None: the model dtype
    quantized_by: str | None  # "modelopt", "tensorrt_llm" or None (no quantization)
    modelopt_config: str | None  # the ModelOpt preset that calibrates or simulates the mode
    grouped: bool = False  # per-group scales along the input dimension (AWQ)
    needs_fp8: bool = False  # FP8 activations/tensor cores: Ada or Hopper and later
    needs_fp4: bool = False  # FP4 tensor cores: Blackwell
    description: str = ""


MODES: dict[str, QuantMode] = {m.name: m for m in (
    QuantMode("none", None, None, None, None, description="model dtype, no quantization"),
    QuantMode("int8_wo", "W8A16", 8, "tensorrt_llm", "INT8_WEIGHT_ONLY_CFG",
              description="int8 weights per channel, 16-bit activations"),
    QuantMode("int4_wo", "W4A16", 4, "tensorrt_llm", "INT4_PER_CHANNEL",
              description="int4 weights per channel, 16-bit activations"),
    QuantMode("int4_awq", "W4A16_AWQ", 4, "modelopt", "INT4_AWQ_CFG", grouped=True,
              description="int4 weights per group with AWQ scales, 16-bit activations"),
    QuantMode("w4a8_awq", "W4A8_AWQ", 4, "modelopt", "W4A8_AWQ_BETA_CFG", grouped=True,
              needs_fp8=True, description="int4 AWQ weights, FP8 activations"),
    QuantMode("int8_sq", "W8A8_SQ_PER_CHANNEL", 8, "modelopt", "INT8_SMOOTHQUANT_CFG",
              description="SmoothQuant: int8 weights per channel, int8 activations"),
    QuantMode("fp8", "FP8", 8, "modelopt", "FP8_DEFAULT_CFG", needs_fp8=True,
              description="FP8 (e4m3) weights and activations, per-tensor scales"),
    QuantMode("nvfp4", "NVFP4", 4, "modelopt", "NVFP4_DEFAULT_CFG", needs_fp4=True,
              description="FP4 (e2m1) weights and activations, FP8 scale per 16 values"),
)}

# KV cache: the checkpoint's kv_cache_quant_algo and bytes per element (None: the model dtype).
KV_MODES: dict[str, tuple[str | None, int | None]] = {
    "none": (None, None),
    "int8": ("INT8", 1),
    "fp8": ("FP8", 1),
}

NVFP4_BLOCK = 16  # values per FP8 block scale

# The modes the cpu target (the CPU twin) serves, and the CPU engine's ``weights`` for each: it
# quantizes the checkpoint's weights itself when it loads them (int4: its own block-scaled int4).
CPU_ENGINE_WEIGHTS = {"none": "auto", "int8_wo": "int8", "int4_wo": "int4"}


def get_mode(name: str) -> QuantMode:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"quantization.mode: unknown {name!r}; known: "
                         f"{', '.join(MODES)}") from None


def weight_bits(mode: QuantMode, dtype: str, group_size: int) -> float:
    """Stored bits per GEMM weight, scales included (AWQ: one 16-bit scale per group;
    NVFP4: one 8-bit scale per 16 values). Per-channel and per-tensor scales are negligible."""
    if mode.weight_bits is None:
        return 8.0 * DTYPES[dtype]
    if mode.grouped:
        return mode.weight_bits + 16.0 / group_size
    if mode.needs_fp4:
        return mode.weight_bits + 8.0 / NVFP4_BLOCK
    return float(mode.weight_bits)
