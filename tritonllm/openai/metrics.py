"""The frontend's Prometheus metrics, measured where the HTTP client sees them.

Each :class:`FrontendMetrics` owns its registry (two frontends can live in one process).
Names follow vLLM's meanings under our prefix (vLLM's name in brackets):

- ``tritonllm_openai_requests_total{endpoint,status}``: answered requests by HTTP status
- ``tritonllm_openai_requests_running``: requests being generated now (``vllm:num_requests_running``)
- ``tritonllm_openai_time_to_first_token_seconds{endpoint}`` (``vllm:time_to_first_token_seconds``)
- ``tritonllm_openai_inter_token_latency_seconds{endpoint}``: between successive text deltas
  (``vllm:inter_token_latency_seconds``; a delta may carry more than one token)
- ``tritonllm_openai_e2e_request_latency_seconds{endpoint}`` (``vllm:e2e_request_latency_seconds``)
- ``tritonllm_openai_prompt_tokens_total``, ``tritonllm_openai_generation_tokens_total``
  (``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``)
- ``tritonllm_openai_request_success_total{finished_reason}`` (``vllm:request_success_total``);
  ``abort`` counts requests whose client left before the end.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

# vLLM's buckets, the same as the engine's histograms on Triton's metrics port.
from tritonllm.models.metrics import E2E_BUCKETS, ITL_BUCKETS, TTFT_BUCKETS

PREFIX = "tritonllm_openai"


class FrontendMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "Requests answered, by endpoint and "
                                "HTTP status", ["endpoint", "status"], registry=r)
        self.running = Gauge(f"{PREFIX}_requests_running", "Requests being generated",
                             registry=r)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "Time to the first "
                              "text", ["endpoint"], buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram(f"{PREFIX}_inter_token_latency_seconds", "Time between text "
                             "deltas", ["endpoint"], buckets=ITL_BUCKETS, registry=r)
        self.e2e = Histogram(f"{PREFIX}_e2e_request_latency_seconds", "Request latency, end "
                             "to end", ["endpoint"], buckets=E2E_BUCKETS, registry=r)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "Prompt tokens", registry=r)
        self.generation_tokens = Counter(f"{PREFIX}_generation_tokens", "Generated tokens",
                                         registry=r)
        self.finished = Counter(f"{PREFIX}_request_success", "Finished requests by reason",
                                ["finished_reason"], registry=r)

    def answered(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint, str(status)).inc()

    def timer(self, endpoint: str) -> "RequestTimer":
        return RequestTimer(self, endpoint)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestTimer:
    """Times one generation: ``delta()`` at each text delta, then ``finish(...)`` or
    ``abort()`` exactly once. Also a context manager over the running gauge."""

    def __init__(self, metrics: FrontendMetrics, endpoint: str):
        self._m, self._endpoint = metrics, endpoint
        self._start = self._last = time.perf_counter()
        self._deltas = 0

    def __enter__(self) -> "RequestTimer":
        self._m.running.inc()
        return self

    def __exit__(self, *exc) -> None:
        self._m.running.dec()

    def delta(self) -> None:
        now = time.perf_counter()
        histogram = self._m.ttft if self._deltas == 0 else self._m.itl
        histogram.labels(self._endpoint).observe(now - (self._start if self._deltas == 0
                                                        else self._last))
        self._last, self._deltas = now, self._deltas + 1

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> None:
        self._m.e2e.labels(self._endpoint).observe(time.perf_counter() - self._start)
        self._m.prompt_tokens.inc(prompt_tokens)
        self._m.generation_tokens.inc(completion_tokens)
        self._m.finished.labels(reason).inc()

    def abort(self) -> None:
        self._m.finished.labels("abort").inc()
