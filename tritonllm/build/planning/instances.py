"""How many preprocessing and postprocessing instances a deployment gets, and why.

The ensemble's Python models must keep up with the engine: every streamed response costs
postprocessing CPU time, every request costs preprocessing CPU time. So

    responses/s = engine tokens/s / stream_interval
    postprocessing instances = ceil(responses/s x cost per response / TARGET_UTILIZATION)
    requests/s  = engine tokens/s / MEAN_OUTPUT_TOKENS
    preprocessing instances  = ceil(requests/s x cost per request / TARGET_UTILIZATION)

per engine (one model instance over tp x pp GPUs), then divided by its GPUs for the per-GPU
figure docs/build.md states. The costs are the CPU time of the models' stub processes per
response / request, measured by ``tritonllm bench ensemble`` (docs/performance.md, "Ensemble
capacity", from /proc) on this project's 2-core shared CPU: a GPU node's cores are faster,
so the counts are on the safe side.

The engine's token rate is a roofline estimate: a decode step reads the weights of a rank and
the KV cache of the batch once, at ``BANDWIDTH_EFFICIENCY`` of the device's memory bandwidth,
and yields one token per running request (``limits.max_batch_size`` of them). For Llama-3.1-8B
FP8 on one H100 it gives ~12.7k tokens/s at batch 64; TensorRT-LLM publishes ~28k at 128/128 with
larger batches, which is why the estimate is an input here, not a promise.

On GPU, postprocessing is exact with several instances only when the engine sends
``preceding_ids`` (tritonllm.models.postprocess); TensorRT-LLM 1.1.0's ``tensorrtllm`` backend
does not, so streaming GPU profiles keep ONE postprocessing instance (per-request detokenizer
state, several responses per ``execute``) and the plan says how far one instance falls short
(``serving.decoupled: false`` deployments answer each request whole and scale freely).
Preprocessing is stateless everywhere and scales freely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tritonllm.build.planning.gpus import Device, get_device

# Measured with `tritonllm bench ensemble` (docs/performance.md "Ensemble capacity", 2026-11-30):
# CPU time of the model's stub processes per streamed response (postprocessing, one instance,
# 184-228 us) and per request (preprocessing, 3-5 us per response x 256 responses), microseconds of
# one core of this project's shared 2-core machine, rounded up.
POST_US_PER_RESPONSE = 230.0
PRE_US_PER_REQUEST = 1300.0
TARGET_UTILIZATION = 0.5  # headroom for bursts: a queue at postprocessing delays every token
MEAN_OUTPUT_TOKENS = 128  # requests/s from tokens/s (the 128/128 workload)
MEAN_CONTEXT_TOKENS = 256  # KV read per running request and step (128 in + 128 out)
BANDWIDTH_EFFICIENCY = 0.6  # of the datasheet memory bandwidth a decode step reaches
# Datasheet memory bandwidth, TB/s (NVIDIA product pages; SXM parts where both exist).
MEMORY_BANDWIDTH_TBPS = {"H100": 3.35, "H100-NVL": 3.9, "H200": 4.8, "A100-80GB": 2.04,
                         "A100-40GB": 1.56, "L4": 0.3, "L40S": 0.864, "A10G": 0.6, "A10": 0.6,
                         "B200": 8.0}
CPU_ENGINE_TOKENS_PER_S = 100.0  # the CPU twin's engine at c=8 (DESIGN §9: ~92 tok/s)


@dataclass(frozen=True)
class InstancePlan:
    """The counts for one engine (``gpus`` GPUs) and the figures they come from."""

    engine_tokens_per_s: float
    gpus: int
    stream_interval: int
    responses_per_s: float
    requests_per_s: float
    preprocessing: int
    postprocessing: int
    postprocessing_needed: int
    stateless_postprocessing: bool

    @property
    def postprocessing_shortfall(self) -> float:
        """Responses/s one capped postprocessing instance cannot carry (0: none)."""
        capacity = self.postprocessing * TARGET_UTILIZATION * 1e6 / POST_US_PER_RESPONSE
        return max(0.0, self.responses_per_s - capacity)

    def per_gpu(self) -> str:
        return (f"preprocessing {self.preprocessing / self.gpus:g}, postprocessing "
                f"{self.postprocessing / self.gpus:g} instances per GPU")

    def describe(self) -> str:
        lines = [f"ensemble instances: engine ~{self.engine_tokens_per_s:,.0f} tokens/s "
                 f"(estimate) on {self.gpus} device(s), stream_interval {self.stream_interval} -> "
                 f"{self.responses_per_s:,.0f} responses/s, {self.requests_per_s:,.1f} "
                 f"requests/s; preprocessing {self.preprocessing}, postprocessing "
                 f"{self.postprocessing} ({self.per_gpu()})"]
        if self.postprocessing_shortfall:
            lines.append(f"  warning: postprocessing needs {self.postprocessing_needed} "
                         f"instances at {POST_US_PER_RESPONSE:.0f} us/response, but exact "
                         "streamed text with several instances needs preceding_ids, which "
                         "TensorRT-LLM 1.1.0's tensorrtllm backend does not send; one "
                         f"instance leaves ~{self.postprocessing_shortfall:,.0f} responses/s "
                         "queued at the planned load")
        return "\n".join(lines)


def engine_tokens_per_s(device: Device, weight_bytes_per_gpu: int, kv_bytes_per_token: int,
                        max_batch_size: int) -> float:
    """Decode tokens/s of one engine, memory-bound roofline (see the module docstring)."""
    if device.is_cpu:
        return CPU_ENGINE_TOKENS_PER_S
    bandwidth = MEMORY_BANDWIDTH_TBPS[device.name] * 1e12 * BANDWIDTH_EFFICIENCY
    step_bytes = weight_bytes_per_gpu + max_batch_size * MEAN_CONTEXT_TOKENS * kv_bytes_per_token
    return bandwidth / step_bytes * max_batch_size


def instances_for(tokens_per_s: float, gpus: int = 1, stream_interval: int = 1,
                  stateless_postprocessing: bool = True) -> InstancePlan:
    """Instance counts that carry ``tokens_per_s`` streamed tokens per second."""
    if tokens_per_s <= 0 or gpus < 1 or stream_interval < 1:
        raise ValueError("tokens_per_s > 0, gpus >= 1 and stream_interval >= 1 are required, "
                         f"got {tokens_per_s}, {gpus}, {stream_interval}")
    responses = tokens_per_s / stream_interval
    requests = tokens_per_s / MEAN_OUTPUT_TOKENS
    post_needed = _count(responses * POST_US_PER_RESPONSE)
    pre = _count(requests * PRE_US_PER_REQUEST)
    post = post_needed if stateless_postprocessing else 1
    return InstancePlan(tokens_per_s, gpus, stream_interval, responses, requests, pre, post,
                        post_needed, stateless_postprocessing)


def _count(busy_us_per_s: float) -> int:
    return max(1, math.ceil(busy_us_per_s / 1e6 / TARGET_UTILIZATION))


def plan_instances(profile, plan) -> InstancePlan:
    """The counts for a build profile and its memory plan (``tritonllm.build.planning.planner.Plan``)."""
    device = get_device(profile.target.gpu)
    gpus = profile.parallel.tp_size * profile.parallel.pp_size
    rate = engine_tokens_per_s(device, plan.weight_bytes_per_gpu, plan.kv_bytes_per_token,
                               profile.limits.max_batch_size)
    # Without streaming every response is whole, so any number of instances is exact.
    stateless = device.is_cpu or not profile.serving.decoupled
    return instances_for(rate, gpus, profile.serving.stream_interval,
                         stateless_postprocessing=stateless)
