"""Read a running server's Prometheus metrics (Triton's ``:8002/metrics``, the frontend's
``/metrics``). Metric names live in :mod:`tritonllm.models.metrics`; this module only reads."""

from __future__ import annotations

import re
import urllib.request

from tritonllm.models.metrics import COUNTERS, FINISHED, GAUGES

_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})? (\S+)$')


def fetch(metrics_url: str, timeout_s: float = 5.0) -> str:
    return urllib.request.urlopen(metrics_url, timeout=timeout_s).read().decode()


def scrape(metrics_url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """Every sample as ``{'name{labels}': value}`` (comments skipped)."""
    return parse_samples(fetch(metrics_url, timeout_s))


def parse_samples(body: str) -> dict[str, float]:
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def metric_types(body: str) -> dict[str, str]:
    """``{family name: 'counter' | 'gauge' | 'histogram' ...}`` from the ``# TYPE`` lines."""
    types = {}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind.strip()
    return types


def sample_names(body: str) -> set[str]:
    """The names of every sample (histograms give ``_bucket``, ``_sum``, ``_count``)."""
    return {m.group(1) for m in map(_SAMPLE.match, body.splitlines()) if m}


def engine_stats(metrics_url: str) -> dict[str, float]:
    """The CPU engine's state by ``EngineStats`` field name (``steps``, ``free_kv_tokens`` ...),
    summed over models, plus ``completed``/``cancelled`` (timeouts included)/``failed`` from the
    finished-requests counter and ``kv_cache_usage``, as ``EngineStats`` counts them."""
    by_name = {name: field for field, name in {**COUNTERS, **GAUGES}.items()}
    stats = {"completed": 0.0, "cancelled": 0.0, "failed": 0.0}
    for series, value in scrape(metrics_url).items():
        name = series.split("{")[0]
        if name in by_name:
            stats[by_name[name]] = stats.get(by_name[name], 0.0) + value
        elif name == FINISHED:
            reason = re.search(r'finished_reason="([^"]*)"', series).group(1)
            key = {"cancelled": "cancelled", "timeout": "cancelled",
                   "error": "failed"}.get(reason, "completed")
            stats[key] += value
        elif name == "tritonllm_kv_cache_usage_perc":
            stats["kv_cache_usage"] = value
    return stats
