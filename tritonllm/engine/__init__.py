"""CPU inflight-batching engine for Llama-family models.

Layers (each testable alone): ``request`` (requests, outputs, per-request state) →
``kv_cache`` (paged block bookkeeping) → ``scheduler`` (what to compute each step) — plain Python
without torch, like ``threads`` (how many threads a step uses), ``kernel_build`` (compiling
and loading our C++ kernels) and ``stats`` — then the torch code: ``runner`` (the forward step)
over ``weights``, ``linear`` and ``step_inputs``, ``cpu_kernels`` (calls into the C++ kernels)
and ``sampler``; and ``engine`` (the background step loop). Import ``ModelRunner`` from
``tritonllm.engine.runner``.
"""

from tritonllm.engine.config import EngineConfig
from tritonllm.engine.engine import LLMEngine, QueueFullError
from tritonllm.engine.stats import EngineStats
from tritonllm.engine.request import GenerationOutput, GenerationRequest, SamplingParams

__all__ = [
    "EngineConfig",
    "EngineStats",
    "GenerationOutput",
    "GenerationRequest",
    "LLMEngine",
    "QueueFullError",
    "SamplingParams",
]
