"""Prometheus metrics of the CPU engine, served on Triton's metrics port (``/metrics``).

- ``tritonllm_engine_<counter>`` gauges: every field of ``EngineStats`` (steps, shared decode
  steps, KV-cache free/total blocks and tokens, running/waiting ...), refreshed when a request
  finishes and twice a second.
- ``tritonllm_time_to_first_token_seconds`` and ``tritonllm_time_per_output_token_seconds``
  histograms, one observation per finished request: TTFT = first token - arrival;
  TPOT = (last token - first token) / (output tokens - 1). The reference deployment has neither.
"""

from __future__ import annotations

import dataclasses
import threading

TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
TPOT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]


class EngineMetrics:
    def __init__(self, pb_utils, model_name: str):
        from tritonllm.engine import EngineStats

        labels = {"model": model_name}
        # Triton drops a metric whose family object is garbage-collected: keep the families.
        self._families = []
        self._gauges = {f.name: self._metric(pb_utils, f"tritonllm_engine_{f.name}",
                                             f"CPU engine: {f.name}", "GAUGE", labels)
                        for f in dataclasses.fields(EngineStats)}
        self._ttft = self._tpot = None
        if hasattr(pb_utils.MetricFamily, "HISTOGRAM"):
            self._ttft = self._metric(pb_utils, "tritonllm_time_to_first_token_seconds",
                                      "time from arrival to the first generated token",
                                      "HISTOGRAM", labels, buckets=TTFT_BUCKETS)
            self._tpot = self._metric(pb_utils, "tritonllm_time_per_output_token_seconds",
                                      "mean gap between generated tokens of a request",
                                      "HISTOGRAM", labels, buckets=TPOT_BUCKETS)

    def _metric(self, pb_utils, name, description, kind, labels, **kwargs):
        family = pb_utils.MetricFamily(name=name, description=description,
                                       kind=getattr(pb_utils.MetricFamily, kind))
        self._families.append(family)
        return family.Metric(labels=labels, **kwargs)

    def refresh_every(self, period_s: float, stats_fn) -> threading.Event:
        """Refresh the gauges from ``stats_fn()`` on a daemon thread; set the event to stop."""
        stop = threading.Event()

        def loop():
            while not stop.wait(period_s):
                self.set_stats(stats_fn())

        threading.Thread(target=loop, name="tritonllm-metrics", daemon=True).start()
        return stop

    def set_stats(self, stats) -> None:
        for name, gauge in self._gauges.items():
            gauge.set(float(getattr(stats, name)))

    def request_finished(self, output, stats) -> None:
        self.set_stats(stats)
        if self._ttft is None or not output.first_token_time_ns:
            return
        self._ttft.observe((output.first_token_time_ns - output.arrival_time_ns) / 1e9)
        if output.num_output_tokens > 1:
            span = output.last_token_time_ns - output.first_token_time_ns
            self._tpot.observe(span / 1e9 / (output.num_output_tokens - 1))
