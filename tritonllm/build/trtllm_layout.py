"""What TensorRT-LLM 1.1.0's checkpoint loader reads, for Llama: config keys and, per rank file,
every tensor's name, shape and dtype.

Written from TensorRT-LLM v1.1.x source (read, not copied):

- ``models/modeling_utils.py``: ``PretrainedConfig.__init__`` (required keys), ``QuantConfig``
  (a dataclass built with ``cls(**config)``, so an unknown key in ``quantization`` is a
  TypeError at build time), ``preprocess_weights`` (how rank files are transformed before
  ``PretrainedModel.load``, which raises on any required tensor that is missing).
- ``models/llama/model.py`` + ``layers``: one ``transformer.layers.{i}`` per local layer of the
  rank's pipeline stage (local index), ``attention.qkv`` (q, k, v rows fused, this rank's heads),
  ``attention.dense``, ``mlp.fc`` (gate_proj: goes through the activation), ``mlp.gate``
  (up_proj), ``mlp.proj`` (down_proj), ``input_layernorm``, ``post_layernorm``; the embedding on
  pipeline stage 0, ``ln_f`` and ``lm_head`` on the last stage.
- ``quantization/layers.py``: ``FP8Linear`` (fp8 weight, per-tensor weight/activation scales),
  ``Int8SmoothQuantLinear`` (int8 weight, per-channel weight scales, per-tensor activation
  scale, per-input-channel prequant scale: ModelOpt's ``W8A8_SQ_PER_CHANNEL``),
  ``WeightOnlyGroupwiseQuantLinear`` (AWQ: the checkpoint holds int4 pairs packed in int8 as
  ``[out/2, in]`` and scales ``[out, in/group]``; ``preprocess_weights`` transposes and packs
  them), W8A16/W4A16 (full-precision weights, quantized by ``weight_only_quantize_dict`` at load).
- Attention with a quantized KV cache: ``attention.kv_cache_scaling_factor`` ``[1]`` fp32, or
  separate ``k_``/``v_cache_scaling_factor`` that ``preprocess_weights`` merges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# QuantConfig's fields (the keys allowed under "quantization").
QUANT_CONFIG_KEYS = frozenset({
    "quant_algo", "kv_cache_quant_algo", "group_size", "smoothquant_val", "clamp_val",
    "use_meta_recipe", "has_zero_point", "pre_quant_scale", "exclude_modules",
    "mamba_ssm_cache_dtype"})
# QuantAlgo members (quantization/mode.py).
QUANT_ALGOS = frozenset({
    "W8A16", "W4A16", "W4A16_AWQ", "W4A8_AWQ", "W8A16_GPTQ", "W4A16_GPTQ", "W8A8_SQ_PER_CHANNEL",
    "W8A8_SQ_PER_TENSOR_PLUGIN", "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN",
    "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN", "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN",
    "W4A8_QSERVE_PER_GROUP", "W4A8_QSERVE_PER_CHANNEL", "FP8", "FP8_PER_CHANNEL_PER_TOKEN",
    "FP8_BLOCK_SCALES", "INT8", "MIXED_PRECISION", "NVFP4", "W4A8_NVFP4_FP8", "W4A8_MXFP4_FP8",
    "W4A8_MXFP4_MXFP8", "W4A16_MXFP4", "NO_QUANT"})
KV_CACHE_QUANT_ALGOS = frozenset({"FP8", "INT8", "NVFP4"})
# PretrainedConfig's keyword-only arguments without defaults, plus what a Llama needs.
REQUIRED_CONFIG_KEYS = ("architecture", "dtype", "hidden_size", "num_hidden_layers",
                        "num_attention_heads", "vocab_size", "num_key_value_heads",
                        "intermediate_size", "max_position_embeddings", "hidden_act",
                        "norm_epsilon", "position_embedding_type", "mapping", "quantization")
GEMMS = ("attention.qkv", "attention.dense", "mlp.fc", "mlp.gate", "mlp.proj")
SCALAR = "scalar"  # shape () or (1,): both load


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...] | str
    dtype: str
    optional: bool = False

    def matches(self, shape: tuple[int, ...], dtype: str) -> bool:
        ok_shape = shape in ((), (1,)) if self.shape == SCALAR else shape == self.shape
        return ok_shape and dtype == self.dtype


@dataclass(frozen=True)
class RankGeometry:
    """The slice of the model one rank holds (TensorRT-LLM's Mapping: rank = pp * tp + tp_rank)."""

    tp_size: int
    pp_size: int
    rank: int

    @property
    def tp_rank(self) -> int:
        return self.rank % self.tp_size

    @property
    def pp_rank(self) -> int:
        return self.rank // self.tp_size


def check_config(config: dict) -> list[str]:
    """Problems that would stop TensorRT-LLM 1.1.0 from reading this ``config.json``."""
    problems = [f"config.json: missing key {key!r}" for key in REQUIRED_CONFIG_KEYS
                if key not in config]
    quant = config.get("quantization") or {}
    problems += [f"config.json: quantization.{key} is not a QuantConfig field (TypeError at "
                 "build time)" for key in sorted(set(quant) - QUANT_CONFIG_KEYS)]
    algo, kv = quant.get("quant_algo"), quant.get("kv_cache_quant_algo")
    if algo is not None and algo not in QUANT_ALGOS:
        problems.append(f"config.json: quantization.quant_algo {algo!r} is not a QuantAlgo")
    if kv is not None and kv not in KV_CACHE_QUANT_ALGOS:
        problems.append(f"config.json: quantization.kv_cache_quant_algo {kv!r} is not one of "
                        f"{sorted(KV_CACHE_QUANT_ALGOS)}")
    mapping = config.get("mapping") or {}
    if mapping.get("world_size") != mapping.get("tp_size", 1) * mapping.get("pp_size", 1):
        problems.append(f"config.json: mapping {mapping} has world_size != tp_size * pp_size")
    return problems


def expected_tensors(config: dict, rank: int) -> dict[str, TensorSpec]:
    """Every tensor of ``rank<rank>.safetensors``, by name."""
    mapping = config["mapping"]
    geo = RankGeometry(mapping.get("tp_size", 1), mapping.get("pp_size", 1), rank)
    layers = config["num_hidden_layers"] // geo.pp_size
    specs: dict[str, TensorSpec] = {}
    for i in range(layers):
        specs.update(_layer(config, geo, f"transformer.layers.{i}."))
    specs.update(_ends(config, geo))
    return specs


def check_tensors(config: dict, rank: int, found: dict[str, tuple[tuple[int, ...], str]]
                  ) -> list[str]:
    """Compare a rank file's ``{name: (shape, dtype)}`` with ``expected_tensors``."""
    expected = expected_tensors(config, rank)
    problems = [f"rank{rank}: missing {name} {spec.shape} {spec.dtype}"
                for name, spec in expected.items() if name not in found and not spec.optional]
    problems += [f"rank{rank}: unexpected tensor {name}" for name in found
                 if name not in expected]
    for name, (shape, dtype) in found.items():
        spec = expected.get(name)
        if spec is not None and not spec.matches(tuple(shape), dtype):
            problems.append(f"rank{rank}: {name} is {tuple(shape)} {dtype}, expected "
                            f"{spec.shape} {spec.dtype}")
    return problems


# ---- the Llama layout ------------------------------------------------------------------------

def _gemm_shapes(config: dict, tp: int) -> dict[str, tuple[int, int]]:
    """(out, in) of each GEMM on one rank, in TensorRT-LLM's [out, in] weight layout."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head = config.get("head_size") or h // heads
    return {"attention.qkv": ((heads + 2 * kv) * head // tp, h),
            "attention.dense": (h, heads * head // tp),
            "mlp.fc": (inter // tp, h), "mlp.gate": (inter // tp, h),
            "mlp.proj": (h, inter // tp)}


def _layer(config: dict, geo: RankGeometry, prefix: str) -> dict[str, TensorSpec]:
    dtype, h = config["dtype"], config["hidden_size"]
    specs = {prefix + "input_layernorm.weight": TensorSpec((h,), dtype),
             prefix + "post_layernorm.weight": TensorSpec((h,), dtype)}
    quant = config.get("quantization") or {}
    for gemm, (out, inp) in _gemm_shapes(config, geo.tp_size).items():
        for suffix, spec in _gemm_tensors(quant, dtype, out, inp).items():
            specs[f"{prefix}{gemm}.{suffix}"] = spec
    if quant.get("kv_cache_quant_algo"):
        specs[prefix + "attention.kv_cache_scaling_factor"] = TensorSpec(SCALAR, "float32")
        for part in ("k", "v"):
            specs[f"{prefix}attention.{part}_cache_scaling_factor"] = TensorSpec(
                SCALAR, "float32", optional=True)
    return specs


def _gemm_tensors(quant: dict, dtype: str, out: int, inp: int) -> dict[str, TensorSpec]:
    algo = quant.get("quant_algo")
    if algo in (None, "W8A16", "W4A16"):  # W8A16/W4A16: quantized by TensorRT-LLM at load
        return {"weight": TensorSpec((out, inp), dtype)}
    if algo == "FP8":
        return {"weight": TensorSpec((out, inp), "float8_e4m3fn"),
                "weights_scaling_factor": TensorSpec(SCALAR, "float32"),
                "activation_scaling_factor": TensorSpec(SCALAR, "float32")}
    if algo == "W8A8_SQ_PER_CHANNEL":
        return {"weight": TensorSpec((out, inp), "int8"),
                "weights_scaling_factor": TensorSpec((out,), "float32"),
                "activation_scaling_factor": TensorSpec(SCALAR, "float32"),
                "prequant_scaling_factor": TensorSpec((inp,), dtype)}
    if algo in ("W4A16_AWQ", "W4A8_AWQ"):
        return _awq_tensors(quant, dtype, out, inp)
    if algo == "NVFP4":
        return {"weight": TensorSpec((out, inp // 2), "uint8"),
                "weights_scaling_factor": TensorSpec((out, inp // 16), "float8_e4m3fn"),
                "weights_scaling_factor_2": TensorSpec(SCALAR, "float32"),
                "activation_scaling_factor": TensorSpec(SCALAR, "float32")}
    raise ValueError(f"quant_algo: {algo!r} has no Llama layout here")


def _awq_tensors(quant: dict, dtype: str, out: int, inp: int) -> dict[str, TensorSpec]:
    group = quant.get("group_size", 128)
    specs = {"weight": TensorSpec((out // 2, inp), "int8"),
             "weights_scaling_factor": TensorSpec((out, math.ceil(inp / group)), "float32")}
    if quant.get("pre_quant_scale"):
        specs["prequant_scaling_factor"] = TensorSpec((inp,), dtype)
    if quant.get("quant_algo") == "W4A8_AWQ":
        specs["activation_scaling_factor"] = TensorSpec(SCALAR, "float32")
        specs["weights_scaling_factor_2"] = TensorSpec(SCALAR, "float32")
    return specs


def _ends(config: dict, geo: RankGeometry) -> dict[str, TensorSpec]:
    dtype, h = config["dtype"], config["hidden_size"]
    vocab = config["vocab_size"]
    padded = math.ceil(vocab / geo.tp_size) * geo.tp_size
    specs = {}
    if geo.pp_rank == 0:
        rows = padded // geo.tp_size if config.get("use_parallel_embedding") else vocab
        specs["transformer.vocab_embedding.weight"] = TensorSpec((rows, h), dtype)
    if geo.pp_rank == geo.pp_size - 1:
        specs["transformer.ln_f.weight"] = TensorSpec((h,), dtype)
        specs["lm_head.weight"] = TensorSpec((padded // geo.tp_size, h), dtype)
    return specs
