"""Read a running server's Prometheus metrics (Triton's ``:8002/metrics``)."""

from __future__ import annotations

import urllib.request

ENGINE_PREFIX = "tritonllm_engine_"


def scrape(metrics_url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """Every sample as ``{'name{labels}': value}`` (comments skipped)."""
    body = urllib.request.urlopen(metrics_url, timeout=timeout_s).read().decode()
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def engine_stats(metrics_url: str) -> dict[str, float]:
    """The CPU engine's ``EngineStats`` gauges by field name (``steps``, ``free_kv_tokens`` ...)."""
    return {series.split("{")[0][len(ENGINE_PREFIX):]: value
            for series, value in scrape(metrics_url).items() if series.startswith(ENGINE_PREFIX)}
