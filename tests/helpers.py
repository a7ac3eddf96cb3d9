"""Helpers shared by tests that read the live server's engine metrics."""

from __future__ import annotations

import time

from tritonllm.serve.metrics import engine_stats


def engine_metrics(server) -> dict[str, float]:
    return engine_stats(server.metrics_url)


def wait_for_idle_cache(server, min_cancelled: float = 0, timeout_s: float = 60.0) -> dict:
    """Engine metrics once nothing runs, the cache is all free and ``cancelled`` has reached
    ``min_cancelled`` (or the timeout passed: the caller's asserts then say what is wrong)."""
    deadline = time.monotonic() + timeout_s
    metrics = engine_metrics(server)
    while time.monotonic() < deadline and not (
            metrics.get("running") == 0 and metrics["cancelled"] >= min_cancelled
            and metrics["free_kv_tokens"] == metrics["total_kv_tokens"]):
        time.sleep(0.25)
        metrics = engine_metrics(server)
    return metrics
