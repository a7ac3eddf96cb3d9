"""The Grafana dashboard: the committed JSON is a fresh render, its queries are PromQL over our
metric names, and a real Prometheus scraping the live server answers every panel's queries."""

import json
import time

import pytest
import requests

from tritonllm.client import Client
from tritonllm.deploy import dashboard, dashboard_png
from tritonllm.deploy.prometheus import Prometheus, PrometheusUnavailable, binary

WINDOW_S = 4.0
SCRAPE_S = 0.5


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


@pytest.fixture(scope="module")
def panels_over_traffic(triton_server, openai_frontend):
    """Every panel evaluated by a real Prometheus that scraped the live server and frontend
    while requests of both kinds ran."""
    try:
        binary()
    except PrometheusUnavailable as exc:
        pytest.fail(f"{exc} (the test setup installs it)")
    urls = [triton_server.metrics_url, f"{openai_frontend.url}/metrics"]

    def openai_request():
        requests.post(f"{openai_frontend.url}/v1/completions", timeout=60, json={
            "model": openai_frontend.settings.model_name, "prompt": "Hello",
            "max_tokens": 4}).raise_for_status()

    # A labelled series is born at its first observation: make the frontend's exist before the
    # first scrape, so that every request below is an increase Prometheus can see.
    openai_request()
    with Prometheus(urls, scrape_interval_s=SCRAPE_S) as prom:
        prom.wait_for_scrapes(2)
        start = time.time()
        with Client(url=triton_server.http_url) as client:
            for _ in range(3):
                list(client.stream("Tell me about rivers.", max_tokens=12))
                openai_request()
                time.sleep(SCRAPE_S)  # at least one scrape between increases
        time.sleep(2 * SCRAPE_S)
        prom.wait_for_scrapes(prom.scrapes_done() + 2)
        return dashboard_png.evaluate(prom, start - WINDOW_S, time.time(), WINDOW_S, SCRAPE_S)


def test_prometheus_answers_every_panel_over_live_traffic(panels_over_traffic):
    empty = [title for title, series in panels_over_traffic.items() if not series]
    assert empty == [], f"no data for {empty}"
    latest = {title: max(v for points in series.values() for _, v in points)
              for title, series in panels_over_traffic.items()}
    assert latest["Tokens per second"] > 0
    assert 0 < latest["Time to first token"] < 60
    assert 0 < latest["Engine step time (mean)"] < 10
    assert "200" in panels_over_traffic["OpenAI frontend requests by status"]


def test_the_png_draws_the_evaluated_panels(panels_over_traffic, tmp_path):
    path = dashboard_png.plot(panels_over_traffic, tmp_path / "dashboard.png")
    assert path.stat().st_size > 10_000
