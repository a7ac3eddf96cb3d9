"""Prometheus metrics of the CPU engine, served on Triton's metrics port (``/metrics``).

Names follow vLLM's meanings under our ``tritonllm_`` prefix (docs/metrics.md has the table). Every
series carries ``model="<Triton model name>"``.

- Counters (``*_total``, monotonic; Triton's COUNTER can only be incremented, so each refresh
  adds the difference between two ``EngineStats`` snapshots): see :data:`COUNTERS`.
- Gauges (the current state): see :data:`GAUGES`, plus ``tritonllm_kv_cache_usage_perc``, the
  fraction of KV-cache blocks in use (0 = empty, 1 = full; ``vllm:kv_cache_usage_perc``).
- ``tritonllm_request_success_total{finished_reason}``: finished requests by the engine's reason
  (``end_id``, ``stop_words``, ``length``, ``cancelled``, ``error``), counted from each request's
  final output. vLLM's ``stop`` is our ``end_id`` + ``stop_words``; its ``abort`` our
  ``cancelled``.
- Histograms, one observation per finished request (seconds): TTFT (first token - arrival),
  queue time (first scheduled - arrival), end-to-end latency (finish - arrival), time per output
  token ((last token - first token) / (tokens - 1)), and inter-token latency: the request's
  mean gap, observed once per gap (so sum and count are exact; the engine keeps no per-token
  times, so a quantile mixes request means rather than single gaps).

Stats are refreshed when a request finishes and twice a second (``refresh_every``).
"""

from __future__ import annotations

import threading
import time

from tritonllm.engine.request import FINISH_REASONS

# EngineStats field -> counter name (the field is monotonic).
COUNTERS = {
    "prefill_tokens": "tritonllm_prompt_tokens_total",
    "generated_tokens": "tritonllm_generation_tokens_total",
    "preempted": "tritonllm_num_preemptions_total",
    "rejected": "tritonllm_requests_rejected_total",
    "steps": "tritonllm_engine_steps_total",
    "steps_with_multiple_decodes": "tritonllm_engine_shared_decode_steps_total",
    "decode_tokens": "tritonllm_engine_decode_tokens_total",
    "prefix_cache_queries": "tritonllm_prefix_cache_queries_total",
    "prefix_cache_hits": "tritonllm_prefix_cache_hits_total",
    "prefix_cache_evictions": "tritonllm_prefix_cache_evictions_total",
    "step_seconds": "tritonllm_engine_step_seconds_total",
    "forward_seconds": "tritonllm_engine_forward_seconds_total",
    "guided_requests": "tritonllm_guided_requests_total",
    "grammar_mask_seconds": "tritonllm_engine_grammar_mask_seconds_total",
    "spec_drafts": "tritonllm_spec_decode_num_drafts_total",
    "spec_draft_tokens": "tritonllm_spec_decode_num_draft_tokens_total",
    "spec_accepted_tokens": "tritonllm_spec_decode_num_accepted_tokens_total",
}
# EngineStats field -> gauge name (the field is a current value or a high-water mark).
GAUGES = {
    "running": "tritonllm_num_requests_running",
    "waiting": "tritonllm_num_requests_waiting",
    "max_running_seen": "tritonllm_engine_max_running_seen",
    "free_kv_blocks": "tritonllm_engine_free_kv_blocks",
    "total_kv_blocks": "tritonllm_engine_total_kv_blocks",
    "free_kv_tokens": "tritonllm_engine_free_kv_tokens",
    "total_kv_tokens": "tritonllm_engine_total_kv_tokens",
    "cached_kv_blocks": "tritonllm_engine_cached_kv_blocks",
}
KV_USAGE = "tritonllm_kv_cache_usage_perc"
FINISHED = "tritonllm_request_success_total"

# vLLM's buckets (seconds), shared with the OpenAI frontend's histograms.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
# name -> (help, buckets)
HISTOGRAMS = {
    "tritonllm_time_to_first_token_seconds": ("Time from arrival to the first token",
                                              TTFT_BUCKETS),
    "tritonllm_inter_token_latency_seconds": ("Time between generated tokens (request mean, "
                                              "once per gap)", ITL_BUCKETS),
    "tritonllm_request_time_per_output_token_seconds": ("Mean time per output token after the "
                                                        "first, per request", ITL_BUCKETS),
    "tritonllm_e2e_request_latency_seconds": ("Time from arrival to the final output",
                                              E2E_BUCKETS),
    "tritonllm_request_queue_time_seconds": ("Time from arrival to first scheduled",
                                             E2E_BUCKETS),
}


def kv_cache_usage(stats) -> float:
    """Fraction of KV-cache blocks in use, 0..1 (0 when the cache has no blocks)."""
    if not stats.total_kv_blocks:
        return 0.0
    return 1.0 - stats.free_kv_blocks / stats.total_kv_blocks


def request_timings(output, finished_ns: int) -> dict[str, float]:
    """Histogram name -> seconds for one finished request's final ``GenerationOutput``.

    Only the events that happened are timed: a request cancelled while queued has a queue-less
    end-to-end time and nothing else. The inter-token entry is the mean gap (observe it once per
    gap: ``num_output_tokens - 1`` times)."""
    arrival = output.arrival_time_ns
    times = {"tritonllm_e2e_request_latency_seconds": (finished_ns - arrival) / 1e9}
    if output.first_scheduled_time_ns:
        times["tritonllm_request_queue_time_seconds"] = (
            (output.first_scheduled_time_ns - arrival) / 1e9)
    if output.first_token_time_ns:
        times["tritonllm_time_to_first_token_seconds"] = (
            (output.first_token_time_ns - arrival) / 1e9)
    if output.num_output_tokens > 1 and output.last_token_time_ns:
        span = output.last_token_time_ns - output.first_token_time_ns
        mean = span / 1e9 / (output.num_output_tokens - 1)
        times["tritonllm_request_time_per_output_token_seconds"] = mean
        times["tritonllm_inter_token_latency_seconds"] = mean
    return times


class EngineMetrics:
    """The engine's metric families, registered with Triton through ``pb_utils``.

    ``set_stats(stats)`` may be called from any thread (the refresh thread and the engine's
    callbacks both do): counters advance by the difference from the last snapshot, under a lock.
    """

    def __init__(self, pb_utils, model_name: str):
        from tritonllm.engine import EngineStats

        self._pb, self._labels = pb_utils, {"model": model_name}
        self._families = []  # Triton drops a metric whose family is garbage-collected: keep them
        self._lock = threading.Lock()
        self._last = EngineStats()
        self._counters = {f: self._metric(n, f"CPU engine: {f}", "COUNTER")
                          for f, n in COUNTERS.items()}
        self._gauges = {f: self._metric(n, f"CPU engine: {f}", "GAUGE") for f, n in GAUGES.items()}
        self._kv_usage = self._metric(KV_USAGE, "KV-cache usage, 1 = full", "GAUGE")
        self._finished = self._labelled(FINISHED, "Finished requests by reason",
                                        "finished_reason", FINISH_REASONS)
        self._histograms = {}
        if hasattr(pb_utils.MetricFamily, "HISTOGRAM"):
            self._histograms = {name: self._metric(name, text, "HISTOGRAM", buckets=list(b))
                                for name, (text, b) in HISTOGRAMS.items()}

    def _family(self, name, description, kind):
        family = self._pb.MetricFamily(name=name, description=description,
                                       kind=getattr(self._pb.MetricFamily, kind))
        self._families.append(family)
        return family

    def _metric(self, name, description, kind, **kwargs):
        return self._family(name, description, kind).Metric(labels=self._labels, **kwargs)

    def _labelled(self, name, description, label, values):
        family = self._family(name, description, "COUNTER")
        return {v: family.Metric(labels={**self._labels, label: v}) for v in values}

    def refresh_every(self, period_s: float, stats_fn) -> threading.Event:
        """Refresh from ``stats_fn()`` on a daemon thread; set the returned event to stop."""
        stop = threading.Event()

        def loop():
            while not stop.wait(period_s):
                self.set_stats(stats_fn())

        threading.Thread(target=loop, name="tritonllm-metrics", daemon=True).start()
        return stop

    def set_stats(self, stats) -> None:
        """Publish an ``EngineStats`` snapshot (an older snapshot than the last one is ignored
        for the counters: they never go down)."""
        with self._lock:
            for field, counter in self._counters.items():
                delta = getattr(stats, field) - getattr(self._last, field)
                if delta > 0:
                    counter.increment(float(delta))
                    setattr(self._last, field, getattr(stats, field))
            for field, gauge in self._gauges.items():
                gauge.set(float(getattr(stats, field)))
            self._kv_usage.set(kv_cache_usage(stats))

    def request_finished(self, output, stats) -> None:
        """Time a finished request (its final output), publish ``stats``, then count it: once
        the finished counter shows the request, its histograms and counters already do."""
        for name, seconds in request_timings(output, time.time_ns()).items():
            if name in self._histograms:
                gaps = output.num_output_tokens - 1 if "inter_token" in name else 1
                for _ in range(gaps):
                    self._histograms[name].observe(seconds)
        self.set_stats(stats)
        reason = output.finish_reason if output.finish_reason in self._finished else "error"
        self._finished[reason].increment(1.0)
