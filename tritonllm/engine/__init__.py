"""CPU inflight-batching engine for Llama-family models.

Layers (each testable alone): ``request`` (requests, outputs, per-request state) →
``kv_cache`` (paged block bookkeeping) → ``scheduler`` (what to compute each step) — plain Python
without torch, like ``threads`` (how many threads a step uses) and ``kernel_build`` (compiling
and loading our C++ kernels) — then the torch code: ``runner`` (weights and the forward step),
``cpu_kernels`` (calls into the C++ kernels) and ``sampler``; and ``engine`` (the background step
loop). Import ``ModelRunner`` from ``tritonllm.engine.runner``.
"""

from tritonllm.engine.config import EngineConfig
from tritonllm.engine.engine import EngineStats, LLMEngine, QueueFullError
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
