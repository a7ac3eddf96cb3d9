"""The OpenAI Locust user (``--user openai``) against the real frontend and tritonserver: every
request it sent is one the server served, with the server's token counts, TTFT from SSE; with
no ``--model`` it calls the model id the frontend lists."""

from __future__ import annotations

import json
import subprocess

from tests.loadtest.test_loadtest_live import WORKLOAD, ServerCounts, check_run, loopback
from tritonllm.loadtest.runner import LocustRun


def test_openai_user_matches_the_server(triton_server, openai_frontend, tmp_path, pool_cache):
    run = LocustRun(out_dir=str(tmp_path), user="openai", host=loopback(openai_frontend.url),
                    users=2, run_time="6s", workload=WORKLOAD,
                    model_dir=str(triton_server.model_dir), slo="e2e=10m",
                    extra_args=("--only-summary",))
    counts = ServerCounts(triton_server)
    done = subprocess.run(run.command(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = check_run(tmp_path, counts, "openai")
    assert doc["slo"]["passed"]
    assert doc["summary"]["latency_ms"]["ttft"]["count"] == doc["summary"]["requests"]


def test_openai_user_sends_the_json_schema_workload_guided(triton_server, openai_frontend,
                                                          tmp_path, pool_cache):
    from tests.serve.test_metrics import series
    from tritonllm.serve.metrics import fetch, parse_samples

    def guided_total():
        return series(parse_samples(fetch(triton_server.metrics_url)),
                      "tritonllm_guided_requests_total")

    before = guided_total()
    run = LocustRun(out_dir=str(tmp_path), user="openai", host=loopback(openai_frontend.url),
                    users=2, run_time="6s",
                    workload="kind=json_schema,output_tokens=200,force_output_length=false,"
                             "num_prompts=4",
                    model_dir=str(triton_server.model_dir), slo="e2e=10m",
                    extra_args=("--only-summary",))
    done = subprocess.run(run.command(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    assert summary["failed"] == 0 and summary["requests"] >= 2
    assert guided_total() - before >= summary["requests"]
