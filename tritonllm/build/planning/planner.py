"""The build planner: memory arithmetic and the rules, before anything expensive runs.

All figures are per GPU (per rank) unless named ``total``; bytes throughout.

- Weights: the GEMM weights of each decoder layer at the mode's bits (scales included, see
  ``quant_modes.weight_bits``), split over ``tp``; norms replicated on every rank; the
  embedding table on the first pipeline stage and ``lm_head`` + final norm on the last, both
  split over ``tp`` (vocab padded to a multiple of ``tp``) and kept in the model dtype
  (ModelOpt leaves ``lm_head`` unquantized). A rank holds ``num_layers / pp`` layers; the
  largest stage is reported.
- KV cache per token: 2 (K and V) x layers/pp x kv_heads/tp x head_dim x KV element bytes.
- Activations (an estimate of TensorRT's activation pool, which is reused layer after layer):
  ``max_num_tokens`` x (3 x hidden + qkv/tp + 2 x intermediate/tp) elements of the model dtype,
  plus fp32 logits for ``max_batch_size`` rows of the full vocabulary.
- Free memory: device memory - weights - activations - ``RUNTIME_RESERVE_GIB``; the KV cache
  gets ``kv_cache_free_gpu_mem_fraction`` of it (what TensorRT-LLM's executor does with free
  memory after the engine is loaded), in whole blocks of ``engine.tokens_per_block`` tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tritonllm.build.quantization import quant_modes
from tritonllm.build.planning.architectures import ModelArch
from tritonllm.build.engine import paged_context_fmha_blocker
from tritonllm.build.planning.gpus import Device, get_device
from tritonllm.build.profile import AWQ_GROUP_SIZES, BuildProfile

GIB = 1024**3
# CUDA context, cuBLAS/NCCL workspaces and TensorRT-LLM's runtime buffers, per GPU.
RUNTIME_RESERVE_GIB = 1.5
LOGITS_BYTES = 4  # fp32 logits


@dataclass(frozen=True)
class Plan:
    """The planner's numbers and verdict. ``problems`` make the plan impossible (each names its
    fix); ``warnings`` do not."""

    profile: str
    model: str
    device: str
    tp_size: int
    pp_size: int
    quant_mode: str
    kv_cache: str
    weight_bytes_total: int
    weight_bytes_per_gpu: int
    kv_bytes_per_token: int
    activation_bytes: int
    reserve_bytes: int
    device_bytes: int
    free_bytes: int
    kv_cache_bytes: int
    kv_tokens: int
    max_full_sequences: int
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        return "REJECTED" if self.problems else ("OK (with warnings)" if self.warnings else "OK")

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict, "ok": self.ok}


def plan(profile: BuildProfile, arch: ModelArch) -> Plan:
    """Size ``profile`` for ``arch`` on its target device and check every rule."""
    device = get_device(profile.target.gpu)
    weights = weight_bytes_per_gpu(profile, arch)
    kv_token = kv_bytes_per_token(profile, arch)
    activations = activation_bytes(profile, arch)
    reserve = int(RUNTIME_RESERVE_GIB * GIB)
    device_bytes = int(device.memory_gib * GIB)
    free = device_bytes - weights - activations - reserve
    kv_cache = int(max(free, 0) * profile.serving.kv_cache_free_gpu_mem_fraction)
    block = kv_token * profile.engine.tokens_per_block
    kv_tokens = (kv_cache // block) * profile.engine.tokens_per_block
    sizes = dict(weights=weights, free=free, kv_tokens=kv_tokens, device_bytes=device_bytes)
    return Plan(
        profile=profile.name, model=arch.name, device=device.name,
        tp_size=profile.parallel.tp_size, pp_size=profile.parallel.pp_size,
        quant_mode=profile.quantization.mode, kv_cache=profile.quantization.kv_cache,
        weight_bytes_total=weight_bytes_total(profile, arch), weight_bytes_per_gpu=weights,
        kv_bytes_per_token=kv_token, activation_bytes=activations, reserve_bytes=reserve,
        device_bytes=device_bytes, free_bytes=free, kv_cache_bytes=kv_cache, kv_tokens=kv_tokens,
        max_full_sequences=kv_tokens // profile.limits.max_seq_len,
        problems=tuple(check_rules(profile, arch, device, sizes)),
        warnings=tuple(check_warnings(profile, kv_tokens)),
    )



def accepted_plan(profile: BuildProfile, arch: ModelArch, what: str) -> Plan:
    """:func:`plan`, or a ``ValueError`` ("the planner rejects <what>: <first problem>") when
    the profile breaks a rule: for the paths that deploy a profile without building it."""
    result = plan(profile, arch)
    if not result.ok:
        raise ValueError(f"the planner rejects {what}: {result.problems[0]}")
    return result

# ---- sizes -----------------------------------------------------------------------------------

def _dtype_bytes(profile: BuildProfile) -> int:
    if get_device(profile.target.gpu).is_cpu:
        return quant_modes.CPU_DTYPE_BYTES
    return quant_modes.DTYPES[profile.dtype]


def _gemm_bytes(profile: BuildProfile, params: float) -> float:
    q = profile.quantization
    if q.quant_mode.weight_bits is None:
        return params * _dtype_bytes(profile)
    return params * quant_modes.weight_bits(q.quant_mode, profile.dtype, q.group_size) / 8


def weight_bytes_total(profile: BuildProfile, arch: ModelArch) -> int:
    """The whole model at the profile's precision, counted once (no TP replication)."""
    dtype_bytes = _dtype_bytes(profile)
    gemm = _gemm_bytes(profile, arch.num_layers * arch.linear_params_per_layer)
    rest = arch.num_params - arch.num_layers * arch.linear_params_per_layer
    return int(gemm + rest * dtype_bytes)


def weight_bytes_per_gpu(profile: BuildProfile, arch: ModelArch) -> int:
    """Bytes on the fullest rank (first or last pipeline stage)."""
    tp, pp = profile.parallel.tp_size, profile.parallel.pp_size
    dtype_bytes = _dtype_bytes(profile)
    layers = math.ceil(arch.num_layers / pp)
    per_layer = _gemm_bytes(profile, arch.linear_params_per_layer) / tp
    per_layer += 2 * arch.hidden_size * dtype_bytes
    embedding = math.ceil(arch.vocab_size / tp) * arch.hidden_size * dtype_bytes
    head = embedding + arch.hidden_size * dtype_bytes  # lm_head + final norm
    ends = embedding + head if pp == 1 else max(embedding, head)
    return int(layers * per_layer + ends)


def kv_bytes_per_token(profile: BuildProfile, arch: ModelArch) -> int:
    tp, pp = profile.parallel.tp_size, profile.parallel.pp_size
    element = quant_modes.KV_MODES[profile.quantization.kv_cache][1] or _dtype_bytes(profile)
    kv_heads = max(1, math.ceil(arch.num_kv_heads / tp))
    return 2 * math.ceil(arch.num_layers / pp) * kv_heads * arch.head_dim * element


def build_max_num_tokens(profile: BuildProfile) -> int:
    """``max_num_tokens`` as trtllm-build sets it: raised to ``max_batch_size * (D + 1)`` for
    an engine with ``D`` draft tokens (tritonllm.build.engine)."""
    limits = profile.limits
    draft = profile.speculative_build_flags.get("max_draft_len", 0)
    return max(limits.max_num_tokens, limits.max_batch_size * (draft + 1)) if draft \
        else limits.max_num_tokens


def activation_bytes(profile: BuildProfile, arch: ModelArch) -> int:
    tp = profile.parallel.tp_size
    per_token = (3 * arch.hidden_size + (arch.q_size + 2 * arch.kv_size) // tp
                 + 2 * arch.intermediate_size // tp)
    tokens = build_max_num_tokens(profile) * per_token * _dtype_bytes(profile)
    logits = profile.limits.max_batch_size * arch.vocab_size * LOGITS_BYTES
    return tokens + logits


# ---- rules -----------------------------------------------------------------------------------

def check_rules(profile: BuildProfile, arch: ModelArch, device: Device, sizes: dict) -> list[str]:
    """Every reason the plan cannot work, each naming its fix."""
    problems = _parallel_rules(profile, arch) + _precision_rules(profile, device)
    problems += _awq_rule(profile, arch) + _limit_rules(profile, arch)
    problems += _paged_context_rule(profile) + _speculative_rules(profile, device)
    return problems + _memory_rules(profile, arch, device, sizes)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _parallel_rules(profile: BuildProfile, arch: ModelArch) -> list[str]:
    tp, pp = profile.parallel.tp_size, profile.parallel.pp_size
    fits = [d for d in _divisors(arch.num_kv_heads) if arch.num_heads % d == 0]
    problems = []
    for what, count in (("num_attention_heads", arch.num_heads),
                        ("num_key_value_heads", arch.num_kv_heads)):
        if count % tp:
            problems.append(f"parallel.tp_size: {what}={count} is not divisible by tp_size={tp}; "
                            f"use a tp_size that divides both head counts: {fits}")
    if arch.num_layers % pp:
        problems.append(f"parallel.pp_size: num_hidden_layers={arch.num_layers} is not divisible "
                        f"by pp_size={pp}; use one of {_divisors(arch.num_layers)}")
    return problems


def _precision_rules(profile: BuildProfile, device: Device) -> list[str]:
    q = profile.quantization
    if device.is_cpu:
        if q.mode not in quant_modes.CPU_ENGINE_WEIGHTS or q.kv_cache != "none":
            return ["quantization.mode: the cpu target serves full precision, int8 or int4 "
                    "weights (the CPU twin); set mode: none, int8_wo or int4_wo and kv_cache: "
                    "none, or target a GPU to quantize"]
        return []
    problems = []
    uses_fp8 = [w for w, on in ((f"mode {q.mode}", q.quant_mode.needs_fp8),
                                ("kv_cache fp8", q.kv_cache == "fp8")) if on]
    if uses_fp8 and not device.supports_fp8:
        problems.append(f"quantization: {' and '.join(uses_fp8)} need FP8 (Ada sm89 / Hopper "
                        f"sm90 or newer) but {device.name} is {device.architecture} sm{device.sm}; "
                        "use int8_sq, int4_awq or int8_wo (kv_cache int8), or an L4/L40S/H100")
    if q.quant_mode.needs_fp4 and not device.supports_nvfp4:
        problems.append(f"quantization.mode: nvfp4 needs Blackwell (sm100, e.g. B200) but "
                        f"{device.name} is {device.architecture} sm{device.sm}; use fp8 on "
                        "Ada/Hopper or int4_awq")
    return problems


def awq_group_dims(profile: BuildProfile, arch: ModelArch) -> dict[str, int]:
    """Per-shard GEMM input sizes an AWQ group must divide: column-parallel layers see the full
    hidden size, row-parallel layers (o_proj, down_proj) a 1/tp slice of their input."""
    tp = profile.parallel.tp_size
    return {"hidden_size (qkv, gate, up)": arch.hidden_size,
            f"attention output / tp (o_proj), tp={tp}": arch.q_size // tp,
            f"intermediate_size / tp (down_proj), tp={tp}": arch.intermediate_size // tp}


def _awq_rule(profile: BuildProfile, arch: ModelArch) -> list[str]:
    q = profile.quantization
    if not q.quant_mode.grouped:
        return []
    dims = awq_group_dims(profile, arch)
    bad = {name: size for name, size in dims.items() if size % q.group_size}
    if not bad:
        return []
    good = [g for g in AWQ_GROUP_SIZES if all(size % g == 0 for size in dims.values())]
    fix = (f"set quantization.group_size: {max(good)}" if good
           else "no AWQ group size fits; use int8_sq, fp8 or int4_wo")
    listed = ", ".join(f"{name} = {size}" for name, size in bad.items())
    return [f"quantization.group_size: {q.group_size} does not divide the per-shard input "
            f"sizes {listed}; {fix}"]


def _limit_rules(profile: BuildProfile, arch: ModelArch) -> list[str]:
    limits, problems = profile.limits, []
    if limits.max_seq_len > arch.max_position_embeddings:
        problems.append(f"limits.max_seq_len: {limits.max_seq_len} exceeds the model's "
                        f"max_position_embeddings ({arch.max_position_embeddings}); lower it")
    if not profile.serving.enable_chunked_context and limits.max_num_tokens < limits.max_input_len:
        problems.append(f"limits.max_num_tokens: {limits.max_num_tokens} < max_input_len "
                        f"({limits.max_input_len}) without chunked context, so a long prompt "
                        "can never be scheduled; raise max_num_tokens or set "
                        "serving.enable_chunked_context: true")
    if profile.target.gpu.lower() == "cpu" and profile.parallel.world_size > 1:
        problems.append("parallel: the cpu target runs one process; set tp_size: 1 and pp_size: 1")
    return problems


def _paged_context_rule(profile: BuildProfile) -> list[str]:
    """KV-cache reuse and chunked context need paged context FMHA, which trtllm-build turns off
    for some KV-cache quantizations (with only a warning; serving then loses reuse silently)."""
    serving = profile.serving
    wanted = [name for name, on in (("enable_kv_cache_reuse", serving.enable_kv_cache_reuse),
                                    ("enable_chunked_context", serving.enable_chunked_context))
              if on]
    blocker = paged_context_fmha_blocker(profile) if wanted else None
    if blocker is None or get_device(profile.target.gpu).is_cpu:
        return []
    return [f"serving.{' and serving.'.join(wanted)}: need paged context FMHA, which "
            f"TensorRT-LLM 1.1.0's trtllm-build disables for {blocker}; set "
            f"quantization.kv_cache: none (or fp8 with mode fp8/w4a8_awq/nvfp4), or set "
            f"{' and '.join(f'serving.{w}: false' for w in wanted)}"]


def _speculative_rules(profile: BuildProfile, device: Device) -> list[str]:
    """Each target runs its own speculative modes: the CPU engine ngram and draft_target,
    TensorRT-LLM 1.1.0's tensorrtllm backend lookahead (read in its model_instance_state.cc
    at commit c8c6df08, line 548 on: ``decoding_mode`` accepts top_k, top_p, top_k_top_p,
    beam_search, medusa, redrafter, lookahead and eagle; a draft model is served only through
    its ``tensorrt_llm_bls`` model, whose decode loop refuses streaming and batches of more
    than one request)."""
    mode = profile.speculative.mode
    if device.is_cpu and mode == "lookahead":
        return ["speculative.mode: lookahead is TensorRT-LLM's GPU engine mode; the CPU engine "
                "runs ngram or draft_target"]
    if device.is_cpu or mode in ("off", "lookahead"):
        return []
    why = ("has no n-gram decoding mode" if mode == "ngram" else
           "serves a draft model only through its tensorrt_llm_bls model, which refuses "
           "streaming and batches of more than one request")
    return [f"speculative.mode: {mode} runs in the CPU engine; TensorRT-LLM 1.1.0's "
            f"tensorrtllm backend {why}; use lookahead (draft-free) on {device.name}"]


def _memory_rules(profile: BuildProfile, arch: ModelArch, device: Device,
                  sizes: dict) -> list[str]:
    gib = lambda n: f"{n / GIB:.1f} GiB"  # noqa: E731
    if sizes["free"] <= 0:
        need = sizes["device_bytes"] - sizes["free"]
        return [f"memory: weights need {gib(sizes['weights'])} per GPU and with activations "
                f"and the runtime reserve {gib(need)}, more than {device.name}'s "
                f"{gib(sizes['device_bytes'])}; raise parallel.tp_size/pp_size, use a "
                f"smaller quantization.mode (int4_awq, fp8), lower limits.max_num_tokens, or "
                "target a bigger GPU"]
    if sizes["kv_tokens"] < profile.limits.max_seq_len:
        return [f"memory: the KV cache holds {sizes['kv_tokens']} tokens, fewer than one "
                f"sequence of max_seq_len={profile.limits.max_seq_len}; quantize the KV cache "
                "(kv_cache: fp8/int8), raise tp_size, or lower max_seq_len"]
    return []


def check_warnings(profile: BuildProfile, kv_tokens: int) -> list[str]:
    limits = profile.limits
    full = kv_tokens // limits.max_seq_len
    if 0 < full < limits.max_batch_size:
        return [f"limits.max_batch_size: the KV cache holds {full} sequences of "
                f"max_seq_len={limits.max_seq_len}, fewer than max_batch_size="
                f"{limits.max_batch_size}; at full length only {full} run at once "
                "(shorter requests fit more)"]
    return []


# ---- output ----------------------------------------------------------------------------------

def format_plan(p: Plan) -> str:
    """The human-readable report."""
    gib = lambda n: f"{n / GIB:8.2f} GiB"  # noqa: E731
    lines = [
        f"plan for {p.profile}: {p.model} on {p.tp_size * p.pp_size} x {p.device} "
        f"(tp={p.tp_size}, pp={p.pp_size}), quantization {p.quant_mode}, KV cache {p.kv_cache}",
        f"  weights, whole model     {gib(p.weight_bytes_total)}",
        f"  weights per GPU          {gib(p.weight_bytes_per_gpu)}",
        f"  activations (estimate)   {gib(p.activation_bytes)}",
        f"  runtime reserve          {gib(p.reserve_bytes)}",
        f"  device memory            {gib(p.device_bytes)}",
        f"  free after the above     {gib(p.free_bytes)}",
        f"  KV cache budget          {gib(p.kv_cache_bytes)}",
        f"  KV bytes per token       {p.kv_bytes_per_token:8d} B per GPU",
        f"  KV capacity              {p.kv_tokens:8d} tokens = {p.max_full_sequences} "
        "sequences of max_seq_len",
        f"verdict: {p.verdict}",
    ]
    lines += [f"  problem: {text}" for text in p.problems]
    lines += [f"  warning: {text}" for text in p.warnings]
    return "\n".join(lines)
