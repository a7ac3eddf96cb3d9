"""The Grafana dashboard, declared once: each panel is a list of :class:`Query` objects that
render to PromQL for Grafana (``deploy/grafana/tritonllm.json``, rate window
``$__rate_interval``) and, with a fixed window, for a local Prometheus that draws the PNG
(:mod:`tritonllm.deploy.dashboard_png`).

    python -m tritonllm.deploy.dashboard            # rewrite deploy/grafana/tritonllm.json

Metrics: the engine's on Triton's metrics port (:mod:`tritonllm.models.metrics`) and the OpenAI
frontend's ``/metrics`` (:mod:`tritonllm.openai.metrics`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

JSON_PATH = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tritonllm.json"
RATE_WINDOW = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    """``kind``: ``quantile`` (``q`` of histogram ``metric``), ``rate`` (per second, summed,
    split by ``by`` when set), ``ratio`` (the rate of ``metric`` over the rate of counter
    ``per``, both summed) or ``gauge`` (summed). ``legend``: Grafana's legend format."""

    kind: str
    metric: str
    legend: str
    q: float = 0.0
    by: str = ""
    per: str = ""

    def promql(self, window: str = RATE_WINDOW) -> str:
        """The query; ``window``: the range of its ``rate`` (Grafana's variable by default)."""
        if self.kind == "quantile":
            return (f"histogram_quantile({self.q}, sum by (le) "
                    f"(rate({self.metric}_bucket[{window}])))")
        if self.kind == "ratio":
            return (f"sum (rate({self.metric}[{window}])) / "
                    f"sum (rate({self.per}[{window}]))")
        if self.kind == "rate":
            by = f" by ({self.by})" if self.by else ""
            return f"sum{by} (rate({self.metric}[{window}]))"
        return f"sum({self.metric})"


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # Grafana unit: s, percentunit, reqps, short ...
    queries: tuple[Query, ...] = field(default_factory=tuple)


def _quantiles(metric: str) -> tuple[Query, ...]:
    return tuple(Query("quantile", metric, f"p{int(q * 100)}", q=q) for q in (0.5, 0.95))


PANELS = (
    Panel("Time to first token", "s", _quantiles("tritonllm_time_to_first_token_seconds")),
    Panel("Inter-token latency", "s", _quantiles("tritonllm_inter_token_latency_seconds")),
    Panel("End-to-end request latency", "s",
          _quantiles("tritonllm_e2e_request_latency_seconds")),
    Panel("Queue time", "s", _quantiles("tritonllm_request_queue_time_seconds")),
    Panel("Tokens per second", "short", (
        Query("rate", "tritonllm_generation_tokens_total", "generated"),
        Query("rate", "tritonllm_prompt_tokens_total", "prompt (prefill)"))),
    Panel("Requests running / waiting", "short", (
        Query("gauge", "tritonllm_num_requests_running", "running"),
        Query("gauge", "tritonllm_num_requests_waiting", "waiting"))),
    Panel("KV-cache usage", "percentunit", (
        Query("gauge", "tritonllm_kv_cache_usage_perc", "used"),)),
    Panel("Finished requests by reason", "reqps", (
        Query("rate", "tritonllm_request_success_total", "{{finished_reason}}",
              by="finished_reason"),)),
    Panel("OpenAI frontend requests by status", "reqps", (
        Query("rate", "tritonllm_openai_requests_total", "{{status}}", by="status"),)),
    Panel("OpenAI frontend time to first token", "s",
          _quantiles("tritonllm_openai_time_to_first_token_seconds")),
    Panel("Engine step time (mean)", "s", (
        Query("ratio", "tritonllm_engine_step_seconds_total", "step",
              per="tritonllm_engine_steps_total"),
        Query("ratio", "tritonllm_engine_forward_seconds_total", "forward",
              per="tritonllm_engine_steps_total"),
        Query("ratio", "tritonllm_engine_grammar_mask_seconds_total",
              "grammar masks (guided decoding)", per="tritonllm_engine_steps_total"))),
    # The rates show (as 0) when speculation is off; the ratios only once something drafts.
    Panel("Speculative decoding", "short", (
        Query("rate", "tritonllm_spec_decode_num_draft_tokens_total", "drafted tokens/s"),
        Query("rate", "tritonllm_spec_decode_num_accepted_tokens_total", "accepted tokens/s"),
        Query("ratio", "tritonllm_spec_decode_num_accepted_tokens_total",
              "acceptance rate (accepted / drafted tokens)",
              per="tritonllm_spec_decode_num_draft_tokens_total"),
        Query("ratio", "tritonllm_spec_decode_num_accepted_tokens_total",
              "mean accepted tokens per draft", per="tritonllm_spec_decode_num_drafts_total"))),
    Panel("Prefix-cache hit rate", "percentunit", (
        Query("ratio", "tritonllm_prefix_cache_hits_total", "hits / queried tokens",
              per="tritonllm_prefix_cache_queries_total"),)),
)


def grafana_panel(index: int, panel: Panel) -> dict:
    return {
        "id": index + 1, "type": "timeseries", "title": panel.title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": q.promql(), "legendFormat": q.legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, q in enumerate(panel.queries)],
    }


def grafana_dashboard() -> dict:
    """The dashboard model Grafana imports (a Prometheus data source chosen at import)."""
    return {
        "title": "tritonllm", "uid": "tritonllm", "schemaVersion": 39, "version": 1,
        "time": {"from": "now-30m", "to": "now"}, "refresh": "10s", "tags": ["tritonllm", "llm"],
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Prometheus"}]},
        "panels": [grafana_panel(i, p) for i, p in enumerate(PANELS)],
    }


def render_json() -> str:
    return json.dumps(grafana_dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else JSON_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_json())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
