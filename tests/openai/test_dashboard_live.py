"""Every metric the Grafana dashboard queries is one the live servers export: the engine's on
Triton's metrics port and the OpenAI frontend's ``/metrics``."""

from __future__ import annotations

import json
import re

from tritonllm.deploy import dashboard
from tritonllm.serve.metrics import fetch, sample_names

METRIC = re.compile(r"\b(tritonllm_[a-z0-9_]+|nv_[a-z0-9_]+)\b")


def test_every_dashboard_metric_is_exported(triton_server, openai_frontend, sdk, served_model):
    sdk.completions.create(model=served_model, prompt="Hi", max_tokens=2)  # labelled series
    exported = (sample_names(fetch(triton_server.metrics_url))
                | sample_names(fetch(f"{openai_frontend.url}/metrics")))
    doc = json.loads(dashboard.JSON_PATH.read_text())
    referenced = {name for panel in doc["panels"] for target in panel["targets"]
                  for name in METRIC.findall(target["expr"])}
    queried = {name for p in dashboard.PANELS for q in p.queries for name in (q.metric, q.per)}
    assert len(referenced) == len(queried - {""})
    assert sorted(referenced - exported) == []
