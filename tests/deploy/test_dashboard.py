"""The Grafana dashboard: the committed JSON is a fresh render, its queries are PromQL over our
metric names, and the local evaluator computes rates and quantiles as Prometheus does."""

import json

import pytest

from tritonllm.deploy import dashboard
from tritonllm.deploy.promeval import evaluate, histogram_quantile, rates


def test_committed_json_equals_a_fresh_render():
    assert dashboard.JSON_PATH.read_text() == dashboard.render_json()


def test_panels_cover_what_dashboards_expect():
    doc = json.loads(dashboard.render_json())
    exprs = " ".join(t["expr"] for p in doc["panels"] for t in p["targets"])
    for needed in ("histogram_quantile(0.95, sum by (le) (rate("
                   "tritonllm_time_to_first_token_seconds_bucket",
                   "tritonllm_inter_token_latency_seconds_bucket",
                   "tritonllm_e2e_request_latency_seconds_bucket",
                   "rate(tritonllm_generation_tokens_total", "tritonllm_num_requests_running",
                   "tritonllm_num_requests_waiting", "tritonllm_kv_cache_usage_perc",
                   "sum by (finished_reason) (rate(tritonllm_request_success_total",
                   "sum by (status) (rate(tritonllm_openai_requests_total",
                   "sum (rate(tritonllm_engine_forward_seconds_total[$__rate_interval])) / "
                   "sum (rate(tritonllm_engine_steps_total[$__rate_interval]))",
                   "sum (rate(tritonllm_prefix_cache_hits_total[$__rate_interval])) / "
                   "sum (rate(tritonllm_prefix_cache_queries_total[$__rate_interval]))"):
        assert needed in exprs, needed
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])


def scrape(t, buckets, count_total=None):
    samples = {f'h_bucket{{le="{le}",model="m"}}': v for le, v in buckets.items()}
    if count_total is not None:
        samples['c_total{model="m",reason="a"}'] = count_total
    return (t, samples)


def test_histogram_quantile_interpolates_like_prometheus():
    old = scrape(0, {"0.1": 0, "0.5": 0, "1.0": 0, "+Inf": 0})
    new = scrape(10, {"0.1": 2, "0.5": 6, "1.0": 10, "+Inf": 10})
    assert histogram_quantile(0.5, old, new, "h") == pytest.approx(0.1 + 0.4 * 3 / 4)
    assert histogram_quantile(0.1, old, new, "h") == pytest.approx(0.05)
    top = scrape(10, {"0.1": 0, "0.5": 0, "1.0": 0, "+Inf": 4})
    assert histogram_quantile(0.5, old, top, "h") == 1.0  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, old, old, "h") is None  # nothing observed


def test_rates_and_windows():
    scrapes = [scrape(t, {"+Inf": 0}, count_total=3 * t) for t in range(0, 10, 2)]
    assert rates(scrapes[0], scrapes[2], "c_total", by="reason") == {"a": 3.0}
    query = dashboard.Query("rate", "c_total", "{{reason}}", by="reason")
    series = evaluate(query, scrapes, window_s=4)
    assert series == {"a": [(t, 3.0) for t in (2, 4, 6, 8)]}


def test_ratio_divides_summed_increases_and_leaves_a_gap_when_idle():
    def counters(t, seconds, steps):
        return (t, {'s_total{model="a"}': seconds, 's_total{model="b"}': seconds / 2,
                    'n_total{model="a"}': steps})
    scrapes = [counters(0, 0.0, 0), counters(2, 0.8, 20), counters(4, 0.8, 20)]
    query = dashboard.Query("ratio", "s_total", "step", per="n_total")
    # (0.8 + 0.4) s over 20 steps; then no step moved: no point, as Prometheus' 0/0
    assert evaluate(query, scrapes, window_s=2) == {"step": [(2, pytest.approx(0.06))]}
