"""``tritonllm tune`` against real tritonservers on a short budget: the SLO rate search, the
journal that makes a second run resume instead of measuring again, and the winning profile
taken unchanged by ``tritonllm serve --profile`` and ``tritonllm build``."""

from __future__ import annotations

import json

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonllm.build.profile import load_profile
from tritonllm.build.repo_values import cpu_deployment
from tritonllm.cli import build_parser, main
from tritonllm.deploy.serve_cli import profile_deployment
from tritonllm.serve.launcher import http_ok

# A loose SLO and 5-second probes: the search must find a rate that passes and one that fails.
ARGS = ["--workload", "input_tokens=16,output_tokens=24,output_tokens_stddev=8",
        "--slo", "ttft=1500ms,itl=1s", "--budget", "30s", "--probe-time", "5s",
        "--space", "serving.stream_interval=2", "--repeats", "0", "--top", "1",
        "--start-rate", "2", "--num-threads", "1"]


def test_tune_measures_resumes_and_writes_a_profile_serve_and_build_take(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", *ARGS, "--out", str(out)]) == 0
    first = capsys.readouterr().out
    lines = (out / "journal.jsonl").read_text().splitlines()
    probes = [json.loads(line)["probe"] for line in lines[1:]]
    assert probes and all(p["requests"] > 0 for p in probes)
    passed = [p["rate"] for p in probes if p["passed"]]
    failed = [p["rate"] for p in probes if not p["passed"]]
    assert passed and failed and max(passed) < min(failed)  # bracketed by real measurements
    doc = json.loads((out / "tune.json").read_text())
    assert doc["ranking"][0]["max_rate"] == max(passed)
    assert "| 1 | default | restart |" in (out / "tune.md").read_text()
    assert (out / "pareto.png").is_file() and "Descent:" in first

    # The same command again: everything comes from the journal, nothing is measured.
    assert main(["tune", *ARGS, "--out", str(out)]) == 0
    assert f"resuming: {len(probes)} probes" in capsys.readouterr().out
    assert (out / "journal.jsonl").read_text().splitlines() == lines

    written = out / "smollm2-cpu-tuned.yaml"
    profile = load_profile(written)
    served = profile_deployment(build_parser().parse_args(["serve", "--profile", str(written)]))
    assert served == cpu_deployment(profile)
    build_dir = tmp_path / "build"
    assert main(["build", str(written), "--output-dir", str(build_dir)]) == 0
    config = text_format.Parse((build_dir / "model_repository" / "tensorrt_llm" /
                                "config.pbtxt").read_text(), pb.ModelConfig())
    params = {k: v.string_value for k, v in config.parameters.items()}
    expected = served.engine.to_parameters()
    assert {k: params[k] for k in expected} == expected  # the build renders what serve runs


def test_a_running_deployment_is_measured_as_it_runs(triton_server, tmp_path, capsys):
    """``--url``: the session's server, which tune neither starts nor stops: its highest rate
    within the SLO, found by probes the server really answered; no profile is written."""
    from tests.loadtest.test_loadtest_live import counter

    url = triton_server.http_url
    out = tmp_path / "tune"
    before = counter(triton_server.metrics_url, "nv_inference_request_success", "ensemble")
    args = ["tune", "--url", url, *ARGS[:ARGS.index("--space")], "--repeats", "0",
            "--start-rate", "2", "--out", str(out)]
    assert main(args) == 0
    report = (out / "tune.md").read_text()
    assert f"the deployment at {url}" in report and "| 1 | the deployment | – |" in report
    assert "The deployment serves " in report and "Winner" not in report
    probes = [json.loads(line)["probe"] for line in
              (out / "journal.jsonl").read_text().splitlines()[1:]]
    assert any(p["passed"] for p in probes) and not list(out.glob("*-tuned.yaml"))
    served = counter(triton_server.metrics_url, "nv_inference_request_success", "ensemble")
    assert served - before >= sum(p["requests"] for p in probes)  # warm-up requests besides
    assert http_ok(f"http://{url}/v2/health/ready")  # still serving
    capsys.readouterr()
    assert main([*args, "--space", "serving.stream_interval=2"]) == 2
    assert "url: a running deployment is measured as it runs" in capsys.readouterr().err
