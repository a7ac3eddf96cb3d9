"""The frontend process with no Triton behind it: what does not need the model still works,
and what does answers 503 in OpenAI's error shape (nothing mocked: the port is just closed)."""

from __future__ import annotations

import argparse

import pytest
import requests

from tritonllm.openai import FrontendProcess, FrontendSettings
from tritonllm.openai.server import add_options, command, settings_from_args
from tritonllm.serve.launcher import free_port


@pytest.fixture(scope="module")
def orphan(tmp_path_factory):
    settings = FrontendSettings(triton_url=f"localhost:{free_port()}", model_name="m",
                                host="127.0.0.1", port=free_port())
    with FrontendProcess(settings, log_file=tmp_path_factory.mktemp("fe") / "log") as frontend:
        yield frontend


def test_health_is_503_when_triton_is_unreachable(orphan):
    resp = requests.get(f"{orphan.url}/health", timeout=30)
    assert resp.status_code == 503
    assert resp.json()["error"]["type"] == "service_unavailable"


def test_generation_is_503_when_triton_is_unreachable(orphan):
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    resp = requests.post(f"{orphan.url}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 503, resp.text
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    stream = requests.post(f"{orphan.url}/v1/chat/completions", json={**body, "stream": True},
                           timeout=60)
    assert stream.status_code == 503


def test_models_and_refusals_need_no_triton(orphan):
    assert requests.get(f"{orphan.url}/v1/models", timeout=10).json()["data"][0]["id"] == "m"
    assert requests.get(f"{orphan.url}/v1/models/other", timeout=10).status_code == 404
    resp = requests.post(f"{orphan.url}/v1/completions", json={"model": "m", "prompt": "x",
                                                               "n": 2}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "n"
    metrics = requests.get(f"{orphan.url}/metrics", timeout=10).text
    assert 'tritonllm_openai_requests_total{endpoint="completions",status="400"} 1.0' in metrics


def test_settings_are_validated_and_round_trip_through_the_command_line():
    with pytest.raises(ValueError, match="port"):
        FrontendSettings(port=0)
    with pytest.raises(ValueError, match="default_max_tokens"):
        FrontendSettings(default_max_tokens=0)
    for settings in (FrontendSettings(request_timeout_s=None, port=9100), FrontendSettings()):
        parser = argparse.ArgumentParser()
        add_options(parser)
        assert settings_from_args(parser.parse_args(command(settings)[3:])) == settings


def test_a_busy_engine_is_503():
    from tritonllm.client import ServerBusyError
    from tritonllm.openai.errors import from_client_error

    error = from_client_error(ServerBusyError(
        "in ensemble 'ensemble', max_queue_size: server busy, 32 requests already waiting",
        http_status=400))
    assert error.status == 503 and "max_queue_size" in error.message
