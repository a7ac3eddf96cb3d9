"""Model-size guidance: which shipped Llama size and precision fits a target GPU and
meets a latency SLO, estimated from memory bandwidth and compute before anything is built.

``tritonllm plan PROFILE --slo ttft=500ms,tpot=50ms`` keeps the profile's device, tensor and
pipeline parallelism and limits, and tries every model of ``architectures.KNOWN`` at every
precision the device supports (:data:`CANDIDATE_MODES`). For each it reports, per GPU:

- **fits**: the planner (``planner.plan``) accepts it, with its KV budget holding the planned
  batch: ``max_batch_size`` sequences of ``max_seq_len`` tokens ("yes"); fewer full sequences
  than the batch ("batch N": the batch shrinks to N); or not one ("no", with the first reason).
- **TPOT** (time per output token) = ``pp x bytes_read / (bandwidth x BANDWIDTH_EFFICIENCY)``,
  with ``bytes_read`` = weights per GPU + batch x ``max_seq_len`` x KV bytes per token per GPU:
  a decode step reads every weight once and the whole KV cache of the batch, each sequence at
  its longest (the worst step of a generation).
- **decode tok/s** = batch / TPOT, the whole GPU group's output rate at that batch.
- **TTFT** for one ``max_input_len`` prompt alone = ``max(FLOPs / (tp x peak x
  COMPUTE_EFFICIENCY), weights per GPU x pp / (bandwidth x BANDWIDTH_EFFICIENCY))`` with
  FLOPs = 2 x GEMM params x L + 2 x layers x L^2 x heads x head_dim (causal attention) + the
  ``lm_head`` of the last token; ``peak`` is the dense Tensor Core rate of the precision the
  GEMMs run in (weight-only modes compute in 16 bits).

Assumptions, printed with the table: decode is bound by memory reads, not compute (true for
these batches on these GPUs); tensor-parallel ranks read their shards at the same time and
all-reduce costs nothing; pipeline stages run one after another for a token (no micro-batch
overlap); activations, kernel launches, sampling and the scheduler cost nothing; the
efficiencies below are typical fractions of datasheet peaks, not measurements of this stack.
The ranking puts what meets the SLO first, then what fits, then by decode tok/s; among the
rows that meet it, the suggestion is the largest model (the best quality), fastest first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tritonllm.build.planning import planner

from tritonllm.build.quantization import quant_modes
from tritonllm.build.planning.architectures import KNOWN, ModelArch
from tritonllm.build.engine import paged_context_fmha_blocker
from tritonllm.build.planning.gpus import Device, get_device
from tritonllm.build.profile import AWQ_GROUP_SIZES, BuildProfile

BANDWIDTH_EFFICIENCY = 0.7  # share of datasheet memory bandwidth a decode step sustains
COMPUTE_EFFICIENCY = 0.5  # share of dense Tensor Core peak a prefill sustains
CANDIDATE_MODES = ("none", "int8_wo", "int8_sq", "fp8", "int4_awq", "nvfp4")
# What the GEMMs compute in, per quantization mode (weight-only modes dequantize to 16 bits).
COMPUTE_PRECISION = {"none": "bf16", "int8_wo": "bf16", "int4_wo": "bf16", "int4_awq": "bf16",
                     "int8_sq": "int8", "fp8": "fp8", "w4a8_awq": "fp8", "nvfp4": "fp4"}
SLO_FIELDS = ("ttft", "tpot")


@dataclass(frozen=True)
class DevicePerf:
    """Datasheet peaks of one device: memory bandwidth in GB/s and DENSE (no 2:4 sparsity)
    Tensor Core TFLOPS per precision (``None``: not supported); ``source`` says where from."""

    bandwidth_gbs: float
    tflops: dict
    source: str
    base: str = "bf16"  # what "bf16" computes in on this device (the CPU twin: fp32)

    def peak_tflops(self, precision: str) -> float:
        """The precision's peak, falling back to 16-bit where the device lacks it."""
        return self.tflops.get(precision) or self.tflops["bf16"]


def _dense(bf16, fp8=None, int8=None, fp4=None) -> dict:
    return {"bf16": bf16, "fp8": fp8, "int8": int8, "fp4": fp4}


# Dense figures are the datasheets' "with sparsity" figures halved where only those are given.
PERF: dict[str, DevicePerf] = {
    "H100": DevicePerf(3350, _dense(989, 1979, 1979),
                       "NVIDIA H100 datasheet, SXM5 column (PCIe: 2000 GB/s, 756 BF16)"),
    "H100-NVL": DevicePerf(3900, _dense(835, 1671, 1671),
                           "NVIDIA H100 datasheet, NVL column (not confirmed by a page here)"),
    "H200": DevicePerf(4800, _dense(989, 1979, 1979),
                       "NVIDIA H200 product page, SXM column (NVL: 835 BF16)"),
    "A100-80GB": DevicePerf(2039, _dense(312, None, 624),
                            "NVIDIA A100 datasheet, 80GB SXM (PCIe: 1935 GB/s)"),
    "A100-40GB": DevicePerf(1555, _dense(312, None, 624), "NVIDIA A100 datasheet, 40GB"),
    "L4": DevicePerf(300, _dense(121, 242.5, 242.5), "NVIDIA L4 datasheet"),
    "L40S": DevicePerf(864, _dense(362.05, 733, 733), "NVIDIA L40S datasheet"),
    "A10": DevicePerf(600, _dense(125, None, 250),
                      "NVIDIA A10 datasheet (tensor figures not confirmed by a page here)"),
    "A10G": DevicePerf(600, _dense(125, None, 250),
                       "600 GB/s as published for AWS G5; NVIDIA publishes no A10G datasheet, "
                       "the A10's tensor figures are used (A10G's are lower: TTFT optimistic)"),
    "B200": DevicePerf(7700, _dense(2250, 4500, 4500, 9000),
                       "NVIDIA HGX B200 specifications, per GPU"),
    "cpu": DevicePerf(22, _dense(0.145),
                      "measured on the 2-core dev machine, DESIGN.md section 5: half of the "
                      "44 GB/s copy rate, a large fp32 matmul", base="fp32"),
}


@dataclass(frozen=True)
class SizingSlo:
    """The planner's SLO: TTFT and TPOT limits in seconds (either may be None)."""

    ttft_s: float | None = None
    tpot_s: float | None = None

    @classmethod
    def parse(cls, spec: str) -> "SizingSlo":
        """``ttft=500ms,tpot=50ms`` in the load tester's grammar (``loadtest.slo``); only
        ``ttft`` and ``tpot`` can be estimated before anything runs."""
        from tritonllm.loadtest.slo import Slo

        items = [part.partition("=")[0].strip().lower() for part in spec.split(",")]
        other = [key for key in items if key and key not in SLO_FIELDS]
        if other:
            raise ValueError(f"slo.{other[0]}: the planner estimates only "
                             f"{' and '.join(SLO_FIELDS)}, e.g. --slo ttft=500ms,tpot=50ms")
        limits = Slo.parse(spec).limits
        return cls(limits.get("ttft"), limits.get("tpot"))

    def allows(self, ttft_s: float, tpot_s: float) -> bool:
        """Whether estimated latencies are within every limit set."""
        return all(limit is None or value <= limit for value, limit in
                   ((ttft_s, self.ttft_s), (tpot_s, self.tpot_s)))

    def describe(self) -> str:
        parts = [f"{name}<={value * 1000:g} ms" for name, value in
                 (("ttft", self.ttft_s), ("tpot", self.tpot_s)) if value is not None]
        return ", ".join(parts)


@dataclass(frozen=True)
class Candidate:
    """One model at one precision on the profile's device group; times in seconds."""

    model: str
    mode: str
    kv_cache: str  # the KV cache precision sized with it (see ``_kv_mode``)
    params: int
    fits: str  # "yes", "batch N" or "no"
    reason: str
    weight_bytes_per_gpu: int
    kv_bytes_needed_per_gpu: int
    batch: int
    tpot_s: float | None
    ttft_s: float | None
    decode_tokens_per_s: float | None
    meets_slo: bool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def candidate_profiles(profile: BuildProfile, device: Device, arch: ModelArch):
    """The profile at each candidate precision the device supports (AWQ with the largest
    group that divides the shards)."""
    for mode in filter(lambda m: supports(device, m), CANDIDATE_MODES):
        quant = dataclasses.replace(profile.quantization, mode=mode,
                                    kv_cache=_kv_mode(profile, device, mode))
        if quant.quant_mode.grouped:
            trial = dataclasses.replace(profile, quantization=quant)
            dims = planner.awq_group_dims(trial, arch).values()
            groups = [g for g in AWQ_GROUP_SIZES if all(d % g == 0 for d in dims)]
            quant = dataclasses.replace(quant, group_size=max(groups or AWQ_GROUP_SIZES))
        yield dataclasses.replace(profile, quantization=quant)


def supports(device: Device, mode: str) -> bool:
    """Whether ``device`` runs ``mode`` (the CPU twin: full precision only)."""
    quant = quant_modes.get_mode(mode)
    if device.is_cpu:
        return mode == "none"
    return ((not quant.needs_fp8 or device.supports_fp8)
            and (not quant.needs_fp4 or device.supports_nvfp4))


def _kv_mode(profile: BuildProfile, device: Device, mode: str) -> str:
    """The profile's KV cache precision where the device and mode allow it, else none. A
    quantized KV cache that would make trtllm-build drop paged context FMHA for this mode (and so
    KV-cache reuse and chunked context, which the profile asks for) also falls back to none."""
    kv = profile.quantization.kv_cache
    if device.is_cpu or (kv == "fp8" and not device.supports_fp8):
        return "none"
    serving = profile.serving
    if serving.enable_kv_cache_reuse or serving.enable_chunked_context:
        quant = dataclasses.replace(profile.quantization, mode=mode, kv_cache=kv)
        if paged_context_fmha_blocker(dataclasses.replace(profile, quantization=quant)):
            return "none"
    return kv


def decode_step_seconds(weights: int, kv_token: int, batch: int, seq_len: int, pp: int,
                        perf: DevicePerf) -> float:
    """One decode step: every weight and the batch's whole KV cache read once, per stage."""
    bytes_read = weights + batch * seq_len * kv_token
    return pp * bytes_read / (perf.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY)


def prefill_flops(arch: ModelArch, prompt: int) -> float:
    """FLOPs of one prompt: the GEMMs, causal attention scores and values, the last logits."""
    gemm = 2 * arch.num_layers * arch.linear_params_per_layer * prompt
    attention = 2 * arch.num_layers * prompt * prompt * arch.q_size
    return gemm + attention + 2 * arch.vocab_size * arch.hidden_size


def ttft_seconds(arch: ModelArch, profile: BuildProfile, weights: int,
                 perf: DevicePerf) -> float:
    """One ``max_input_len`` prompt alone: compute-bound, but never faster than one weight read."""
    tp, pp = profile.parallel.tp_size, profile.parallel.pp_size
    peak = perf.peak_tflops(COMPUTE_PRECISION[profile.quantization.mode]) * 1e12
    compute = prefill_flops(arch, profile.limits.max_input_len) / (tp * peak * COMPUTE_EFFICIENCY)
    reads = pp * weights / (perf.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY)
    return max(compute, reads)


def size_candidate(profile: BuildProfile, arch: ModelArch, slo: SizingSlo) -> Candidate:
    """Plan ``arch`` under ``profile`` and estimate its latencies (see the module docstring)."""
    device, limits = get_device(profile.target.gpu), profile.limits
    perf = PERF[device.name]
    plan = planner.plan(profile, arch)
    full = plan.kv_tokens // limits.max_seq_len
    batch = min(limits.max_batch_size, full) if plan.ok else 0
    fits = "no" if batch < 1 else ("yes" if batch == limits.max_batch_size else f"batch {batch}")
    reason = plan.problems[0] if plan.problems else ""
    tpot = ttft = rate = None
    if batch >= 1:
        tpot = decode_step_seconds(plan.weight_bytes_per_gpu, plan.kv_bytes_per_token, batch,
                                   limits.max_seq_len, profile.parallel.pp_size, perf)
        ttft = ttft_seconds(arch, profile, plan.weight_bytes_per_gpu, perf)
        rate = batch / tpot
    meets = fits == "yes" and slo.allows(ttft, tpot)  # at the planned batch, not a shrunk one
    return Candidate(arch.name, profile.quantization.mode, profile.quantization.kv_cache,
                     arch.num_params, fits, reason,
                     plan.weight_bytes_per_gpu,
                     limits.max_batch_size * limits.max_seq_len * plan.kv_bytes_per_token,
                     batch, tpot, ttft, rate, meets)


def rank(profile: BuildProfile, slo: SizingSlo,
         models: dict[str, ModelArch] | None = None) -> list[Candidate]:
    """Every shipped model at every supported precision, best first: meets the SLO, fits,
    then the highest decode tok/s."""
    device = get_device(profile.target.gpu)
    rows = [size_candidate(candidate, arch, slo)
            for arch in (models or KNOWN).values()
            for candidate in candidate_profiles(profile, device, arch)]
    return sorted(rows, key=lambda c: (not c.meets_slo, c.batch < 1,
                                       -(c.decode_tokens_per_s or 0.0)))


def suggestion(rows: list[Candidate]) -> Candidate | None:
    """The largest model meeting the SLO, at its fastest precision."""
    good = [c for c in rows if c.meets_slo]
    return max(good, key=lambda c: (c.params, c.decode_tokens_per_s)) if good else None


def format_guidance(profile: BuildProfile, slo: SizingSlo, rows: list[Candidate]) -> str:
    """The ranked table, the suggestion, and the formulas with their assumptions."""
    device, limits, par = get_device(profile.target.gpu), profile.limits, profile.parallel
    perf = PERF[device.name]
    ms = lambda s: "-" if s is None else f"{s * 1000:.1f}"  # noqa: E731
    gib = lambda n: f"{n / planner.GIB:.1f}"  # noqa: E731
    lines = [
        f"model-size guidance: {par.tp_size * par.pp_size} x {device.name} (tp={par.tp_size}, "
        f"pp={par.pp_size}), batch {limits.max_batch_size}, prompt {limits.max_input_len}, "
        f"max_seq_len {limits.max_seq_len}; SLO {slo.describe() or 'none'}",
        f"{'#':>2} {'model':14} {'precision':9} {'KV':4} {'weights':>8} {'KV need':>8} {'fits':9} "
        f"{'TTFT ms':>9} {'TPOT ms':>8} {'decode tok/s':>12}  SLO",
    ]
    for i, c in enumerate(rows, 1):
        rate = "-" if c.decode_tokens_per_s is None else f"{c.decode_tokens_per_s:,.0f}"
        verdict = _verdict(c, slo)
        lines.append(f"{i:>2} {c.model:14} {c.mode:9} {c.kv_cache:4} "
                     f"{gib(c.weight_bytes_per_gpu):>8} {gib(c.kv_bytes_needed_per_gpu):>8} {c.fits:9} {ms(c.ttft_s):>9} "
                     f"{ms(c.tpot_s):>8} {rate:>12}  {verdict}"
                     + (f"  ({_short(c.reason)})" if c.fits == "no" else ""))
    best = suggestion(rows)
    lines.append("suggestion: " + (
        f"{best.model} at {best.mode}: the largest model that meets the SLO, at its fastest "
        "precision (`tritonllm accuracy` shows what a precision costs in quality)" if best else
        "nothing meets the SLO here; raise tp_size, lower max_batch_size/max_seq_len, or "
        "relax it"))
    return "\n".join(lines + _assumptions(perf))


def _verdict(c: Candidate, slo: SizingSlo) -> str:
    if c.meets_slo:
        return "meets"
    if not c.batch:
        return ""
    return f"meets only at batch {c.batch}" if slo.allows(c.ttft_s, c.tpot_s) else "misses"


def _short(reason: str) -> str:
    return reason.split(";")[0]


def _assumptions(perf: DevicePerf) -> list[str]:
    return [
        "weights and KV need are GiB per GPU; KV need = batch x max_seq_len x KV bytes/token",
        f"TPOT = pp x (weights + batch x max_seq_len x KV bytes/token) / (bandwidth x "
        f"{BANDWIDTH_EFFICIENCY}); decode tok/s = batch / TPOT",
        f"TTFT = max(prompt FLOPs / (tp x peak x {COMPUTE_EFFICIENCY}), pp x weights / "
        f"(bandwidth x {BANDWIDTH_EFFICIENCY})); prompt FLOPs = 2 x GEMM params x L + "
        "2 x layers x L^2 x heads x head_dim",
        f"device: {perf.bandwidth_gbs:g} GB/s, dense TFLOPS {_tflops(perf)} ({perf.source})",
        "assumed: decode bound by memory reads; TP ranks read in parallel, all-reduce free; PP "
        "stages in sequence; every sequence at max_seq_len (worst step); one prompt alone for "
        "TTFT; efficiencies are typical shares of datasheet peaks, not measured here",
    ]


def _tflops(perf: DevicePerf) -> str:
    names = {"bf16": perf.base}
    return ", ".join(f"{names.get(k, k)} {v:g}" for k, v in perf.tflops.items() if v)


def guidance_dict(profile: BuildProfile, slo: SizingSlo, rows: list[Candidate]) -> dict:
    best = suggestion(rows)
    return {"slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s},
            "bandwidth_efficiency": BANDWIDTH_EFFICIENCY,
            "compute_efficiency": COMPUTE_EFFICIENCY,
            "device_source": PERF[get_device(profile.target.gpu).name].source,
            "ranking": [c.to_dict() for c in rows],
            "suggestion": None if best is None else {"model": best.model, "mode": best.mode}}
